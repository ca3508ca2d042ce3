"""``status --json`` and the app tell the same figures for the same state (engine/projection/figures.py): the
Tasks title's counts and ``task_counts``, a running worker's tokens on its card and in ``workers``, the scale
in the header and the Workers title and ``control.scale``. The app runs an engine with a controller and a pool
whose worker streams from a fake OpenRouter and stalls mid-answer; the CLI runs as a user runs it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task, decode, new_id, worker_id
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import LocalLink
from swarm_tui.tui.model import fmt_usd
from swarm_tui.tui.widgets.header_bar import HeaderBar
from swarm_tui.tui.widgets.worker_card import WorkerCard
from tests.integration.test_tui import _render_plain
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, MODEL, approve, build_engine, swarm_config
from tests.support.tui import SIZE, started

STREAMED = 191  # tokens the worker has streamed when its provider stalls


async def decided(bus: Bus, text: str, final: str | None) -> None:
    """A task and a decision for it; ``final``: the decision's final word (None: it waits for approval)."""
    now = time.time()
    task = Task(id=new_id("t"), text=text, created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=100)]
    d = Decision(id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=d.id)
    if final is not None:
        await bus.publish_event(Approval(decision_id=d.id, action=final, at=time.time()), msg_id=f"{d.id}-final")  # type: ignore[arg-type]


def title_counts(title: str) -> tuple[int, dict[str, int]]:
    """The Tasks title read as a person reads it: "Tasks 4 · 1 running · 1 awaiting approval ..."."""
    head, *parts = title.split(" · ")
    total = int(head.removeprefix("Tasks "))
    counts = {}
    for p in parts:
        n, words = p.split(" ", 1)
        counts[words.replace(" ", "_")] = int(n)
    return total, counts


async def test_status_json_and_the_screen_show_the_same_figures(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=400, tps=0, stall_after=STREAMED, stall_s=60, keepalive_s=1)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=10)
        env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        app = SwarmApp(LocalLink(engine, connect=False), refresh_ms=20)

        async def status() -> dict[str, Any]:
            res = await asyncio.to_thread(run_cli, ["status", "--json"], env)
            assert res.returncode == 0, res.stderr
            data: dict[str, Any] = json.loads(res.stdout)
            return data

        try:
            async with app.run_test(size=SIZE) as pilot:
                await started(app, pilot)
                room: Any = app.screen
                d = await approve(bus, 1, text="streams, then its provider stalls")
                wid = worker_id(d.id, 0)
                await decided(bus, "waits for a person", None)
                await decided(bus, "a person said no", "rejected")
                await bus.publish_event(Task(id=new_id("t"), text="no decision yet", created_at=time.time()))
                await until(lambda: wid in app.rings and app.rings[wid].tokens == STREAMED, 20, "streamed tokens")
                await until(lambda: len(engine.state.tasks) == 4)
                await pilot.pause(0.2)

                data = await status()
                # the Tasks title counts every state, as task_counts does
                title = str(room.query_one("#tasks-panel").border_title)
                total, shown = title_counts(title)
                assert data["task_counts"] == {"running": 1, "awaiting_approval": 1, "pending": 1, "rejected": 1}
                assert shown == data["task_counts"] and total == len(data["tasks"]) == 4, title
                # the running worker's tokens: the card's and status's
                card = app.query_one(f"#w_{wid}", WorkerCard)
                m = re.search(r"(\d+) tok", _render_plain(card, 100))
                assert m is not None and int(m.group(1)) == STREAMED
                worker = next(w for w in data["workers"] if w["id"] == wid)
                assert worker["state"] == "running" and worker["tokens"] == STREAMED
                # its own pool reports it: the engine counts no chunks (a delivery and a parse each, thousands a
                # second); only a worker of another process (tests/fault/test_hostile_issue25.py) makes it
                assert engine._chunk_sub is None and not engine.streamed
                # the scale: the configuration's until a command
                header = app.query_one(HeaderBar).line.plain
                assert data["control"]["scale"] == 10 and data["control"]["scale_source"] == "config"
                assert "scale 10" in header and "scale 10" in str(room.workers_panel.border_title)

                await pilot.press("minus")  # a scale command, as a person gives it
                await until(lambda: engine.state.commanded_scale == 9)
                await pilot.pause(0.2)
                data = await status()
                assert data["control"]["scale"] == 9 and data["control"]["scale_source"] == "command"
                header = app.query_one(HeaderBar).line.plain
                assert "scale 9" in header and "scale 9" in str(room.workers_panel.border_title)
        finally:
            await engine.stop()
            await bus.close()


async def test_an_edited_decision_is_priced_again_and_still_bounds_its_reservations(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Issue 25, item 5: an edit from 1 to 3 workers left the estimate at one worker's, on screen and in status.
    The new figure is three of the heartbeat's (the spend guard's) estimates of the one worker; the spend guard
    then reserves no more than it for the three jobs, and what is recorded as spent is what the calls billed."""
    cfg = make_config(tmp_path, nats_server.url, SWARM_DEMO_TPS="200").replace(
        demo__tokens=15, heartbeat__debounce_s=0.2, ollama__timeout_s=1.0
    )
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, SWARM_DEMO_TPS="200")
    bus = await Bus(cfg).connect()
    engine = assemble(cfg, bus, demo=True)
    reserved: dict[str, float] = {}

    async def on_job(msg: Any) -> None:
        job = decode(msg.data, expect="job")
        reserved[job.id] = job.reserve_usd

    assert bus.nc is not None
    sub = await bus.nc.subscribe(S.JOBS_ALL, cb=on_job)
    app = SwarmApp(LocalLink(engine, connect=False), refresh_ms=20)

    async def cli(*args: str) -> Any:
        res = await asyncio.to_thread(run_cli, list(args), env)
        assert res.returncode == 0, res.stderr
        return res

    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            room: Any = app.screen
            task = Task(id=new_id("t"), text="find three papers on queueing", created_at=time.time(), demo=True)
            await bus.publish_event(task, msg_id=task.id)
            dv = await until(lambda: next(iter(engine.state.decisions.values()), None), 30, "a decision")
            assert len(dv.plan) == 1 and dv.status == "pending"
            one_likely, one_worst = dv.decision.est_cost_min, dv.decision.est_cost_max
            assert one_worst > 0
            await cli("edit", dv.id, "3")
            await until(lambda: len(dv.plan) == 3)
            await pilot.pause(0.3)
            row = next(x for x in json.loads((await cli("status", "--json")).stdout)["decisions"] if x["id"] == dv.id)
            likely, worst = row["est_cost_usd"]
            assert row["workers"] == 3
            assert abs(likely - 3 * one_likely) < 1e-7 and abs(worst - 3 * one_worst) < 1e-7
            # the screen says the same figures: the decision's detail and its row
            detail = _render_plain(room.detail_view, 160)
            assert f"{fmt_usd(likely)} – {fmt_usd(worst)} (estimated)" in detail, detail
            assert str(room.decision_table.get_row(dv.id)[3]) == f"≤{fmt_usd(worst)}"

            await cli("approve", dv.id)
            await until(lambda: len(engine.state.results) == 3, 30, "three results")
            data = json.loads((await cli("status", "--json")).stdout)
    finally:
        await sub.unsubscribe()
        await engine.stop()
        await bus.close()
    # the spend guard's reservations stay within the estimate: it is still a worst case
    assert len(reserved) == 3 and all(0 < r <= one_worst + 1e-8 for r in reserved.values())
    assert sum(reserved.values()) <= worst + 1e-8
    # an estimate is not spend: what is recorded is what the three calls billed
    billed = sum(r.cost_usd for r in engine.state.results.values())
    assert data["spend_log"]["entries"] == 3 and abs(data["spend_log"]["total_usd"] - billed) < 1e-6
    assert billed < worst

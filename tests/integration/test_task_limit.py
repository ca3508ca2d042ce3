"""budget.task_max_usd ("total spend allowed for one task") holds for a worker count a person sets, not only for
the heartbeat's proposal: an edit or an `approve --workers` whose worst case would take the task past it is
refused with one line naming the estimate and the limit (exit 1), with or without an engine running, and what
runs afterwards is recorded as OpenRouter billed it and stays within the limit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.ids import new_id
from swarm_tui.engine.bus.wire import Decision, PlanItem, Task, job_id
from swarm_tui.engine.control_requests import ControlError
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, build_engine, swarm_config

LIMIT = 0.5  # budget.task_max_usd's default
ITEM_WORST = 0.2  # one worker's worst case: 2 workers are within the limit, 3 are past it


async def _pending(bus: Bus) -> Decision:
    now = time.time()
    task = Task(id=new_id("t"), text="find three papers", created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=100)]
    d = Decision(
        id=new_id("d"),
        task_ids=[task.id],
        plan=plan,
        est_cost_min=0.1,
        est_cost_max=ITEM_WORST,
        item_costs=[(0.1, ITEM_WORST)],
        source="rules",
        created_at=now,
        expires_at=now + 900,
    )
    await bus.publish_event(d, msg_id=d.id)
    return d


def _refused(res: object, workers: int) -> None:
    assert res.returncode == 1, res.stderr  # type: ignore[attr-defined]
    err: str = res.stderr  # type: ignore[attr-defined]
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{workers} workers could cost up to ${workers * ITEM_WORST:.4f}" in err, err
    assert f"limit of ${LIMIT:.4f} (budget.task_max_usd)" in err, err


async def test_a_worker_count_past_the_tasks_limit_is_refused_and_spend_stays_within_it(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=4, cost=0.0125)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        assert cfg.budget.task_max_usd == LIMIT
        env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
        bus = await Bus(cfg).connect()
        engine, _pool = build_engine(cfg, bus)
        try:
            d = await _pending(bus)
            # no engine running: the CLI checks against the log itself
            _refused(await asyncio.to_thread(run_cli, ["edit", d.id, "3"], env), 3)
            await engine.start()
            # the engine answers: the same refusal, for an edit and for an approval with a worker count
            _refused(await asyncio.to_thread(run_cli, ["edit", d.id, "3"], env), 3)
            _refused(await asyncio.to_thread(run_cli, ["approve", d.id, "--workers", "3"], env), 3)
            try:  # the app's edit goes through the same Controls: its toast is this line
                await engine.controls.handle("edit", {"id": d.id, "workers": 5})
                raise AssertionError("an edit to 5 workers passed")
            except ControlError as exc:
                assert exc.kind == "over_budget" and "$1.0000" in str(exc) and "$0.5000" in str(exc)
            res = await asyncio.to_thread(run_cli, ["edit", d.id, "2"], env)  # $0.40 at worst: within
            assert res.returncode == 0, res.stderr
            res = await asyncio.to_thread(run_cli, ["approve", d.id], env)
            assert res.returncode == 0, res.stderr
            jobs = [job_id(d.id, i) for i in range(2)]
            await until(lambda: all(j in engine.state.results for j in jobs), 10, "both results")
            tid = d.task_ids[0]
            await until(lambda: engine.state.task_spend(tid) >= fo.billed > 0, 10, "the spend recorded")
        finally:
            await engine.stop()
            await bus.close()
        assert len(fo.requests) == 2  # two workers ran, never three
        recorded = sum(s.cost_usd for s in engine.state.spend_entries.values())
        assert abs(recorded - fo.billed) < 1e-9, (recorded, fo.billed)
        assert engine.state.task_spend(tid) <= LIMIT

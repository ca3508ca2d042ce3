"""The needs-you alerts and the promoted answer against a real nats-server and real processes: the engine's
``notify.command`` runs once per transition with the need as JSON on stdin, ``status --json`` carries
``needs_attention``, ``seen`` and ``promote`` land in the log, and ``result`` / ``status`` show the promotion."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from swarm_tui.cli.status import status_data
from swarm_tui.engine.attention.notifier import Notifier
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Result, Task, job_id, worker_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import request
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.info import Need, usable
from tests.support.env import base_env, run_cli
from tests.support.polling import until, until_async

SCRIPT = "import sys, pathlib; pathlib.Path(sys.argv[1]).open('a').write(sys.stdin.read())"


async def _decision(bus: Bus, tid: str, did: str, n: int = 2) -> Decision:
    now = time.time()
    await bus.publish_event(Task(id=tid, text=f"do {tid}", created_at=now), msg_id=tid)
    plan = [PlanItem(task_id=tid, role="research", model=f"openrouter/m/{i}", max_tokens=50) for i in range(n)]
    d = Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=did)
    return d


async def _results(bus: Bus, d: Decision, states: list[str]) -> None:
    await bus.publish_event(Approval(decision_id=d.id, action="approved", at=time.time()), msg_id=f"{d.id}-final")
    for i, st in enumerate(states):
        r = Result(
            job_id=job_id(d.id, i),
            worker_id=worker_id(d.id, i),
            decision_id=d.id,
            task_id=d.task_ids[0],
            model=d.plan[i].model,
            role="research",
            state=st,  # type: ignore[arg-type]
            text=f"# Answer {i}\n\nfrom model {i}",
            reason="HTTP 502 from the provider" if st == "failed" else "",
            started_at=time.time() - 2,
            ended_at=time.time(),
        )
        await bus.publish_event(r, msg_id=f"result-{r.job_id}")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@contextlib.asynccontextmanager
async def notifying(cfg: Config) -> AsyncIterator[tuple[Engine, Notifier]]:
    """An engine with only the Notifier, started and past its baseline look."""
    bus = Bus(cfg)
    await bus.connect()
    engine = Engine(cfg, bus)
    notifier = engine.add(Notifier(cfg.notify, bus, engine.state))
    await engine.start()
    try:
        await until(lambda: notifier.attention._started, 5, "the baseline look")
        yield engine, notifier
    finally:
        await engine.stop()


async def test_notify_command_runs_once_per_transition(cfg: Config, tmp_path: Path, observer: Bus) -> None:
    out = tmp_path / "pings.jsonl"
    cfg = cfg.replace(notify__command=f"{sys.executable} -c {json.dumps(SCRIPT)} {out}")
    async with notifying(cfg) as (engine, notifier):
        await _decision(observer, "t-1", "d-1")
        await until(lambda: len(_lines(out)) == 1, 10, "the command for the first decision")
        ping = _lines(out)[0]
        assert ping["kind"] == "approval" and "d-1" in ping["what"] and ping["app"] == "swarm-tui"
        assert {"since", "latest", "count", "seen", "host"} <= set(ping)
        # a second decision while the first is unseen, and many looks: no second ping
        await _decision(observer, "t-2", "d-2")
        await until(lambda: engine.state.pending_decisions().__len__() == 2, 5, "the second decision")
        for _ in range(3):
            notifier.check()
        # a failed job is its own kind: one ping
        d3 = await _decision(observer, "t-3", "d-3")
        await _results(observer, d3, ["failed", "failed"])
        await until(lambda: len(_lines(out)) == 2, 10, "the command for the failures")
        assert _lines(out)[1]["kind"] == "failed"  # the first failure rang; the second joins the same transition
        await until(lambda: len([r for r in engine.state.results.values() if r.state == "failed"]) == 2, 5, "both")
        notifier.check()
        assert [n["count"] for n in notifier.attention.current if n["kind"] == "failed"] == [2]
        # seen, then a new decision: it rings again
        reply = await request(observer, "seen", {"kinds": ["approval", "failed"], "by": "test"})
        assert reply is not None and reply.ok, reply
        await until(lambda: engine.state.seen.get("approval", 0) > 0, 5, "the seen mark")
        await _decision(observer, "t-4", "d-4")
        await until(lambda: len(_lines(out)) == 3, 10, "the command after seen")
        assert _lines(out)[2]["kind"] == "approval"
        await until(lambda: notifier.commands_run == 3, 10, "the third command to exit")
        info = engine.info()["attention"]
        assert info["commands_run"] == 3 and info["command_errors"] == 0  # type: ignore[typeddict-item]
        assert info["command"] == Path(sys.executable).name  # type: ignore[typeddict-item]
        # status --json: what needs you, since when, seen or not
        data = await status_data(cfg)
        found = {n["kind"]: n for n in data["needs_attention"]}
        assert set(found) == {"approval"}  # the failures were seen
        assert found["approval"]["count"] == 3 and found["approval"]["seen"] is False


async def test_a_command_that_fails_is_counted_and_never_blocks(cfg: Config, tmp_path: Path, observer: Bus) -> None:
    cfg = cfg.replace(notify__command=f"{tmp_path}/no-such-program --token sk-secret-in-args")
    async with notifying(cfg) as (engine, notifier):
        await _decision(observer, "t-1", "d-1")
        await until(lambda: notifier.command_errors == 1, 10, "the failed command")
        assert "sk-secret" not in json.dumps(engine.info(), default=str)


def test_promote_and_seen_from_the_cli(tmp_path: Path) -> None:
    """No engine: the CLI checks the request against the log and records it; result and status show it."""
    import asyncio

    env = base_env(tmp_path)

    async def seed() -> None:
        from swarm_tui.engine.config.load import load_config

        cfg = load_config(None, env)
        bus = Bus(cfg)
        await bus.connect()
        try:
            d = await _decision(bus, "t-cmp", "d-cmp", n=3)
            await _results(bus, d, ["done", "done", "failed"])
        finally:
            await bus.close()

    asyncio.run(seed())
    res = run_cli(["promote", "cmp-j2"], env)
    assert res.returncode == 1 and "failed: only a finished answer" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["promote", "nope"], env)
    assert res.returncode == 1 and res.stderr.startswith("swarm-tui: error: no stored answer nope: "), res.stderr
    res = run_cli(["promote", "cmp-j1"], env)
    assert res.returncode == 0, res.stderr
    assert "answer d-cmp-j1 (research, openrouter/m/1) is now the answer of task t-cmp" in res.stdout
    text = run_cli(["result", "t-cmp"], env).stdout
    assert text.count("★ promoted") == 1 and "answer d-cmp-j1 · ★ promoted" in text, text
    doc = json.loads(run_cli(["result", "t-cmp", "--json"], env).stdout)
    assert doc["promoted"] == "d-cmp-j1" and doc["promoted_by"] == "cli"
    status = run_cli(["status"], env).stdout
    assert "★ answer d-cmp-j1" in status and "needs you: 1 job failed" in status, status
    data = json.loads(run_cli(["status", "--json"], env).stdout)
    assert [n["kind"] for n in data["needs_attention"]] == ["failed"]
    assert run_cli(["seen", "bogus"], env).returncode == 2
    res = run_cli(["seen", "failed"], env)
    assert res.returncode == 0 and "marked seen: failed" in res.stdout, res.stdout
    data = json.loads(run_cli(["status", "--json"], env).stdout)
    assert data["needs_attention"] == []  # a failure seen needs nobody


async def test_info_reports_attention_over_the_bus(cfg: Config, observer: Bus) -> None:
    from swarm_tui.cli.commands import engine_info

    bus = Bus(cfg)
    await bus.connect()
    engine = Engine(cfg, bus)
    engine.add(Notifier(cfg.notify, bus, engine.state))
    await engine.start()
    try:
        await _decision(observer, "t-1", "d-1")

        async def approval_need() -> Need | None:
            info = await engine_info(observer)
            attention = usable((info or {}).get("attention"))
            needs = attention["needs"] if attention is not None else []
            return next((n for n in needs if n["kind"] == "approval"), None)

        need = await until_async(approval_need, 10, "the approval need in the engine's info")
        assert need["count"] == 1 and need["seen"] is False
    finally:
        await engine.stop()

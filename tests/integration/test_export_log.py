"""``swarm-tui export-log`` as a user runs it, against a real nats-server: the file folds to the bus's own state,
one task's events only, from a point, secrets masked, never over a file, and nothing published."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, ControlEvent, Decision, PlanItem, Result, Task, WorkerEvent
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.filelog import read_log_file
from swarm_tui.engine.history.fold import fold_to
from tests.support.env import base_env, run_cli

MODEL = "openrouter/deepseek/deepseek-chat-v3.1"
KEY = "sk-or-v1-" + "5ec7e7" * 8
TOKEN = "nats-token-7c1f00d"


async def _story(bus: Bus, secret_text: str = "") -> None:
    now = time.time()
    for tid in ("t-aaa1", "t-bbb2"):
        await bus.publish_event(Task(id=tid, text=f"write about {tid} {secret_text}", created_at=now), msg_id=tid)
        plan = [PlanItem(task_id=tid, role="analysis", model=MODEL, max_tokens=100)]
        did = f"d-{tid}"
        dec = Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=now, expires_at=now + 900)
        await bus.publish_event(dec, msg_id=did)
        await bus.publish_event(Approval(decision_id=did, action="approved", at=now), msg_id=f"{did}-ok")
        ids = {"decision_id": did, "task_id": tid, "model": MODEL, "worker_id": f"{did}-w0", "job_id": f"{did}-j0"}
        await bus.publish_event(WorkerEvent.model_validate(ids | {"state": "done", "at": now}))
        res = {"state": "done", "text": f"answer {tid} {secret_text}", "started_at": now, "ended_at": now}
        await bus.publish_event(Result.model_validate(ids | res))
    await bus.publish_event(ControlEvent(what="promote", target="d-t-bbb2-j0", at=now))
    await bus.publish_event(ControlEvent(what="scale", value=4, at=now))


def _env(tmp_path: Path, srv: EmbeddedServer, **extra: str) -> dict[str, str]:
    return base_env(tmp_path, SWARM_NATS_URL=srv.url, **extra)


async def _last_seq(bus: Bus) -> int:
    return int((await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq)


async def test_the_exported_file_folds_to_the_state_the_bus_folds_to(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    await _story(bus)
    out = tmp_path / "run.jsonl"
    before = await _last_seq(bus)
    res = run_cli(["export-log", "--out", str(out)], _env(tmp_path, nats_server))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"exported 12 events (seq 1..12) to {out}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert await _last_seq(bus) == before  # nothing published
    from_file = await fold_to(read_log_file(out), before, max_scale=50)
    from_bus = await fold_to(BusLog(bus), before, max_scale=50)
    assert from_file.state.snapshot() == from_bus.state.snapshot()
    assert from_file.skipped == 0 and from_file.state.tasks["t-bbb2"].promoted == "d-t-bbb2-j0"

    again = run_cli(["export-log", "--out", str(out)], _env(tmp_path, nats_server))
    assert (
        again.returncode == 2
        and again.stderr.strip() == f"swarm-tui: error: {out} exists: give --force to replace it, or another --out"
    )
    assert run_cli(["export-log", "--out", str(out), "--force"], _env(tmp_path, nats_server)).returncode == 0


async def test_one_task_from_a_point_with_its_secrets_masked(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    await _story(bus, secret_text=f"my key {KEY} and token {TOKEN}")
    env = _env(tmp_path, nats_server, OPENROUTER_API_KEY=KEY, SWARM_NATS_TOKEN=TOKEN)
    env["SWARM_NATS_URL"] = nats_server.url  # the embedded test server takes no token: it is only configured
    out = tmp_path / "b.jsonl"
    res = run_cli(["export-log", "--task", "bbb2", "--out", str(out)], env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"exported 6 events of task t-bbb2 (seq 6..11) to {out}\n"
    text = out.read_text()
    assert KEY not in text and TOKEN not in text and KEY not in res.stdout + res.stderr
    rows = [json.loads(line) for line in text.splitlines()]
    assert "***" in rows[0]["event"]["text"] and all("aaa1" not in json.dumps(r) for r in rows)
    fold = await fold_to(read_log_file(out), 99, max_scale=50)
    assert list(fold.state.tasks) == ["t-bbb2"] and fold.skipped == 0

    late = tmp_path / "late.jsonl"
    res = run_cli(["export-log", "--since", "9", "--task", "t-bbb2", "--out", str(late)], env)
    assert res.stdout == f"exported 3 events of task t-bbb2 (seq 9..11) to {late}\n", res.stderr
    res = run_cli(["export-log", "--since", "-1h", "--out", str(tmp_path / "hour.jsonl")], env)
    assert "exported 12 events (seq 1..12)" in res.stdout, res.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "yesterday-ish"], "--since 'yesterday-ish': not understood"),
        (["--since", "-15"], "--since -15: give a unit"),
        (["--task", "zzz"], "no task zzz"),
    ],
)
async def test_bad_input_is_one_line(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus, args: list[str], says: str
) -> None:
    await _story(bus)
    out = tmp_path / "x.jsonl"
    res = run_cli(["export-log", *args, "--out", str(out)], _env(tmp_path, nats_server))
    assert res.returncode != 0 and says in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_no_out_is_a_usage_error(tmp_path: Path) -> None:
    res = run_cli(["export-log"], base_env(tmp_path))
    assert res.returncode == 2 and "--out" in res.stderr

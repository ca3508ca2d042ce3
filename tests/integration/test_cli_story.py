"""The command line tells what the log holds, and why: live workers in plain `status` as their cards show them,
why a task has no result, which tasks an ambiguous id matches, a worker's id where promote wants an answer's,
and where `config` reads and keeps things. Run as a user runs it, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Result, Task, WorkerEvent
from swarm_tui.engine.control_requests import Controls, ControlServer
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import base_env, run_cli

MODEL = "openrouter/deepseek/deepseek-chat-v3.1"


async def _story(bus: Bus) -> None:
    """Four tasks whose ids all end in x0: one with a live worker and a stored answer, one rejected, one waiting
    for approval, one no decision has reached yet."""
    now = time.time()
    texts = {
        "t-aaa1-x0": "write a haiku about tea",
        "t-bbb2-x0": "the rejected one",
        "t-ccc3-x0": "awaits approval",
        "t-ddd4-x0": "nothing yet",
    }
    for tid, text in texts.items():
        await bus.publish_event(Task(id=tid, text=text, created_at=now), msg_id=tid)
    for did, tid, n in (("d-1", "t-aaa1-x0", 2), ("d-2", "t-bbb2-x0", 1), ("d-3", "t-ccc3-x0", 1)):
        plan = [PlanItem(task_id=tid, role="analysis", model=MODEL, max_tokens=100) for _ in range(n)]
        dec = Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=now, expires_at=now + 900)
        await bus.publish_event(dec, msg_id=did)
    await bus.publish_event(Approval(decision_id="d-1", action="approved", at=now), msg_id="d-1-final")
    await bus.publish_event(
        Approval(decision_id="d-2", action="rejected", reason="too costly", at=now), msg_id="d-2-final"
    )
    ids = {"decision_id": "d-1", "task_id": "t-aaa1-x0", "model": MODEL, "role": "analysis"}
    events = [
        WorkerEvent.model_validate(
            {**ids, "worker_id": "d-1-w0", "job_id": "d-1-j0", "state": "running", "tokens": 191, "cost_usd": 0.0003}
            | {"at": now}
        ),
        WorkerEvent.model_validate({**ids, "worker_id": "d-1-w1", "job_id": "d-1-j1", "state": "done", "at": now}),
        Result.model_validate(
            {**ids, "job_id": "d-1-j1", "worker_id": "d-1-w1", "state": "done", "text": "tea"}
            | {"started_at": now, "ended_at": now}
        ),
    ]
    for ev in events:
        await bus.publish_event(ev)


@pytest.fixture
async def env(tmp_path: Path, nats_server: EmbeddedServer, bus: Bus) -> dict[str, str]:
    await _story(bus)
    return base_env(tmp_path, SWARM_NATS_URL=nats_server.url)


async def test_plain_status_lists_live_workers_as_their_cards_do(env: dict[str, str]) -> None:
    res = run_cli(["status"], env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    head = lines.index("workers: 1 live, 1 result stored")  # "1 results" before
    worker = lines[head + 1]
    for part in ("d-1-w0", "running", "191 tok $0.0003", "deepseek/deepseek-chat-v3.1", "analysis", "t-aaa1-x0"):
        assert part in worker, worker
    assert "d-1-w1" not in res.stdout  # a finished worker is no live one
    assert "  d-3  1 worker  est" in res.stdout and "1 workers" not in res.stdout, res.stdout
    assert [w["id"] for w in json.loads(run_cli(["status", "--json"], env).stdout)["workers"] if w["id"] == "d-1-w0"]


@pytest.mark.parametrize(
    ("task", "says"),
    [
        ("bbb2-x0", "(task t-bbb2-x0 was rejected: no worker ran)"),
        (
            "ccc3-x0",
            "(task t-ccc3-x0 waits for approval of decision d-3: no worker has run yet (swarm-tui approve d-3))",
        ),
        ("ddd4-x0", "(task t-ddd4-x0 waits for the heartbeat to propose a decision: no worker has run yet)"),
    ],
)
async def test_result_of_a_task_without_results_says_why(env: dict[str, str], task: str, says: str) -> None:
    res = run_cli(["result", task], env)
    assert res.returncode == 0, res.stderr
    assert says in res.stdout and "no results stored yet" not in res.stdout, res.stdout
    if task == "bbb2-x0":
        assert res.stdout.startswith("task t-bbb2-x0 (rejected: too costly)\n"), res.stdout


async def test_an_ambiguous_task_id_lists_its_candidates_with_their_text(env: dict[str, str]) -> None:
    res = run_cli(["result", "x0"], env)
    assert res.returncode == 1 and res.stdout == ""
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("swarm-tui: error: task id x0 is ambiguous: 4 tasks match ("), line
    assert "t-aaa1-x0 'write a haiku about tea'" in line and "t-ddd4-x0 'nothing yet'" in line, line
    assert "give more of the id" in line


async def test_promote_takes_the_worker_id_a_card_shows(env: dict[str, str]) -> None:
    res = run_cli(["promote", "-w1"], env)  # as the card's title ends; argparse took it for an option before
    assert res.returncode == 0, res.stderr
    assert "answer d-1-j1 (analysis, " in res.stdout and "task t-aaa1-x0" in res.stdout, res.stdout
    res = run_cli(["promote", "-w7"], env)
    assert res.returncode == 1 and "takes an answer's job id (…-j2) or its worker's (…-w2)" in res.stderr


async def test_scale_out_of_bounds_is_bad_usage_with_the_config_bounds(env: dict[str, str], tmp_path: Path) -> None:
    said = []
    for n in ("100", "-1"):
        res = run_cli(["scale", n], env)
        assert res.returncode == 2 and res.stdout == "", (n, res.stderr)
        said.append(res.stderr.strip().replace(n, "N"))
    assert said[0] == said[1] and "0..50 (swarm.max_scale" in said[0], said
    conf = tmp_path / "c.toml"
    conf.write_text("[swarm]\nmax_scale = 120\n")
    res = run_cli(["--config", str(conf), "scale", "100"], env)  # the bound is the config's
    assert res.returncode == 0 and "scale set to 100" in res.stdout, res.stderr
    res = run_cli(["--config", str(conf), "scale", "121"], env)
    assert res.returncode == 2 and "0..120" in res.stderr
    res = run_cli(["approve", "d-zz"], env)  # refused by the state, not bad usage
    assert res.returncode == 1 and "no decision d-zz" in res.stderr


def test_config_without_a_file_shows_the_real_places(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["SWARM_DATA_DIR"]
    res = run_cli(["config"], env)
    assert res.returncode == 0, res.stderr
    data = tmp_path / "xdg-data" / "swarm-tui"
    assert f"# config file: {tmp_path / 'xdg-config' / 'swarm-tui' / 'config.toml'} (not found" in res.stdout
    assert f"# data dir: {data}\n" in res.stdout and f"# log file: {data / 'swarm-tui.log'}\n" in res.stdout
    assert f'paths.data_dir = ""  # {data}\n' in res.stdout
    assert "file: defaults" not in res.stdout
    places = json.loads(run_cli(["--demo", "config", "--json"], env).stdout)["resolved"]
    assert places["data_dir"] == str(data / "demo")


async def test_a_bad_value_the_running_engine_refuses_is_bad_usage_too(
    env: dict[str, str], bus: Bus, tmp_path: Path
) -> None:
    """This config allows 120, the engine's 50: the engine refuses the value, and that is still exit 2."""
    state = SwarmState()
    await bus.replay(lambda subject, ev, seq: state.apply(ev, seq))
    server = ControlServer(bus, Controls(bus, state, max_scale=50))
    await server.start()
    try:
        conf = tmp_path / "c.toml"
        conf.write_text("[swarm]\nmax_scale = 120\n")
        res = await asyncio.to_thread(run_cli, ["--config", str(conf), "scale", "100"], env)
        assert res.returncode == 2 and "scale must be a whole number 0..50" in res.stderr, res.stderr
        res = await asyncio.to_thread(run_cli, ["approve", "d-2"], env)  # the state refuses: exit 1
        assert res.returncode == 1 and "decision d-2 is rejected, not pending" in res.stderr, res.stderr
        res = await asyncio.to_thread(run_cli, ["scale", "7"], env)
        assert res.returncode == 0 and res.stdout == "scale set to 7\n", res.stderr
    finally:
        await server.stop()

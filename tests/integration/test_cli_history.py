"""`swarm-tui history` run as a user runs it, against a real nats-server: past tasks newest first with their
outcome, the search over task and answers, --since and --state, bad input in one line, and nothing published."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Result, Task
from tests.support.env import base_env, run_cli

MODEL = "openrouter/deepseek/deepseek-chat-v3.1"


async def _story(bus: Bus, now: float) -> None:
    """A done task an hour ago (its answer speaks of Oolong), a rejected one, and one that waits, just now."""
    await bus.publish_event(Task(id="t-old-tea", text="write a haiku about tea", created_at=now - 3600))
    await bus.publish_event(Task(id="t-rej", text="the rejected one", created_at=now - 60))
    await bus.publish_event(Task(id="t-new", text="summarise the Straße report", created_at=now - 30))
    for did, tid in (("d-1", "t-old-tea"), ("d-2", "t-rej")):
        plan = [PlanItem(task_id=tid, role="analysis", model=MODEL, max_tokens=100)]
        dec = Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=now - 50, expires_at=now + 900)
        await bus.publish_event(dec)
    await bus.publish_event(Approval(decision_id="d-1", action="approved", at=now - 40))
    await bus.publish_event(Approval(decision_id="d-2", action="rejected", reason="too costly", at=now - 40))
    ids = {"decision_id": "d-1", "task_id": "t-old-tea", "model": MODEL, "worker_id": "d-1-w0", "job_id": "d-1-j0"}
    await bus.publish_event(
        Result.model_validate(
            {**ids, "state": "done", "text": "Steam over OOLONG", "cost_usd": 0.0125}
            | {"started_at": now - 35, "ended_at": now - 20}
        )
    )


async def _stored(bus: Bus) -> dict[str, int]:
    assert bus.js is not None
    return {str(s.config.name): s.state.messages for s in await bus.js.streams_info()}


@pytest.fixture
async def env(tmp_path: Path, nats_server: EmbeddedServer, bus: Bus) -> dict[str, str]:
    await _story(bus, time.time())
    return base_env(tmp_path, SWARM_NATS_URL=nats_server.url, COLUMNS="120")


async def test_history_lists_past_tasks_newest_first_and_publishes_nothing(env: dict[str, str], bus: Bus) -> None:
    before = await _stored(bus)
    res = run_cli(["history"], env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[:3]] == ["t-new", "t-rej", "t-old-tea"]
    assert "done" in lines[2] and "1r" in lines[2] and "1/1 ans" in lines[2] and "$0.0125" in lines[2]
    assert "rejected" in lines[1] and "(too costly)" in lines[1]
    assert lines[-1] == "3 tasks, $0.0125 in all"
    rows = json.loads(run_cli(["history", "--json", "--state", "done"], env).stdout)
    assert [(r["task_id"], r["answers"], r["rounds"], r["cost_usd"]) for r in rows] == [("t-old-tea", 1, 1, 0.0125)]
    assert rows[0]["ended"] is not None and rows[0]["promoted"] is None
    assert await _stored(bus) == before  # reading the past publishes nothing: no event, no dead letter


async def test_search_reads_answers_casefolded_and_since_and_state_narrow(env: dict[str, str]) -> None:
    def ids(*args: str) -> list[str]:
        res = run_cli(["history", "--json", *args], env)
        assert res.returncode == 0, res.stderr
        return [r["task_id"] for r in json.loads(res.stdout)]

    assert ids("--search", "oolong HAIKU") == ["t-old-tea"]  # one word in the task, one in its answer
    assert ids("--search", "STRASSE") == ["t-new"]
    assert ids("--since", "-10m") == ["t-new", "t-rej"]
    assert ids("--since", "3") == ["t-new"]  # a log sequence: the tasks stored at or after it
    assert ids("--state", "rejected,pending", "--state", "done") == ["t-new", "t-rej", "t-old-tea"]
    res = run_cli(["history", "--search", "coffee"], env)
    assert (res.returncode, res.stdout.strip()) == (0, "no task in the log matching 'coffee'")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--state", "finished"], "--state 'finished': not a task state; use done, failed, cancelled, rejected"),
        (["--since", "yesterday"], "--since 'yesterday': not understood"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(env: dict[str, str], args: list[str], says: str) -> None:
    res = run_cli(["history", *args], env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("swarm-tui: error: " + says) and len(res.stderr.splitlines()) == 1

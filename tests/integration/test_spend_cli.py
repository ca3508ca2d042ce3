"""``swarm-tui spend`` run as a user runs it, against a real nats-server: the log's spend by model, role, task and
day as text and JSON, the figures of ``status --json``; a bad ``--days`` is one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import SpendEntry, Task
from tests.support.env import base_env, run_cli


@pytest.mark.parametrize("days", ["0", "x"])
def test_a_bad_days_is_one_line_and_exit_2(tmp_path: Path, days: str) -> None:
    res = run_cli(["spend", "--days", days], base_env(tmp_path, SWARM_NATS_URL="nats://127.0.0.1:9"))
    assert res.returncode == 2 and res.stdout == "", res
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("swarm-tui: error: --days"), res.stderr


async def test_spend_shows_the_logs_money(tmp_path: Path, nats_server: EmbeddedServer, bus: Bus) -> None:
    now = time.time()
    await bus.publish_event(Task(id="t-s", text="find three papers", created_at=now), msg_id="t-s")
    for i, (usd, est) in enumerate([(0.25, False), (0.05, True)]):
        e = SpendEntry(
            id=f"d-s-j{i}", model="openrouter/acme/m", worker_id=f"d-s-w{i}", decision_id="d-s", task_id="t-s",
            cost_usd=usd, estimated=est, at=now,
        )  # fmt: skip
        await bus.publish_event(e, msg_id=e.id)
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = await asyncio.to_thread(run_cli, ["spend", "--json", "--days", "3"], env)
    assert res.returncode == 0, res.stderr
    view = json.loads(res.stdout)
    assert len(view["days"]) == 3 and view["days"][-1]["usd"] == 0.3
    assert (view["billed_usd"], view["estimated_usd"]) == (0.25, 0.05)
    assert view["by_task"][0]["name"] == "t-s find three papers"
    assert view["prices"] == [{"model": "openrouter/acme/m", "price": "unknown", "why": view["prices"][0]["why"]}]
    status = json.loads((await asyncio.to_thread(run_cli, ["status", "--json"], env)).stdout)
    assert status["spend_log"]["today_usd"] == view["days"][-1]["usd"]  # the same figure as status and the panel
    text = (await asyncio.to_thread(run_cli, ["spend"], env)).stdout
    assert "$0.30" in text and "by model:" in text and "price unknown: openrouter/acme/m" in text, text

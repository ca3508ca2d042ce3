"""The adversary's suite for issue 22: promises of docs/security.md and docs/reliability.md broken on purpose.

Each test fails on the code it was written against, and says which promise it breaks and with what figures.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from swarm_tui.cli_commands import status_data
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.config import Config

pytestmark = pytest.mark.fault


# ---------------------------------------------------------------------------------------------- 1. the log's readers
async def test_a_deeply_nested_message_from_a_worker_login_is_a_dead_letter_and_stops_no_reader(
    cfg: Config, bus: Bus
) -> None:
    """A worker's login may publish on ``swarm.evt.worker.>``. ``wire.decode`` catches ValueError and
    UnicodeDecodeError from ``json.loads``, not RecursionError, which 2,000 nested ``[`` (2 KB) raise. The
    error escapes ``trust.read_event`` and the follower's callback (nats-py swallows it): no dead letter, not
    counted, and when it is the newest message of the log the replay never catches up, so ``swarm-tui status``
    (and ``result``, and a control verb with no engine) hangs until someone else publishes. Promise broken:
    "a malformed message never stops a consumer"; bad input gets one line, never a hang: nothing applied."""
    t = Task(id=new_id("t"), text="an honest task", created_at=time.time())
    await bus.publish_event(t, msg_id=t.id)
    assert bus.js is not None
    await bus.js.publish("swarm.evt.worker.x", b"[" * 2000)  # what a worker's login may publish on
    try:
        data = await asyncio.wait_for(status_data(cfg), 10)
    except TimeoutError:
        data = None
    print(f"\nstatus after a 2 KB nested message: {'hung (10 s)' if data is None else data['bus']['malformed']}")
    assert data is not None, "swarm-tui status hangs on the log"
    assert data["bus"]["malformed"].get("worker") == 1
    assert [x["id"] for x in data["tasks"]] == [t.id]

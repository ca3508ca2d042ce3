"""The bus's event log read as a source of the past: bounds, a range, and the first event at a time."""

from __future__ import annotations

import asyncio
import time

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Task
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.fold import fold_to


async def test_a_range_bounds_and_a_time_read_from_the_stream(bus: Bus) -> None:
    log = BusLog(bus)
    assert (await log.bounds()).empty
    assert [s async for s in log.read(1, 10)] == []
    for i in range(6):
        await bus.publish_event(Task(id=f"t-{i}", text=f"task {i}", created_at=time.time()))
        if i == 2:
            await asyncio.sleep(0.05)  # a gap in stored time: seq_at finds the first event after it
    b = await log.bounds()
    assert (b.first_seq, b.last_seq, b.count) == (1, 6, 6) and b.last_time >= b.first_time > 0
    got = [s.seq async for s in log.read(2, 4)]
    assert got == [2, 3, 4]
    assert [s.seq async for s in log.read(5, 99)] == [5, 6]
    third = [s async for s in log.read(3, 3)][0]
    fourth = [s async for s in log.read(4, 4)][0]
    assert await log.seq_at(fourth.time) == 4
    assert await log.seq_at(third.time + (fourth.time - third.time) / 2) == 4
    assert await log.seq_at(b.first_time - 10) == 1 and await log.seq_at(b.last_time + 10) == 7
    fold = await fold_to(log, 3, max_scale=50)
    assert sorted(fold.state.tasks) == ["t-0", "t-1", "t-2"]

"""The checkpoint writer: one checkpoint per ``every`` events as the log grows, the event loop never held long."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from swarm_tui.engine.history.checkpoint import CheckpointStore
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.source import MemoryLog
from swarm_tui.engine.history.writer import CheckpointWriter
from tests.support.past import stored_log


async def test_the_writer_keeps_a_checkpoint_every_n_and_lets_the_loop_run(tmp_path: Path) -> None:
    events = stored_log(200, answer_chars=2000)  # ~3,070 events, one checkpoint at 3,000
    log = MemoryLog(events)
    store = CheckpointStore(max_scale=50, identity="log-1", directory=tmp_path / "history", every=3000)
    writer = CheckpointWriter(log, store, max_scale=50, slice_events=100)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    written = await writer.catch_up(len(events))
    tick.cancel()
    assert written == len(events) // 3000 == len(list((tmp_path / "history").iterdir()))
    assert max(gaps) < 0.05, f"the loop waited {max(gaps) * 1000:.0f} ms"
    # what it wrote is what a fold to there is
    reader = CheckpointStore(max_scale=50, identity="log-1", directory=tmp_path / "history", every=3000)
    near = reader.nearest(len(events))
    direct = await fold_to(log, near.seq if near else 0, max_scale=50)
    assert near is not None and near.state.snapshot() == direct.state.snapshot()

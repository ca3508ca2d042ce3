"""Checkpoints written as the log grows, so the first ``status --at`` on a long log is already warm.

``CheckpointWriter`` keeps a fold of its own (never the live state, never loaded from a checkpoint: the live
engine folds the log itself, docs/security.md) and moves it on to each multiple of the store's ``every``,
writing the checkpoint there. The fold runs on the event loop in slices of ``slice_events`` events; the encoding
and the file run in a thread, sliced so the loop keeps its turns (``checkpoint.encode(sliced=True)``). It costs
a second copy of the projection in memory while it runs. Wiring it into the engine is one component's start
and stop: ``run()`` as a task, cancelled at stop.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from nats.errors import Error as NatsError

from swarm_tui.engine.history.checkpoint import CheckpointStore, encode
from swarm_tui.engine.history.fold import Fold
from swarm_tui.engine.history.source import LogSource

log = logging.getLogger(__name__)


class CheckpointWriter:
    def __init__(self, source: LogSource, store: CheckpointStore, *, max_scale: int, slice_events: int = 200) -> None:
        self.source, self.store = source, store
        self.fold = Fold(max_scale=max_scale)
        self.slice_events = max(1, slice_events)

    async def catch_up(self, end_seq: int) -> int:
        """Fold on to ``end_seq``, writing each checkpoint due on the way; how many were written."""
        written = n = 0
        async for st in self.source.read(self.fold.seq + 1, end_seq):
            self.fold.apply(st)
            if self.store.due(self.fold.seq):
                data = await asyncio.to_thread(encode, self.fold, self.store.identity, sliced=True)
                await asyncio.to_thread(self.store.put, data, self.fold.seq)
                written += 1
                # the fold's objects live on: out of the collector's walks, or each full collection of the
                # growing heap holds the loop 100-200 ms (measured at 76k events). The trade: cyclic garbage of
                # the process that is not yet collected at this moment never will be (in an engine: a little
                # every N events). The lead decides before wiring this into the engine.
                gc.freeze()
            n += 1
            if n % self.slice_events == 0:
                await asyncio.sleep(0)  # a source that has the events at hand never suspends: let the loop run
        return written

    async def run(self, poll_s: float = 30.0) -> None:
        """Until cancelled: every ``poll_s``, fold to the log's last multiple of ``every`` not yet written."""
        every = self.store.every
        while True:
            try:
                b = await self.source.bounds()
                if not b.empty and b.first_seq > self.fold.seq + 1:  # aged out under us: start over from there
                    self.fold = Fold(max_scale=self.fold.max_scale)
                target = (b.last_seq // every) * every
                if target > self.fold.seq:
                    await self.catch_up(target)
            except (OSError, NatsError, ValueError) as exc:  # a bus outage, a full disk: the next turn tries again
                log.warning("history: no checkpoint written this turn: %s", type(exc).__name__)
            await asyncio.sleep(poll_s)

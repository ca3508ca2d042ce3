"""The projection as it was at a point of the log: the same ``SwarmState`` fold, stopped there.

``Fold`` moves one state forward event by event, checking each event as the live reader does (``wire.decode``,
then ``trust.refusal``) but setting nothing aside: reading the past publishes nothing. Its clock is the log's:
the state's "now" is the stored time of the last event applied, so ages, "today" and expiries read as they did
then. ``fold_to`` starts from the nearest checkpoint at or before the point (``Checkpoints``) and folds the rest.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from swarm_tui.engine.bus.trust import refusal
from swarm_tui.engine.bus.wire import decode
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.history.source import LogSource, Stored
from swarm_tui.engine.projection.state import SwarmState


class LogClock:
    """The replayed present: a callable (``SwarmState``'s clock) that reads ``now``, moved as events are applied."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Fold:
    """A state and the position it was folded to: ``apply`` one stored event after another."""

    def __init__(self, *, max_scale: int, state: SwarmState | None = None, seq: int = 0, time: float = 0.0) -> None:
        self.max_scale = max_scale
        self.clock = LogClock(time)
        if state is None:
            state = SwarmState(session_start=0.0, clock=self.clock)
        else:
            state.clock = self.clock
        self.state = state
        self.seq = seq  # the last sequence applied or skipped (0: none yet)
        self.time = time  # its stored time
        self.skipped = 0  # events that did not decode or were refused, as the live reader refuses them

    def apply(self, st: Stored) -> bool:
        """Fold ``st`` in (True), or count it as skipped (False). Events at or before ``seq`` are ignored."""
        if st.seq <= self.seq:
            return False
        self.seq, self.time = st.seq, st.time
        self.clock.now = max(self.clock.now, st.time)
        try:
            ev = decode(st.data)
        except InvalidMessage:
            self.skipped += 1
            return False
        if refusal(st.subject, ev, st.time, max_scale=self.max_scale) is not None:
            self.skipped += 1
            return False
        self.state.apply(ev, st.seq)
        return True


class Checkpoints(Protocol):
    """Folds kept on the way, so a point late in a long log need not be folded from the start."""

    def nearest(self, seq: int) -> Fold | None:
        """A fresh copy of the latest kept fold at or before ``seq`` (the caller may move it on), or None."""
        ...

    def offer(self, fold: Fold) -> None:
        """The fold reached ``fold.seq``: keep a copy if one is due there."""
        ...


class NoCheckpoints:
    """Fold from the start every time."""

    def nearest(self, seq: int) -> Fold | None:
        return None

    def offer(self, fold: Fold) -> None:
        return None


NO_CHECKPOINTS = NoCheckpoints()
YIELD_EVERY = 1000  # a long fold lets the event loop run between batches (the app's screen, its keys)


async def fold_to(
    source: LogSource, end_seq: int, *, max_scale: int, checkpoints: Checkpoints = NO_CHECKPOINTS
) -> Fold:
    """The fold of every event with ``seq <= end_seq`` (from the nearest checkpoint at or before it)."""
    fold = checkpoints.nearest(end_seq) or Fold(max_scale=max_scale)
    if fold.seq < end_seq:
        n = 0
        async for st in source.read(fold.seq + 1, end_seq):
            fold.apply(st)
            checkpoints.offer(fold)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    return fold

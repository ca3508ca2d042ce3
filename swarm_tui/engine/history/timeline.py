"""The replay's timeline: a position in the log, moved by steps, jumps and playing time, with the state there.

The position is the last event folded (``seq``) and the log's time there (``now``: between two events while
playing, the stored time of the event after a step). Playing moves ``now`` by the real seconds that passed times
the speed and folds the events stored up to it; an idle gap in the log longer than ``GAP_REAL_S`` seconds at the
speed passes in ``GAP_REAL_S`` real seconds (a night without events is not a night of waiting). A step back folds
again from a copy of the fold kept up to ``BACK`` events behind the position (``fork``); only when the position
is far from it (a jump back, a long play), from the nearest checkpoint (with none, from the start). Reading the
past publishes nothing: the fold only reads its ``LogSource``.
"""

from __future__ import annotations

import asyncio
from typing import Final

from swarm_tui.engine.history.fold import NO_CHECKPOINTS, YIELD_EVERY, Checkpoints, Fold, fold_to
from swarm_tui.engine.history.fork import fork
from swarm_tui.engine.history.source import Bounds, LogSource, Stored
from swarm_tui.engine.history.when import Point
from swarm_tui.engine.projection.state import SwarmState

SPEEDS: Final[tuple[int, ...]] = (1, 2, 5, 10, 20, 50)  # the ladder of + and -
GAP_REAL_S: Final = 2.0  # the longest an idle gap in the log takes to pass while playing, at any speed
JUMP_S: Final = 60.0  # [ and ]: a minute of log time
_AHEAD: Final = 256  # events read ahead of the position at a time
BACK: Final = 500  # the kept fold stays up to this many events behind the position a step back goes to
_FAR: Final = 5_000  # further than this ahead of the kept fold: from a checkpoint (at most EVERY events to fold)
_AFTER: Final = 3e-6  # "at or before t": the first event after t, less one (a bus log's times allow 2 µs)


class Timeline:
    """A position in ``source`` and the state there; ``open`` first."""

    def __init__(self, source: LogSource, *, max_scale: int, checkpoints: Checkpoints | None = None) -> None:
        self.source = source
        self.max_scale = max_scale
        self.checkpoints: Checkpoints = checkpoints if checkpoints is not None else NO_CHECKPOINTS
        self.fold = Fold(max_scale=max_scale)
        self.bounds = Bounds(0, 0, 0.0, 0.0, 0, 0)
        self.now = 0.0  # the log's time at the position
        self.speed: float = SPEEDS[0]
        self.playing = False
        self._ahead: list[Stored] = []  # the next events after the position, read ahead
        self._base: Fold | None = None  # a fold behind the position, never applied to: a step back forks it

    # ------------------------------------------------------------------ where
    @property
    def state(self) -> SwarmState:
        return self.fold.state

    @property
    def seq(self) -> int:
        return self.fold.seq

    def clock(self) -> float:
        """The log's time at the position: the app's "now" for ages and countdowns while replaying."""
        return self.now

    @property
    def at_end(self) -> bool:
        return self.fold.seq >= self.bounds.last_seq

    def fraction(self) -> float:
        """How far through the log the position is (0..1), by sequence."""
        b = self.bounds
        if b.last_seq <= b.first_seq:
            return 1.0
        return min(1.0, max(0.0, (self.fold.seq - b.first_seq) / (b.last_seq - b.first_seq)))

    async def refresh_bounds(self) -> Bounds:
        self.bounds = await self.source.bounds()  # a live log grows
        return self.bounds

    # ------------------------------------------------------------------ moving
    async def open(self, point: Point | None = None) -> None:
        """To ``point`` (a sequence; or a time: the last event stored at or before it), or the log's first event.
        A sequence past the end stops at the last event; a time before the first event at the first."""
        b = await self.refresh_bounds()
        if b.empty:
            return
        if point is None:
            seq = b.first_seq
        elif point.kind == "seq":
            seq = point.seq
        else:
            seq = await self.source.seq_at(point.value + _AFTER) - 1
        await self.goto(max(b.first_seq, seq))

    async def goto(self, seq: int) -> None:
        """The state just after event ``seq`` (the last one at or before it where the log has a gap)."""
        seq = min(seq, self.bounds.last_seq)
        if seq >= self.fold.seq and self.fold.seq > 0:
            async for st in self.source.read(self.fold.seq + 1, seq):
                self._apply(st)
        else:
            self.fold = await self._refold(seq)
        self._ahead = []
        self.now = self.fold.time

    async def step(self, delta: int) -> bool:
        """One event forward (``delta > 0``) or back; pauses. False when there is none that way."""
        self.pause()
        if delta > 0:
            nxt = await self._next()
            if nxt is None:
                return False
            self._ahead.pop(0)
            self._apply(nxt)
            self.now = self.fold.time
            return True
        if self.fold.seq <= self.bounds.first_seq:
            return False
        await self.goto(self.fold.seq - 1)
        return True

    async def jump(self, seconds: float) -> None:
        """``seconds`` of log time forward or back (``JUMP_S`` for ``[``/``]``), clamped to the log."""
        await self.refresh_bounds()
        b = self.bounds
        t = min(max(self.now + seconds, b.first_time), b.last_time)
        seq = max(b.first_seq, await self.source.seq_at(t + _AFTER) - 1)
        # never against the jump's direction: where times are equal (a burst) the last event at or before t is
        # ahead of the position, and where they go back (a clock stepped back, a hand-made file) behind it
        seq = min(seq, self.fold.seq) if seconds < 0 else max(seq, self.fold.seq)
        if seq != self.fold.seq:
            await self.goto(seq)
        self.now = max(self.fold.time, t)

    async def tick(self, real_s: float) -> bool:
        """``real_s`` real seconds of playing: the log's time moves by them times the speed (an idle gap at most
        ``GAP_REAL_S`` real seconds) and the events up to it are folded. At the end: paused. True if it moved."""
        if not self.playing:
            return False
        nxt = await self._next()
        if nxt is None:
            self.pause()
            return False
        advance = real_s * self.speed
        gap = nxt.time - self.fold.time
        if gap > GAP_REAL_S * self.speed:
            advance = max(advance, gap * real_s / GAP_REAL_S)
        target = self.now + advance
        while nxt is not None and nxt.time <= target:
            self._ahead.pop(0)
            self._apply(nxt)
            nxt = await self._next()
        if nxt is None:
            self.now = self.fold.time
            self.pause()
        else:
            self.now = target
        return True

    # ------------------------------------------------------------------ playing and its speed
    def play(self) -> bool:
        """Play from here; False at the end of the log (nothing to play)."""
        self.playing = not self.at_end
        return self.playing

    def pause(self) -> None:
        self.playing = False

    def toggle(self) -> bool:
        if self.playing:
            self.pause()
            return False
        return self.play()

    def faster(self) -> float:
        self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])
        return self.speed

    def slower(self) -> float:
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])
        return self.speed

    async def _refold(self, seq: int) -> Fold:
        """The fold at ``seq`` behind the position: a copy of the kept fold moved on to it; from the nearest
        checkpoint when the kept one is past ``seq`` or far behind it (a new one kept on the way, ``BACK`` before)."""
        mark = max(0, seq - BACK)
        base = self._base
        if base is None or base.seq > seq or seq - base.seq > _FAR:
            base = await fold_to(self.source, mark, max_scale=self.max_scale, checkpoints=self.checkpoints)
        elif seq - base.seq > 2 * BACK:  # stepping back after a long way on: keep one nearer
            base = await fork(base)
            await self._fold_on(base, mark)
        self._base = base
        fold = await fork(base)
        await self._fold_on(fold, seq)
        return fold

    async def _fold_on(self, fold: Fold, seq: int) -> None:
        n = 0
        async for st in self.source.read(fold.seq + 1, seq):
            fold.apply(st)
            self.checkpoints.offer(fold)
            n += 1
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    # ------------------------------------------------------------------ the log ahead
    def _apply(self, st: Stored) -> None:
        self.fold.apply(st)
        self.checkpoints.offer(self.fold)

    async def _next(self) -> Stored | None:
        """The first event after the position, or None at the end of the log (its bounds read again first)."""
        while not self._ahead:
            at = self.fold.seq
            await self._read_ahead(at + 1)
            if self.fold.seq == at:  # else the position moved while the read waited: read again from there
                break
        return self._ahead[0] if self._ahead else None

    async def _read_ahead(self, start: int) -> None:
        if start > self.bounds.last_seq:
            await self.refresh_bounds()
        end = self.bounds.last_seq
        if start <= end:
            self._ahead = self._after(await _first(self.source, start, min(end, start + _AHEAD - 1)))
        if not self._ahead and start + _AHEAD <= end:
            # a gap of deleted events (or a file's seqs far apart): the source skips it itself (a file bisects, the
            # bus's consumer delivers only what is stored), never counted through 256 at a time (2**62 wide: hours)
            self._ahead = self._after(await _first(self.source, start + _AHEAD, end))

    def _after(self, read: list[Stored]) -> list[Stored]:
        """What a read ahead brought that is still ahead: the position may have moved while it waited."""
        return [st for st in read if st.seq > self.fold.seq]


async def _first(source: LogSource, start: int, end: int) -> list[Stored]:
    """The first ``_AHEAD`` events stored from ``start`` to ``end`` (the read closed after them)."""
    out: list[Stored] = []
    reading = source.read(start, end)
    try:
        async for st in reading:
            out.append(st)
            if len(out) >= _AHEAD:
                break
    finally:
        aclose = getattr(reading, "aclose", None)
        if aclose is not None:
            await aclose()
    return out

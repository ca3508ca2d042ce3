"""When the control room redraws: the render policy, free of Textual (the App only carries it out).

Two kinds of work reach the screen. Worker output arrives at up to 50 workers × 100 chunks a second; it goes
into rings and only marks the worker's card dirty. Engine events (a new task, a decision, a worker's state)
mark the *state views* dirty: the tables, the decision detail, the cards' headers, the panels' titles. ONE
timer (every ``ui.refresh_ms``) asks ``flush()`` what to draw: the dirty cards every tick, the state views at
most every ``state_refresh_s``. When a tick finds nothing dirty the timer is paused (idle CPU: no 20 wake-ups a
second) and the first chunk or event resumes it through ``on_wake``.

The busy mode exists because every state refresh delays the cards' next frame: while many cards stream, the
state views are rebuilt at most every ``busy_state_refresh_s`` and the once-a-second tick refreshes them (for
the ages and countdowns) only every ``busy_table_ticks`` seconds, unless the log moved. The figures behind
these numbers are in docs/performance.md (chunk-to-screen latency, idle CPU); change them only with a
before/after measurement (``python -m bench --only stream,idle``).

The info tick itself runs every ``tick_s`` while anything moves and every ``idle_tick_s`` at rest (the App
decides which, from ``active_s``); ``tick(steps=...)`` keeps the ages' cadence in seconds either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RenderTuning:
    """Every tuning constant of the redraw policy and of the workers panel, in one place."""

    state_refresh_s: float = 0.25  # tables and cards are rebuilt at most this often
    busy_cards: int = 10  # this many cards streaming at the last flush makes the app "busy"
    busy_state_refresh_s: float = 0.5  # ... then the state views at most this often
    busy_table_ticks: int = 5  # ... and the ages-only refresh every this many ticks (a state change: at once)
    quiet_table_ticks: int = 5  # at rest too: ages move in 5 s steps, like the header's countdown (idle CPU)
    tick_s: float = 1.0  # the info poll, the ages and the header's countdown, while anything moves
    idle_tick_s: float = 10.0  # ... at rest (idle CPU); an event, a key, a bus change, a RAM move or a beat: at once
    active_s: float = 10.0  # "anything moves": an event, a key or output within this, live workers, bus not up
    mount_batch: int = 10  # new worker cards mounted per frame (one layout of 50 new cards took ~90 ms)
    linger_s: float = 30.0  # a finished worker's card stays this long
    max_cards: int = 60  # cards shown at most; the rest are counted under the grid


TUNING = RenderTuning()

StateAction = Literal["state", "cards"]  # None from state_changed: nothing to draw now


@dataclass(frozen=True)
class Frame:
    """What one flush draws: the state views (tables, detail, header, titles) and/or these cards' output."""

    state: bool
    workers: frozenset[str] = field(default_factory=frozenset)


class RenderScheduler:
    """Dirty tracking and the throttles. ``clock`` is monotonic seconds; ``on_wake`` resumes the paused timer."""

    def __init__(
        self,
        tuning: RenderTuning = TUNING,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self.tuning = tuning
        self.clock = clock
        self.on_wake = on_wake
        self.state_dirty = True  # nothing is shown yet
        self.dirty_workers: set[str] = set()
        self.paused = False  # the flush timer is paused (set by flush, cleared by wake)
        self.streaming = 0  # cards with new output at the last flush
        self.flushes = 0  # timer ticks seen (tests and the bench read it)
        self.ticks = 0
        self.shown_version = -1  # the state version the views show
        self.last_state_refresh = 0.0
        self._new_workers = False

    # ---- what happened
    def event(self, *, new_worker: bool = False) -> None:
        """The event log moved; ``new_worker``: a worker without a card started (its card is mounted at once,
        not at the next throttled state refresh: that wait was part of the ramp's latency)."""
        self.state_dirty = True
        if new_worker:
            self._new_workers = True
        self.wake()

    def output(self, worker_id: str) -> None:
        """New output for a worker's card."""
        if not self.dirty_workers:
            self.wake()  # the first dirty card since the last flush: the timer may be paused
        self.dirty_workers.add(worker_id)

    def invalidate_state(self) -> None:
        """The state views are stale (a control request was answered) but need no wake: the engine's event for
        the request follows (and wakes the timer), and so does the next tick."""
        self.state_dirty = True

    def wake(self) -> None:
        """Something is dirty: make sure the flush timer runs."""
        if self.paused:
            self.paused = False
            if self.on_wake is not None:
                self.on_wake()

    # ---- what to draw
    def busy(self) -> bool:
        return self.streaming >= self.tuning.busy_cards

    def state_refresh_due(self) -> bool:
        """The state views at most every ``state_refresh_s`` (``busy_state_refresh_s`` while busy: a burst of
        results re-sorted and rebuilt the task table several times in a row, each delaying the cards)."""
        every = self.tuning.busy_state_refresh_s if self.busy() else self.tuning.state_refresh_s
        return self.clock() - self.last_state_refresh >= every

    def flush(self) -> Frame | None:
        """One tick of the flush timer. None: nothing is dirty, the caller pauses the timer until ``wake``."""
        self.flushes += 1
        if not self.dirty_workers and not self.state_dirty:
            self.paused = True
            self.streaming = 0
            return None
        state = self.state_dirty and self.state_refresh_due()  # judged by the previous flush's streaming count
        workers: frozenset[str] = frozenset()
        if self.dirty_workers:
            workers = frozenset(self.dirty_workers)
            self.dirty_workers = set()
            self.streaming = len(workers)
        return Frame(state, workers)

    def state_changed(self) -> StateAction | None:
        """A (coalesced) state-changed message: refresh the state views if due, else mount new workers' cards."""
        if self.state_refresh_due():
            self._new_workers = False
            return "state"
        if self._new_workers:
            self._new_workers = False
            return "cards"
        return None

    def tick(self, version: int, steps: int = 1) -> bool:
        """The info tick; ``version``: the state's version now; ``steps``: how many ``tick_s`` it stands for (a
        tick at rest is ``idle_tick_s`` apart). True: the state views are due (marked dirty, timer woken) for
        their ages and countdowns; False: only the header's countdown should move."""
        steps = max(1, steps)
        self.ticks += steps
        every = self.tuning.busy_table_ticks if self.busy() else self.tuning.quiet_table_ticks
        if self.ticks // every != (self.ticks - steps) // every or version != self.shown_version:
            self.state_dirty = True
            self.wake()
            return True
        return False

    def state_shown(self, version: int) -> None:
        """The state views were just rebuilt from the state at ``version``."""
        self.state_dirty = False
        self.last_state_refresh = self.clock()
        self.shown_version = version

    def mount_batch(self, deterministic: bool) -> int | None:
        """New cards to mount in one frame; None: all at once (deterministic scenes and snapshots)."""
        return None if deterministic else self.tuning.mount_batch

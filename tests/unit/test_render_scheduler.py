"""The render scheduler's policy on a hand-moved clock: idle pause and wake, the state-refresh throttle (and its
busy mode while many cards stream), the once-a-second tick, and the dirty sets."""

from __future__ import annotations

import subprocess
import sys

from swarm_tui.tui.render_scheduler import TUNING, Frame, RenderScheduler, RenderTuning


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(tuning: RenderTuning = TUNING) -> tuple[RenderScheduler, Clock, list[int]]:
    clock = Clock()
    wakes: list[int] = []
    sched = RenderScheduler(tuning, clock=clock, on_wake=lambda: wakes.append(1))
    return sched, clock, wakes


def shown(sched: RenderScheduler, version: int = 0) -> None:
    """What the App does after rebuilding the state views."""
    sched.state_shown(version)


def stream(sched: RenderScheduler, n: int) -> Frame | None:
    """n cards get output, then one flush."""
    for i in range(n):
        sched.output(f"w{i}")
    return sched.flush()


# ------------------------------------------------------------------------------------------- idle pause and wake
def test_nothing_dirty_pauses_the_timer_and_the_first_chunk_wakes_it_once() -> None:
    sched, clock, wakes = make()
    first = sched.flush()
    assert first == Frame(state=True)  # nothing is shown yet: the first tick draws the state views
    shown(sched)
    assert sched.flush() is None and sched.paused  # idle: the App pauses its timer
    assert wakes == []
    sched.output("w1")
    sched.output("w1")
    sched.output("w2")
    assert wakes == [1] and not sched.paused  # resumed once, not once per chunk
    assert sched.flush() == Frame(state=False, workers=frozenset({"w1", "w2"}))
    assert sched.flush() is None and sched.paused
    assert sched.flushes == 4


def test_an_event_wakes_the_paused_timer_and_marks_the_state_views() -> None:
    sched, clock, wakes = make()
    shown(sched)
    assert sched.flush() is None
    clock.t += 1
    sched.event()
    assert wakes == [1] and sched.state_dirty
    sched.event()  # already awake: no second resume
    assert wakes == [1]
    assert sched.flush() == Frame(state=True)


def test_a_running_timer_is_not_resumed() -> None:
    sched, clock, wakes = make()
    sched.output("w1")  # never paused
    sched.event()
    assert wakes == []


def test_a_scheduler_without_a_timer_never_calls_back() -> None:
    sched = RenderScheduler(clock=Clock())
    shown(sched)
    assert sched.flush() is None
    sched.output("w1")  # on_wake None: nothing to resume, no error
    assert not sched.paused


def test_an_answered_control_request_marks_the_views_without_waking() -> None:
    sched, clock, wakes = make()
    shown(sched)
    assert sched.flush() is None
    sched.invalidate_state()
    assert sched.state_dirty and sched.paused and wakes == []  # the engine's event (or the tick) wakes it


# ------------------------------------------------------------------------------------------- throttling
def test_state_views_are_rebuilt_at_most_every_state_refresh_s() -> None:
    sched, clock, _ = make()
    shown(sched)
    clock.t += 0.1
    sched.event()
    assert sched.flush() == Frame(state=False)  # too soon: stays dirty, the timer keeps running
    assert sched.state_dirty and not sched.paused
    clock.t += TUNING.state_refresh_s - 0.1
    assert sched.flush() == Frame(state=True)


def test_many_streaming_cards_slow_the_state_refresh_down() -> None:
    sched, clock, _ = make()
    shown(sched)
    frame = stream(sched, TUNING.busy_cards)
    assert frame is not None and len(frame.workers) == TUNING.busy_cards and sched.busy()
    clock.t += TUNING.state_refresh_s  # due when quiet, not while busy
    sched.event()
    frame = stream(sched, TUNING.busy_cards)
    assert frame is not None and not frame.state and sched.state_dirty
    clock.t += TUNING.busy_state_refresh_s - TUNING.state_refresh_s
    frame = stream(sched, TUNING.busy_cards)
    assert frame is not None and frame.state


def test_busy_is_judged_by_the_previous_flush() -> None:
    """The first flush of a burst still uses the quiet interval: its own cards are counted after the decision."""
    sched, clock, _ = make()
    shown(sched)
    clock.t += TUNING.state_refresh_s
    sched.event()
    frame = stream(sched, 2 * TUNING.busy_cards)
    assert frame is not None and frame.state and sched.busy()


def test_fewer_streaming_cards_end_the_busy_mode_and_an_idle_tick_resets_it() -> None:
    sched, clock, _ = make()
    shown(sched)
    stream(sched, TUNING.busy_cards)
    assert sched.busy()
    stream(sched, TUNING.busy_cards - 1)
    assert not sched.busy()
    stream(sched, TUNING.busy_cards)
    assert sched.flush() is None  # nothing dirty: idle
    assert sched.streaming == 0 and not sched.busy()


def test_a_state_message_refreshes_when_due_else_mounts_new_cards_only() -> None:
    sched, clock, _ = make()
    shown(sched)
    sched.event()
    assert sched.state_changed() is None  # too soon, no new worker: the timer's flush will do it
    sched.event(new_worker=True)
    assert sched.state_changed() == "cards"  # a new worker's card is mounted at once
    assert sched.state_changed() is None  # ... once
    clock.t += TUNING.state_refresh_s
    sched.event(new_worker=True)
    assert sched.state_changed() == "state"  # the full refresh mounts it too
    assert sched.state_changed() == "state"  # due until the views are shown
    shown(sched)
    assert sched.state_changed() is None


# ------------------------------------------------------------------------------------------- the tick
def test_the_tick_refreshes_the_ages_every_few_seconds_while_quiet() -> None:
    sched, clock, wakes = make()
    shown(sched, version=7)
    assert sched.flush() is None
    due = [sched.tick(7) for _ in range(TUNING.quiet_table_ticks)]
    assert due == [False] * (TUNING.quiet_table_ticks - 1) + [True]
    assert sched.state_dirty and wakes == [1]
    shown(sched, version=7)
    assert sched.tick(8) is True  # the log moved: at once


def test_while_busy_the_tick_refreshes_the_tables_every_few_seconds_or_when_the_log_moved() -> None:
    sched, clock, _ = make()
    shown(sched, version=7)
    stream(sched, TUNING.busy_cards)
    due = []
    for _ in range(2 * TUNING.busy_table_ticks):
        due.append(sched.tick(7))
        shown(sched, version=7)
    assert due.count(True) == 2 and due[TUNING.busy_table_ticks - 1]  # every busy_table_ticks-th tick
    assert sched.tick(8) is True  # the log moved since the views were drawn: at once


def test_tuning_is_honoured() -> None:
    tuning = RenderTuning(state_refresh_s=2.0, busy_cards=2, busy_table_ticks=3)
    sched, clock, _ = make(tuning)
    shown(sched)
    clock.t += 1.0
    sched.event()
    assert sched.flush() == Frame(state=False)
    stream(sched, 2)
    assert sched.busy()
    assert [sched.tick(0) for _ in range(3)] == [False, False, True]


def test_cards_are_mounted_in_batches_except_in_deterministic_scenes() -> None:
    sched, _, _ = make()
    assert sched.mount_batch(deterministic=False) == TUNING.mount_batch
    assert sched.mount_batch(deterministic=True) is None


def test_the_scheduler_imports_no_textual() -> None:
    """The policy stays testable without a screen: importing it must not import Textual."""
    code = "import sys, swarm_tui.tui.render_scheduler; sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0

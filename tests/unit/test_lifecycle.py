"""The one start/stop rule (engine/lifecycle.py): what started stops, in reverse, bounded, once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from swarm_tui.engine.lifecycle import Lifecycle, Stopped, within


class Part:
    """A part that writes what happens to it into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.fail_stop = fail_stop

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


async def test_a_start_failing_half_way_stops_only_what_started_in_reverse() -> None:
    journal: list[str] = []
    life = Lifecycle("test")
    parts = [Part("a", journal), Part("b", journal), Part("c", journal, fail_start=True), Part("d", journal)]
    with pytest.raises(RuntimeError, match="c cannot start"):
        for p in parts:
            await life.start_part(p)
    assert life.started == ["a", "b"]
    await life.stop()
    assert journal == ["start a", "start b", "start c", "stop b", "stop a"]  # c never started, d never tried
    assert life.started == []


async def test_an_adopted_part_stops_last_and_a_failing_stop_does_not_hold_up_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    life = Lifecycle("test")

    async def close_bus() -> None:
        journal.append("stop bus")

    life.adopt("bus", close_bus)  # handed in already running
    await life.start_part(Part("a", journal))
    await life.start_part(Part("b", journal, fail_stop=True))
    await life.start_part(Part("c", journal))
    with caplog.at_level(logging.ERROR, logger="swarm_tui.engine.lifecycle"):
        await life.stop()  # does not raise
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a", "stop bus"]
    assert "test: stopping b failed" in caplog.text


async def test_a_stop_that_hangs_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    life = Lifecycle("test", cancel_grace_s=0.3)
    release = asyncio.Event()

    async def stubborn_stop() -> None:  # ignores the cancellation, like a stop stuck in a blocking drain
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()
        journal.append("stubborn finally stopped")

    await life.start_part(Part("first", journal))
    await life.start("hung", _noop, stubborn_stop, timeout_s=0.2)
    await life.start("hung-cancellable", _noop, _sleep_forever, timeout_s=0.2)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="swarm_tui.engine.lifecycle"):
        stopping = asyncio.create_task(life.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)  # not wait_for: it would wait for a stuck stop
    took = time.monotonic() - t0
    release.set()  # the straggler ends on its own now; nothing waited for it
    assert stopping in done, "stop() hung on a part that ignores its cancellation"
    assert 0.65 < took < 2.5, took  # 0.2 s + 0.3 s of grace for the stubborn one, 0.2 s for the other
    assert journal[:2] == ["start first", "stop first"]  # the part before the hung ones still stopped
    assert "stopping hung took over 0.5 s; going on without it" in caplog.text
    await asyncio.sleep(0.05)
    assert journal[-1] == "stubborn finally stopped"


async def test_stop_twice_is_a_no_op_and_nothing_starts_after_a_stop() -> None:
    journal: list[str] = []
    life = Lifecycle("test")
    await life.start_part(Part("a", journal))
    await life.stop()
    await life.stop()
    assert journal == ["start a", "stop a"]
    assert life.stopped
    with pytest.raises(Stopped):
        await life.start_part(Part("late", journal))
    assert journal == ["start a", "stop a"]  # the late part was not even started


async def test_a_part_that_finishes_starting_after_the_stop_is_stopped_at_once() -> None:
    journal: list[str] = []
    life = Lifecycle("test")
    gate = asyncio.Event()

    async def slow_start() -> None:
        journal.append("start slow")
        await gate.wait()

    async def slow_stop() -> None:
        journal.append("stop slow")

    await life.start_part(Part("a", journal))
    starting = asyncio.create_task(life.start("slow", slow_start, slow_stop))
    await asyncio.sleep(0.01)
    await life.stop()  # the app quits while the engine is still replaying the log
    assert journal == ["start a", "start slow", "stop a"]
    gate.set()
    with pytest.raises(Stopped):
        await starting
    assert journal == ["start a", "start slow", "stop a", "stop slow"]  # nothing is left running


async def test_a_cancelled_stop_leaves_no_stop_behind() -> None:
    stopped = asyncio.Event()
    cancelled: list[bool] = []
    life = Lifecycle("test")

    async def slow_stop() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        finally:
            stopped.set()

    await life.start("slow", _noop, slow_stop, timeout_s=None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(life.stop(), 0.1)  # the caller's own bound (the app gives the engine 15 s)
    await asyncio.wait_for(stopped.wait(), 1)
    assert cancelled == [True]


async def _noop() -> None:
    return None


async def _sleep_forever() -> None:
    await asyncio.sleep(3600)


async def test_a_stop_over_its_bound_is_cancelled_and_its_cleanup_runs_before_the_next_part_stops() -> None:
    """A pool whose stop outlives its bound is cancelled; what it does on that cancellation (store a job's last
    word, ack it) still runs before the parts under it (the bus) stop."""
    journal: list[str] = []
    life = Lifecycle("test", cancel_grace_s=2.0)

    async def slow_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # the cleanup a cancelled stop still does
            journal.append("cleanup after cancel")
            raise

    await life.start_part(Part("bus", journal))
    await life.start("pool", _noop, slow_stop, timeout_s=0.2)
    await life.stop()
    assert journal == ["start bus", "cleanup after cancel", "stop bus"]


async def _cancel_as_it_completes(wait: object) -> asyncio.Task[object]:
    """A task awaiting ``wait(future, 10)``, cancelled in the same loop step as the future completes."""
    fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait(fut, 10))  # type: ignore[operator]
    await asyncio.sleep(0)  # the task now waits on the future
    fut.set_result("a chunk")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return task


async def test_within_never_drops_a_cancel_that_lands_as_the_awaited_thing_completes() -> None:
    """The race behind a cancelled worker that read on to the end of its stream (CI, test_llm_stream's
    wrapper path): Python 3.11's wait_for returns the result and drops the cancel; ``within`` raises it."""
    assert (await _cancel_as_it_completes(within)).cancelled()


async def test_within_times_out_and_passes_results_through() -> None:
    assert await within(asyncio.sleep(0, "x"), 1) == "x" and await within(asyncio.sleep(0, "y"), None) == "y"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.05)
    assert time.monotonic() - t0 < 1

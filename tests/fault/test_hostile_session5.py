"""Session 5 (adversarial): today's replay opening (the GC freeze, the shown cards' rings, nats-py without
aiohttp) and the merge's per-task check. Each test fails while its finding stands; its docstring says what breaks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator

import pytest

from swarm_tui.engine.history.source import MemoryLog, Stored
from swarm_tui.engine.history.timeline import Timeline
from swarm_tui.engine.history.when import Point
from swarm_tui.tui.link import ReplayLink
from swarm_tui.tui.replay_app import ReplayApp
from swarm_tui.tui.scenes import scene_config
from tests.support.history_log import history_events
from tests.support.polling import until
from tests.support.tui import SIZE


@pytest.fixture
def thawed() -> Iterator[None]:
    """Each test starts with nothing frozen and leaves nothing frozen (whatever the product did)."""
    gc.unfreeze()
    was = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


class BrokenLog(MemoryLog):
    """A log whose read fails part-way (the bus's request timed out, the connection closed)."""

    async def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        async for st in super().read(start_seq, end_seq):
            yield st
            raise TimeoutError("nats: timeout")


class StuckLog(MemoryLog):
    """A log whose read never answers (a bus that went quiet during the opening)."""

    def __init__(self, events: list[Stored]) -> None:
        super().__init__(events)
        self.reading = asyncio.Event()

    async def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        self.reading.set()
        await asyncio.Event().wait()
        yield self.events[0]  # pragma: no cover


# ---------------------------------------------------------------------------------------------- 1: the GC freeze
async def test_an_opening_that_fails_leaves_the_process_frozen(thawed: None) -> None:
    """FINDING (memory): ReplayLink.start freezes in paused_gc's ``finally`` (checkpoint.py paused_gc:
    ``gc.freeze()`` however the block ends) but sets ``_frozen = True`` only after ``timeline.open`` returned
    (link.py ReplayLink.start). When the opening's read fails (BusLog.read raises "the bus's log stopped sending
    events" after READ_IDLE_S, a request times out, the connection closes), every
    object in the process is frozen and neither ``thaw`` nor ``stop`` (nor ReplayApp.on_unmount) undoes it: the
    app stays up with the error and nothing that existed then, the half-made fold included, is ever collected; in a
    test process every later test runs on a permanently frozen heap."""
    link = ReplayLink(
        scene_config(), Timeline(BrokenLog(history_events()), max_scale=50), start_at=Point("seq", 6), where="test log"
    )
    with pytest.raises(TimeoutError):
        await link.start()
    link.thaw()
    await link.stop()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0, f"{gc.get_freeze_count()} objects left frozen after a failed opening"


async def test_a_replay_quit_during_its_opening_leaves_the_process_frozen(thawed: None) -> None:
    """FINDING (memory): q (or a signal, or a test's pilot ending) while the opening still reads the log: the app
    unmounts first (ReplayApp.on_unmount: ``thaw`` is a no-op, nothing is frozen yet), then the start worker is
    cancelled and paused_gc's ``finally`` freezes the whole heap (checkpoint.py paused_gc; link.py ReplayLink.start
    never reaches ``_frozen = True``). Nothing is left to thaw it: the process (a test worker running the next
    tests, an embedding program) keeps every object of the app frozen, never collected."""
    log = StuckLog(history_events())
    link = ReplayLink(scene_config(), Timeline(log, max_scale=50), start_at=None, where="test log")
    app = ReplayApp(link, refresh_ms=20)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: log.reading.is_set(), 10, "the opening reads the log")
        await pilot.pause()
        assert gc.get_freeze_count() == 0  # nothing frozen while it reads: the freeze comes with the way out
    for _ in range(20):  # the cancelled start worker's last steps
        await asyncio.sleep(0.01)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0, f"{gc.get_freeze_count()} objects left frozen after quitting mid-opening"


class GatedLog(MemoryLog):
    """The opening's read waits for ``open_go``, the read-ahead of a step from the log's first event (1..256)
    for ``step_go``: the order in which a slow bus answers the two is the test's."""

    def __init__(self, events: list[Stored]) -> None:
        super().__init__(events)
        self.open_go, self.step_go = asyncio.Event(), asyncio.Event()
        self.opening, self.stepping = asyncio.Event(), asyncio.Event()

    async def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        if start_seq == 1 and end_seq == 256:
            self.stepping.set()
            await self.step_go.wait()
        elif start_seq == 1:
            self.opening.set()
            await self.open_go.wait()
        async for st in super().read(start_seq, end_seq):
            yield st


async def test_a_step_pressed_while_the_replay_opens_leaves_later_steps_dead(thawed: None) -> None:
    """FINDING (wrong text / trust): the replay's keys worked before the opening was done (ReplayRoom.check_action
    did not wait for ``ready``), and the opening's fold (ReplayLink.start: ``timeline.open``) does not take the
    room's ``_moving`` lock that each move does (ReplayRoom._read_log). A → pressed while a long log opened read
    ahead from the first event (the empty fold's position); when that read answered after the opening's ``goto``
    reset ``_ahead``, the 255 stale events stayed queued ahead of the opened position, and each later → popped one
    that Fold.apply skipped: the position stayed "event 900" for up to 255 presses. Now the moves wait for the
    opening (a key then does nothing), and the timeline drops a read ahead that the position passed meanwhile
    (the next test)."""
    from tests.support.past import stored_log

    log = GatedLog(stored_log(60, garbage=False))
    link = ReplayLink(scene_config(), Timeline(log, max_scale=50), start_at=Point("seq", 900), where="test log")
    app = ReplayApp(link, refresh_ms=20)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: log.opening.is_set(), 10, "the opening reads the log")
        await pilot.press("right")  # impatient: the replay is still opening
        await pilot.pause(0.2)
        assert not log.stepping.is_set()  # the move waited: no read ahead raced the opening
        log.open_go.set()
        log.step_go.set()
        await until(lambda: app.ready, 15)
        await pilot.pause(0.3)
        assert link.timeline.seq == 900
        for _ in range(3):
            await pilot.press("right")
            await pilot.pause(0.1)
        await until(lambda: link.timeline.seq == 903, 5, "three steps after the opening")


async def test_a_read_ahead_the_position_passed_meanwhile_is_dropped(thawed: None) -> None:
    """The same race at the timeline: a step's read ahead from the first event answers after an opening folded to
    event 900; what it brought is behind the position and is not queued (timeline.py ``_after``), so the step
    goes to 901 and each later one moves on."""
    from tests.support.past import stored_log

    log = GatedLog(stored_log(60, garbage=False))
    tl = Timeline(log, max_scale=50)
    await tl.refresh_bounds()
    stepping = asyncio.create_task(tl.step(1))
    await until(lambda: log.stepping.is_set(), 5, "the step reads ahead")
    log.open_go.set()
    await tl.open(Point("seq", 900))
    assert tl.seq == 900
    log.step_go.set()
    assert await stepping
    assert tl.seq == 901
    for n in (902, 903, 904):
        assert await tl.step(1) and tl.seq == n

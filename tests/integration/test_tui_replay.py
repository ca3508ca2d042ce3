"""The app on the log's past (``swarm-tui replay``), driven by Pilot: the position, stepping, jumping, playing,
the speed, the read-only keys, worker output replayed from the stored results, and a replay of a file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Task
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.history.filelog import read_log_file, write_log_file
from swarm_tui.engine.history.timeline import Timeline
from swarm_tui.engine.history.when import Point
from swarm_tui.tui.link import READ_ONLY, ReplayLink
from swarm_tui.tui.replay_app import ReplayApp
from swarm_tui.tui.replay_room import NOT_STORED, ReplayRoom
from swarm_tui.tui.scenes import scene_config
from tests.support.history_log import ANSWER, T0, history_events, history_log
from tests.support.polling import until
from tests.support.tui import SIZE, live_timeline_with_tasks, make_app, screen_lines, started


def _app(point: Point | None = None, log: object = None) -> ReplayApp:
    source = log if log is not None else history_log()
    link = ReplayLink(scene_config(), Timeline(source, max_scale=50), start_at=point, where="test log")  # type: ignore[arg-type]
    return ReplayApp(link, refresh_ms=20)


def _room(app: ReplayApp) -> ReplayRoom:
    room = app.room
    assert isinstance(room, ReplayRoom)
    return room


def _line(room: ReplayRoom) -> str:
    return str(room.timeline_bar.render())


async def test_the_panels_show_the_state_at_the_position_and_the_keys_move_it() -> None:
    app = _app(Point("seq", 2))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        room = _room(app)
        assert room.timeline.seq == 2 and "d-1" in room.decision_table.rows
        assert "REPLAY" in room.header_bar.line.plain and "test log" in room.header_bar.line.plain
        assert "event 2 of 7" in _line(room) and "paused" in _line(room)
        assert app.clock() == T0 + 5  # ages and countdowns count from the log's time there
        await pilot.press("right")  # the tables' own right would move a column: the replay's key wins
        await until(lambda: room.timeline.seq == 3)
        assert room.link.state.decisions["d-1"].status == "approved"
        await pilot.press("right")
        await until(lambda: "w-1" in room.workers_panel.cards)
        assert NOT_STORED in room.rings["w-1"].text()  # running: chunks are not stored
        await pilot.press("left")
        await until(lambda: room.timeline.seq == 3 and "event 3 of 7" in _line(room))
        await pilot.press("right_square_bracket")  # a minute on: the worker's result is folded
        await until(lambda: room.timeline.seq == 6)
        await until(lambda: ANSWER in room.rings["w-1"].text())
        await pilot.press("left_square_bracket")  # from T0 + 70 to T0 + 10
        await until(lambda: room.timeline.seq == 3)
        await pilot.press("left_square_bracket")  # before the log: its first event
        await until(lambda: room.timeline.seq == 1)


async def test_space_plays_and_the_speed_goes_1_to_50() -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        room = _room(app)
        for _ in range(6):
            await pilot.press("plus")
        assert room.timeline.speed == 50 and "50x" in _line(room)
        await pilot.press("minus")
        assert room.timeline.speed == 20
        await pilot.press("space")
        assert "playing" in _line(room)
        await until(lambda: room.timeline.seq >= 3, 10)  # a tick moved it
        await pilot.press("space")
        assert not room.timeline.playing and "paused" in _line(room)


async def test_nothing_is_published_every_action_says_replay_is_read_only() -> None:
    app = _app(Point("seq", 2))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        seen: list[str] = []
        app.notify = lambda message, **_: seen.append(str(message))  # type: ignore[method-assign]
        for key in ("a", "r", "e", "c", "C", "p", "n", "exclamation_mark", "plus", "minus"):
            await pilot.press(key)
        assert seen == [READ_ONLY] * 8  # + and - are the replay's speed here
        assert app.screen is _room(app)  # no dialog opened
        reply = await app.link.control("approve", {"id": "d-1"})
        assert reply is not None and not reply.ok and reply.error == READ_ONLY


async def test_a_replay_of_an_exported_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_log_file(path, history_events())
    app = _app(Point("time", T0 + 41), read_log_file(path))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        room = _room(app)
        assert room.timeline.seq == 6 and app.link.bus is None
        await until(lambda: ANSWER in room.rings["w-1"].text())


async def test_t_opens_the_live_logs_past_read_only_and_returns_to_live(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        room = await live_timeline_with_tasks(app, pilot, engine, observer)
        assert isinstance(room, ReplayRoom)
        assert room.timeline.seq == room.timeline.bounds.last_seq and not room.timeline.playing  # the live end
        assert "REPLAY" in room.header_bar.line.plain
        published: list[str] = []

        async def heard(msg: Any) -> None:
            published.append(msg.subject)

        assert observer.nc is not None
        sub = await observer.nc.subscribe("swarm.>", cb=heard)
        assert room.controls.link is room.link  # a promote from a task's results there is refused too
        await pilot.press("a", "r", "p", "plus", "n", "c", "exclamation_mark", "left")
        await until(lambda: room.timeline.seq < room.timeline.bounds.last_seq)
        late = Task(id="t-3", text="while looking back", created_at=time.time())
        await observer.publish_event(late, msg_id=late.id)
        before = room.timeline.bounds.last_seq
        await until(lambda: "t-3" in engine.state.tasks)  # the live state follows the log meanwhile
        # the timeline's line follows the log's end as it grows ("event N of M"), the position stays
        await until(lambda: room.timeline.bounds.last_seq > before, 5, "the timeline's bounds follow the log")
        await until(lambda: f"of {room.timeline.bounds.last_seq} " in _line(room))
        await asyncio.sleep(0.3)
        await sub.unsubscribe()
        assert published == [S.evt("task", "t-3")]  # only ours: replaying published nothing
        assert "t-3" not in room.link.state.tasks
        await pilot.press("t")
        await until(lambda: app.screen is app.room)
        await until(lambda: "t-3" in app.room.task_table.rows)


async def test_the_key_bar_shows_the_replays_keys_and_the_spend_panel_follows_the_position() -> None:
    """A replay's key bar listed Approve, Reject, Edit, Cancel, Pause, New task (each only says "read-only"), and the
    Spend panel kept the figures of the position it opened at: a step back before any spend still showed it."""
    from swarm_tui.engine.history.source import MemoryLog
    from tests.support.past import stored_log

    log = MemoryLog(stored_log(2, garbage=False))
    last = (await log.bounds()).last_seq
    app = _app(Point("seq", last), log)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(app, pilot)
        room = _room(app)
        await until(lambda: room.spend_panel.spend is not None and room.spend_panel.spend["today_usd"] > 0)
        bar = screen_lines(app)[-1]
        assert "Back" in bar and "Faster" in bar
        assert not any(word in bar for word in ("Approve", "Reject", "Edit", "Cancel", "Pause", "New task"))
        await pilot.press("a")  # still bound: it says why nothing happens
        await until(lambda: any(READ_ONLY in str(n.message) for n in app._notifications))
        for _ in range(last):  # back to the first event, before any spend
            if room.timeline.seq == 1:
                break
            await pilot.press("left")
        await until(lambda: room.timeline.seq == 1)
        await until(lambda: room.spend_panel.spend is not None and room.spend_panel.spend["today_usd"] == 0)


async def test_only_the_shown_cards_have_a_ring_and_a_filter_fills_the_one_it_brings_into_sight() -> None:
    """A long log's position has thousands of workers: the replay fills the rings of the cards the panel shows
    (60 at most), not one per worker (13,000 rings took 0.36 s of opening a 100,000-event log); a worker a
    filter brings into sight gets its stored result, and rings of cards no longer shown are let go."""
    from swarm_tui.engine.bus.trust import event_subject
    from swarm_tui.engine.history.source import MemoryLog, Stored
    from tests.support.past import round_events

    events: list[Stored] = []
    for i in range(100):  # 200 workers, every one finished within the cards' linger of the log's end
        t = T0 + i * 0.1
        for ev in round_events(i, t, answer_chars=20):
            events.append(Stored(len(events) + 1, t + 6, event_subject(ev), ev.to_bytes()))
    app = _app(Point("seq", len(events)), MemoryLog(events))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        room = _room(app)
        state = room.link.state
        panel = room.workers_panel
        await until(lambda: len(panel.cards) == panel.tuning.max_cards)
        assert len(state.workers) == 200 and set(room.rings) == set(panel.cards)
        for wid in panel.cards:
            assert room.rings[wid].text() == state.results[state.workers[wid].job_id].text
        hidden = next(w for w in sorted(state.workers) if w not in panel.cards)
        await pilot.press("slash")
        await pilot.press(*hidden)
        await until(lambda: set(panel.cards) == {hidden})
        assert set(room.rings) == {hidden}
        assert room.rings[hidden].text() == state.results[state.workers[hidden].job_id].text
        assert room.rings[hidden].text().startswith("answer ")


async def test_the_opening_is_frozen_from_the_collector_until_the_position_moves() -> None:
    """The fold at the position is long-lived: the opening keeps it out of the cycle collector's walks (~0.5 s of
    opening a 100,000-event log) until the first move, when a fold let go of must be collectable again; a replay
    quit without a move thaws it too (a frozen object is never collected)."""
    import gc

    app = _app(Point("seq", 2))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert gc.get_freeze_count() > 0
        await pilot.press("right")
        await until(lambda: _room(app).timeline.seq == 3)
        assert gc.get_freeze_count() == 0
    app = _app(Point("seq", 2))
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0

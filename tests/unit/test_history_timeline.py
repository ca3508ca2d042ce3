"""The replay's timeline: open at a point, step, jump, play by real seconds times the speed, pause at the end."""

from __future__ import annotations

from swarm_tui.engine.history.checkpoint import CheckpointStore
from swarm_tui.engine.history.timeline import GAP_REAL_S, SPEEDS, Timeline
from swarm_tui.engine.history.when import Point
from tests.support.history_log import ANSWER, T0, history_log


async def _opened(point: Point | None = None) -> Timeline:
    tl = Timeline(history_log(), max_scale=50)
    await tl.open(point)
    return tl


async def test_open_at_the_first_event_a_sequence_or_the_last_event_at_or_before_a_time() -> None:
    tl = await _opened()
    assert tl.seq == 1 and tl.now == T0 and list(tl.state.tasks) == ["t-1"]
    assert tl.clock() == T0 and tl.state.clock() == T0  # the app's "now" is the log's time there
    assert (await _opened(Point("seq", 3))).state.decisions["d-1"].status == "approved"
    assert (await _opened(Point("time", T0 + 11))).seq == 3  # stored at T0 + 10, the next at T0 + 12
    assert (await _opened(Point("time", T0 - 99))).seq == 1
    assert (await _opened(Point("seq", 999))).seq == 7


async def test_step_forward_and_back_one_event() -> None:
    tl = await _opened(Point("seq", 3))
    assert await tl.step(1) and tl.seq == 4 and tl.now == T0 + 12
    assert "w-1" in tl.state.workers
    assert await tl.step(-1) and tl.seq == 3 and "w-1" not in tl.state.workers
    tl = await _opened()
    assert not await tl.step(-1) and tl.seq == 1


async def test_a_step_back_folds_from_the_nearest_checkpoint() -> None:
    cps = CheckpointStore(max_scale=50, every=2)  # in memory, as a file's replay keeps them
    tl = Timeline(history_log(), max_scale=50, checkpoints=cps)
    await tl.open(Point("seq", 6))
    assert cps.written == 3  # at 2, 4 and 6
    await tl.step(-1)
    kept = cps.nearest(5)
    assert kept is not None and kept.seq == 4 and kept.state.results == {}
    assert tl.seq == 5 and tl.state.results == {}


async def test_jump_a_minute_of_log_time() -> None:
    tl = await _opened()
    await tl.jump(60)
    assert tl.seq == 6 and tl.now == T0 + 60 and ANSWER in tl.state.results["j-1"].text
    await tl.jump(-60)
    assert tl.seq == 1 and tl.now == T0


async def test_play_moves_by_real_seconds_times_the_speed_and_pauses_at_the_end() -> None:
    tl = await _opened(Point("seq", 2))
    assert not await tl.tick(1.0)  # paused: nothing moves
    assert tl.play()
    tl.speed = 5
    await tl.tick(0.2)
    assert tl.seq == 2 and tl.now == T0 + 6
    await tl.tick(1.0)  # to T0 + 11: the approval at T0 + 10 is folded
    assert tl.seq == 3 and tl.now == T0 + 11
    await tl.tick(10.0)  # T0 + 61: the worker ran and its result is in
    assert tl.seq == 6 and tl.state.results["j-1"].state == "done"
    # the idle hour before the last event passes in GAP_REAL_S of real time, then the end pauses
    await tl.tick(GAP_REAL_S)
    assert tl.seq == 7 and not tl.playing and tl.at_end and tl.fraction() == 1.0
    assert not tl.play()


async def test_an_idle_gap_passes_in_at_most_gap_real_s_at_any_speed() -> None:
    tl = await _opened(Point("seq", 2))  # the next event is 5 s of log time away
    tl.play()
    await tl.tick(GAP_REAL_S / 2)  # at 1x: half of the gap in half of GAP_REAL_S, not 1 s of 5
    assert tl.now == T0 + 5 + 2.5 and tl.seq == 2
    await tl.tick(GAP_REAL_S / 2)
    assert tl.seq == 3


def test_the_speed_ladder_is_1_to_50() -> None:
    tl = Timeline(history_log(), max_scale=50)
    assert [tl.faster() for _ in SPEEDS] == [2, 5, 10, 20, 50, 50]
    assert [tl.slower() for _ in SPEEDS] == [20, 10, 5, 2, 1, 1]

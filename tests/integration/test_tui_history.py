"""The History screen in the app, driven by Pilot on a fixed scene: `h` opens the past tasks newest first, `/`
searches task text and answers as you type, enter opens a task's results, escape clears then closes; it reads the
state the app shows now (a replay swaps it) and sends nothing."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from swarm_tui.engine.bus.wire import Result, Task
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.scenes import NOW, build
from swarm_tui.tui.screens.history import HistoryScreen
from swarm_tui.tui.screens.results import ResultsScreen
from swarm_tui.tui.style import state_style
from tests.support.polling import until

SIZE = (120, 36)


def _app() -> SwarmApp:
    """The budget scene (three tasks with answers, one awaiting a follow-up) and one more, older, done task whose
    answer alone speaks of Oolong."""
    link, rings, hist = build("budget")
    state = link.state
    state.apply(Task(id="t-past", text="write a haiku", created_at=NOW - 5000))
    state.apply(
        Result(
            job_id="d-past-j0",
            worker_id="d-past-w0",
            decision_id="d-past",
            task_id="t-past",
            model="openrouter/x/y",
            state="done",
            text="Steam over OOLONG",
            started_at=NOW - 4990,
            ended_at=NOW - 4900,
        )
    )
    fake = StaticLink(link.cfg, state, link.info(), demo=True)
    return SwarmApp(fake, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


def _rows(app: SwarmApp) -> list[str]:
    table = app.screen.query_one("#history-table", DataTable)
    return [str(k.value) for k in table.rows]


async def _settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause(0.05)


async def test_h_lists_past_tasks_newest_first_and_search_reads_the_answers() -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("h")
        await _settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        state = app.link.state
        newest_first = sorted(state.tasks, key=lambda t: (state.tasks[t].task.created_at, t), reverse=True)
        assert _rows(app) == newest_first and newest_first[-1] == "t-past"
        table = app.screen.query_one("#history-table", DataTable)
        for tid, tv in state.tasks.items():  # coloured as the Tasks panel colours it
            cell = table.get_row(tid)[1]
            assert isinstance(cell, Text) and cell.plain == tv.state.replace("_", " ")
            assert cell.style == state_style(tv.state) != ""
        await pilot.press("slash")
        for ch in "oolong":
            await pilot.press(ch)
        await _settle(pilot)
        assert _rows(app) == ["t-past"]  # only its answer holds the word, in another case
        await pilot.press("escape")  # clears the search first
        await _settle(pilot)
        assert isinstance(app.screen, HistoryScreen) and len(_rows(app)) == len(state.tasks)
        await pilot.press("escape")
        await _settle(pilot)
        assert not isinstance(app.screen, HistoryScreen)
        assert isinstance(app.link, StaticLink) and app.link.controls == [] and app.link.tasks == []  # nothing sent


async def test_enter_opens_the_tasks_results_and_escape_comes_back() -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("h")
        await _settle(pilot)
        await pilot.press(*["down"] * len(app.link.state.tasks), "enter")  # the last row: the oldest task
        await _settle(pilot)
        assert isinstance(app.screen, ResultsScreen) and app.screen.task_id == "t-past"
        await pilot.press("escape")
        await _settle(pilot)
        assert isinstance(app.screen, HistoryScreen)


async def test_it_shows_the_state_the_app_shows_now_as_a_replay_swaps_it() -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("h")
        await _settle(pilot)
        past = SwarmState(session_start=0.0, clock=lambda: NOW - 6000)
        past.apply(Task(id="t-then", text="the only task back then", created_at=NOW - 7000))
        app.link.state = past  # what a replay does: the link folds another state
        await until(lambda: _rows(app) == ["t-then"], 5)
        title = app.screen.query_one("#history-title").render()
        assert "History · 1 task" in str(title)


async def test_a_long_history_shows_the_newest_and_says_so(monkeypatch: Any) -> None:
    import swarm_tui.tui.screens.history as screen

    monkeypatch.setattr(screen, "SHOWN_ROWS", 2)
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("h")
        await _settle(pilot)
        assert len(_rows(app)) == 2 and "t-past" not in _rows(app)
        assert "the newest 2 shown (search narrows them)" in str(app.screen.query_one("#history-title").render())
        await pilot.press("slash", *"oolong")
        await _settle(pilot)
        assert _rows(app) == ["t-past"]

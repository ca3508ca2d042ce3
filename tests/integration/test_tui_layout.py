"""The screen's layout and words at 120x36 and 80x24, from fixed scenes: what waits is in sight, a column is
never cut, a view shows its own keys, a word agrees with its number, an empty panel says why it is empty."""

from __future__ import annotations

from typing import Any

from textual.coordinate import Coordinate
from textual.widgets import DataTable

from swarm_tui.engine.bus.wire import Approval
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.model import plural
from swarm_tui.tui.scenes import NOW, _decision, build
from swarm_tui.tui.screens.compare import CompareScreen
from swarm_tui.tui.screens.confirm import ConfirmScreen
from swarm_tui.tui.screens.results import ResultsScreen
from swarm_tui.tui.widgets.answer import Answer
from swarm_tui.tui.widgets.decision_detail import DecisionDetail
from tests.support.tui import screen_lines

FIRST_LOOK = (120, 36)
SMALL = (80, 24)


def scene_app(name: str, change: Any = None) -> SwarmApp:
    """A scene's app; ``change(state)`` alters its state first (as the log replayed at a start would)."""
    link, rings, hist = build(name)
    if change is not None:
        change(link.state)
    fake = StaticLink(link.cfg, link.state, link.info(), demo=True)
    return SwarmApp(fake, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


def detail_text(app: SwarmApp) -> str:
    detail = app.query_one("#decision-detail", DecisionDetail)
    return detail.detail.plain if detail.detail is not None else ""


def three_waiting(state: SwarmState) -> None:
    """The workers scene with two more decisions waiting, each with its clamps (a long detail)."""
    task_ids = list(state.tasks)
    _decision(state, "d-scene08", task_ids[:1], 3, 20)
    _decision(state, "d-scene09", task_ids[1:2], 1, 10)


async def settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause(0.1)


# ------------------------------------------------------------------------------------------- the Decisions panel
async def test_every_waiting_decision_has_a_row_in_sight_at_120x36() -> None:
    app = scene_app("workers", three_waiting)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        table = app.query_one("#decisions", DataTable)
        rows_in_sight = table.scrollable_content_region.height - 1  # less the header
        assert rows_in_sight >= 3, f"{rows_in_sight} rows in sight while 3 decisions wait"
        keys = [str(table.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value) for i in range(3)]
        assert keys == ["d-scene09", "d-scene08", "d-scene03"]  # what waits first, the newest on top
        assert "3 waiting for approval" in screen_lines(app)[1]
        assert "d-scene09" in detail_text(app)  # the detail shows the newest waiting one, and scrolls when long


def many_decided(state: SwarmState) -> None:
    """A dozen decisions decided an hour ago, as the demo makes them over a morning: the table scrolls."""
    task_ids = list(state.tasks)
    for i in range(12):
        d = _decision(state, f"d-old{i:02d}", task_ids[:1], 1 + i % 3, 3600 + i, clamps=False)
        state.apply(Approval(decision_id=d.id, action="rejected", by="tui", at=NOW - 3500))


async def test_the_cost_column_is_whole_at_80x24_when_the_table_scrolls() -> None:
    app = scene_app("workers")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        many_decided(app.link.state)  # they arrive: the table is fitted, then its scrollbar appears
        app.room.refresh_state()
        await settle(pilot)
        table = app.query_one("#decisions", DataTable)
        assert table.virtual_size.height > table.size.height  # it scrolls: a scrollbar is shown
        cols = table.ordered_columns
        assert sum(c.get_render_width(table) for c in cols) <= table.scrollable_content_region.width
        shown = "\n".join(screen_lines(app))
        for key in ("d-scene03", "d-scene02"):
            cost = str(table.get_row(key)[3])
            assert f"{cost} " in shown or f"{cost}│" in shown, f"{cost} is cut"


def newest_rejected(state: SwarmState) -> None:
    """After a restart: the newest decision was rejected in the last run, an older one still waits."""
    d = _decision(state, "d-scene10", list(state.tasks)[:1], 2, 5)
    state.apply(Approval(decision_id=d.id, action="rejected", by="tui", at=NOW - 4))


def nothing_waits(state: SwarmState) -> None:
    newest_rejected(state)
    state.apply(Approval(decision_id="d-scene03", action="approved", by="tui", at=NOW - 3))


async def test_after_a_restart_the_detail_shows_the_newest_waiting_decision() -> None:
    app = scene_app("workers", newest_rejected)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        assert detail_text(app).startswith("d-scene03  pending")


async def test_with_nothing_waiting_no_past_decision_is_shown_as_the_current_one() -> None:
    app = scene_app("workers", nothing_waits)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        table = app.query_one("#decisions", DataTable)
        assert not table.show_cursor
        assert detail_text(app) == "nothing waits for approval: ↑/↓ shows a past decision"
        table.focus()
        await pilot.press("down")  # the person's choice: now it shows what they picked
        await settle(pilot)
        assert table.show_cursor and detail_text(app).startswith("d-scene03  approved")


async def test_a_click_on_a_row_with_the_cursor_hidden_selects_it_and_opens_nothing() -> None:
    app = scene_app("workers", nothing_waits)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        table = app.query_one("#decisions", DataTable)
        assert not table.show_cursor and table.cursor_row == 0
        await pilot.click("#decisions", offset=(3, 1))  # the first row, first column: under the hidden cursor
        await settle(pilot)
        assert app.screen is app.room  # nothing opened
        assert table.show_cursor and detail_text(app).startswith("d-scene10  rejected")


# ------------------------------------------------------------------------------------------- the filter
async def test_a_filter_with_no_match_says_so_in_each_panel_and_escape_clears_it() -> None:
    app = scene_app("workers")
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        await pilot.press("slash", "z", "z", "z")
        await settle(pilot)
        said = "matches the filter “zzz” (esc clears it)"
        assert detail_text(app) == f"no decision {said}"
        shown = "\n".join(screen_lines(app))
        assert f"no task {said}" in shown
        assert f"no worker {said}" in shown
        assert "heartbeat proposes" not in shown and "approve a decision" not in shown
        await pilot.press("enter", "escape")  # kept with enter, then cleared from the table
        await settle(pilot)
        assert app.room.filter_text == "" and app.query_one("#decisions", DataTable).row_count == 3
        assert "matches the filter" not in "\n".join(screen_lines(app))


# ------------------------------------------------------------------------------------------- keys and words
async def test_the_key_bar_says_resume_while_paused() -> None:
    def paused(state: SwarmState) -> None:
        state.paused = True

    app = scene_app("workers", paused)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        bar = screen_lines(app)[-1]
        assert "p Resume" in bar and "Pause" not in bar


async def test_the_results_and_compare_views_show_their_own_keys() -> None:
    app = scene_app("compare")
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        await pilot.press("3", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        bar = screen_lines(app)[-1]
        assert "p Promote" in bar and "d Compare" in bar and "Approve" not in bar and "Pause" not in bar
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        bar = screen_lines(app)[-1]
        assert "p Promote" in bar and "Approve" not in bar and "Pause" not in bar


async def test_each_dialog_shows_its_own_keys() -> None:
    app = scene_app("workers")
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        for key, bar, close in (("C", "y Yes  n No", "n"), ("e", "esc Cancel", "escape"), ("enter", "esc Close", "q")):
            await pilot.press(key)
            await settle(pilot)
            assert screen_lines(app)[-1].strip() == bar, key
            await pilot.press(close)
            await settle(pilot)
            assert app.screen is app.room


async def test_help_shows_each_key_on_one_line_at_120_columns() -> None:
    app = scene_app("workers")
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        shown = "\n".join(screen_lines(app))
        for ident in ("approve", "tab_decisions", "save_results", "copy_answer", "promote"):
            assert f"[keys] {ident}" in shown, ident


async def test_one_worker_is_one_worker() -> None:
    link, _rings, _hist = build("workers")
    one = link.state.decisions["d-scene00"]  # a plan of one worker
    assert len(one.plan) == 1
    text = DecisionDetail().build(one, NOW).plain
    assert "plan: 1 worker: " in text and "1 workers" not in text


async def test_one_live_worker_is_said_in_the_singular() -> None:
    def one_live(state: SwarmState) -> None:
        for w in list(state.workers.values())[1:]:
            state.apply(w.model_copy(update={"state": "done", "at": NOW - 600}))

    app = scene_app("lowram", one_live)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        assert len(app.link.state.live_workers()) == 1
        await pilot.press("C")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Cancel 1 live worker? The partial output is kept."
    assert [plural(n, "reading") for n in (0, 1, 2)] == ["0 readings", "1 reading", "2 readings"]


# ------------------------------------------------------------------------------------------- results and compare
async def test_results_open_on_the_first_answer_and_d_compares_the_pair_seen() -> None:
    app = scene_app("compare")
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await settle(pilot)
        await pilot.press("3", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        assert isinstance(app.focused, Answer) and app.focused.index == 1
        assert "Task t-scene01" in "\n".join(screen_lines(app))  # the task on top, the first answer under it
        results = app.link.state.task_results("t-scene01")
        await pilot.press("d")
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        # the first answer, against the next one with text (the second failed and has none); the first active
        assert compare.jobs == {"a": results[0].job_id, "b": results[2].job_id}
        assert compare.active == "a"
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("tab", "tab")  # the third answer
        await settle(pilot)
        assert isinstance(app.focused, Answer) and app.focused.index == 3
        await pilot.press("d")
        await settle(pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        assert compare.jobs == {"a": results[2].job_id, "b": results[3].job_id} and compare.active == "a"


# ------------------------------------------------------------------------------------------- 80x24 tabs
async def test_a_tab_shown_at_80x24_fits_its_table_to_its_width() -> None:
    app = scene_app("workers")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        table = app.query_one("#tasks", DataTable)
        text = str(table.get_row("t-scene00")[4])
        assert len(text) > 20, f"the task's text cut to {text!r} on an 80-column tab"


async def test_ctrl_l_writes_the_whole_screen_again() -> None:
    """A frame writes only the cells that changed (tui/screen_cells.py), so a terminal that went out of step (a
    stray write, a glitch over ssh) stays wrong until those cells change: ctrl+l forgets what the terminal shows
    and lays the screen out again, so the next frame is written whole."""
    app = scene_app("pending")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        cells = app.screen_cells
        cells.frame("\x1b[1;1Hhello", (120, 36))
        assert cells.frame("\x1b[1;1Hhello", (120, 36)) == ""  # known: nothing to write
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert cells.frame("\x1b[1;1Hhello", (120, 36)) != ""  # forgotten: written whole again

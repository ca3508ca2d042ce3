"""The History screen: the swarm's past tasks, newest first, searched as you type over their text and answers;
enter opens a task's results.

The rows are ``engine/history/tasks.py``'s, found by ``task_search.py`` (a keystroke folds no text twice), read
off the state the room shows now (``state_of``: the room's link's state, live or replayed), so in a replay and in
the live app's timeline the list is the past's. The screen redraws when that state moves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from swarm_tui.engine.history.task_search import TaskSearch
from swarm_tui.engine.history.tasks import HistoryRow, task_row
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.model import fmt_age, fmt_usd, plural, short_id
from swarm_tui.tui.style import state_style
from swarm_tui.tui.widgets.key_bar import KeyBar
from swarm_tui.tui.widgets.table_fit import fit_rows, room_of, sync_table, widths_of

COLUMNS = ("id", "state", "rounds", "answers", "cost", "took", "created", "text")
TEXT_COLUMN = COLUMNS.index("text")
SHOWN_ROWS = 1000  # the newest; a table of every task of a long log would redraw slowly (search narrows it)


def history_cells(rows: list[HistoryRow], now: float) -> list[tuple[str, tuple[Any, ...]]]:
    """The table's rows: the state coloured as the Tasks panel colours it, a reason after the text."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for r in rows:
        text = Text(r.text)
        if r.reason:
            text.append(f" ({r.reason})", style=state_style(r.state))
        answers = f"{r.answers_done}/{r.answers}" + (" ★" if r.promoted else "")
        took = fmt_age(r.duration_s) + ("" if r.ended is not None else "+")  # "+": not over yet
        out.append(
            (
                r.task_id,
                (
                    Text(short_id(r.task_id, 14), style="dim"),
                    Text(r.state.replace("_", " "), style=state_style(r.state)),
                    str(r.rounds),
                    answers,
                    fmt_usd(r.cost_usd),
                    took,
                    fmt_age(now - r.created) + " ago",
                    text,
                ),
            )
        )
    return out


class HistoryScreen(ModalScreen[None]):
    """The past tasks; ``/`` searches (every word, in the task or its answers), enter opens the results."""

    BINDINGS = [
        Binding("escape", "close", "Close", tooltip="clear the search, else close"),
        Binding("slash", "search", "Search", key_display="/", tooltip="search task text and answers"),
        Binding("enter", "open", "Results", tooltip="the selected task's results"),
    ]
    DEFAULT_CSS = """
    HistoryScreen #history-table { height: 1fr; }
    HistoryScreen #history-search { margin: 0 0 1 0; }
    HistoryScreen #history-note { color: $text-muted; }
    """

    def __init__(
        self,
        state_of: Callable[[], SwarmState],
        export_dir: Path,
        keymap: dict[str, str],
        controls: ControlClient,
    ) -> None:
        super().__init__(classes="modal")
        self.state_of = state_of
        self.export_dir = export_dir
        self.keymap = keymap
        self.controls = controls
        self.search_text = ""
        self.title_label = Label(id="history-title")
        self.search_box = Input(id="history-search", placeholder="search task text and answers · escape clears")
        self.table: DataTable[Any] = DataTable(id="history-table", cursor_type="row", zebra_stripes=False)
        self.note = Static(id="history-note")
        self.shown: tuple[int, int, str] | None = None  # (state, version, search) last drawn
        self.search = TaskSearch()  # the folded texts, while the screen is open
        self.rows_shown: tuple[int, int, list[str]] | None = None  # (state, version, task ids) in the table

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="history"):
            yield self.title_label
            yield self.search_box
            yield self.table
            yield self.note
            yield Label(Text("enter the task's results · / search · escape clears, then closes", style="dim"))
        yield KeyBar(keep=("close",))

    def on_mount(self) -> None:
        self.table.add_columns(*COLUMNS)
        self.show_rows()
        self.table.focus()
        self.set_interval(0.5, self.show_rows)  # the state moves (live, or a replay's position): cheap when not

    def show_rows(self, force: bool = False) -> None:
        state = self.state_of()
        key = (id(state), state.version, self.search_text)
        if key == self.shown and not force:
            return
        self.shown = key
        matching = self.search.matching(state, self.search_text or None)
        shown = matching[:SHOWN_ROWS]  # only the rows shown are built, and only when they are other rows
        rows_key = (id(state), state.version, [tv.id for tv in shown])
        if rows_key != self.rows_shown or force:
            self.rows_shown = rows_key
            now = state.clock()
            rows = [task_row(state, tv, now) for tv in shown]
            width = room_of(self.table) or max(40, self.app.size.width - 12)
            cells = fit_rows(history_cells(rows, now), TEXT_COLUMN, width, widths_of(self.table))
            sync_table(self.table, cells, fit=TEXT_COLUMN)
        total = len(state.tasks)
        title = f"History · {plural(total, 'task')}"
        if self.search_text:
            title += f" · {len(matching)} matching “{plain(self.search_text)[:60]}”"
        if len(matching) > SHOWN_ROWS:
            title += f" · the newest {SHOWN_ROWS} shown (search narrows them)"
        self.title_label.update(Text(title, style="bold"))
        if not shown:
            why = f"no task matches “{plain(self.search_text)[:60]}” (escape clears it)" if self.search_text else ""
            self.note.update(Text(why or "no task in the log yet", style="dim italic"))
        self.note.display = not shown

    def selected_task(self) -> str | None:
        if not self.table.row_count:
            return None
        return str(self.table.coordinate_to_cell_key(self.table.cursor_coordinate).row_key.value)

    @on(Input.Changed, "#history-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search_text = event.value.strip()
        self.show_rows()

    @on(Input.Submitted, "#history-search")
    def _search_submitted(self, _: Input.Submitted) -> None:
        self.table.focus()

    @on(DataTable.RowSelected, "#history-table")
    def _row_selected(self, _: DataTable.RowSelected) -> None:
        self.action_open()

    def action_search(self) -> None:
        self.search_box.focus()

    def action_open(self) -> None:
        task_id = self.selected_task()
        state = self.state_of()
        if task_id is None or task_id not in state.tasks:
            self.app.notify("no task selected", severity="warning", markup=False)
            return
        from swarm_tui.tui.screens.results import ResultsScreen  # Markdown: ~50 ms of imports, not at start

        self.app.push_screen(ResultsScreen(state, task_id, self.export_dir, self.keymap, self.controls))

    def action_close(self) -> None:
        if self.search_text or self.search_box.has_focus:
            self.search_box.value = ""
            self.search_text = ""
            self.table.focus()
            self.show_rows()
            return
        self.dismiss(None)

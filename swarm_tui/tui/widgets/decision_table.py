"""The Decisions table: what waits on top, a height that shows it, and a cursor that is the person's choice.

Its height follows one rule (``table_height``): every decision that waits gets a row, and the table shows at
least ``MIN_ROWS`` rows when it has them, up to ``max-height`` (app.tcss: 70% of the panel); the decision's
detail under it gets the rest and scrolls. Before, the table had half of what the detail left, and a long
detail (clamps, a merge) left it one row while the title said three decisions waited.

Until the person moves its cursor (a key or the mouse), the cursor follows the newest decision that waits;
with none waiting it is hidden and the detail says so, so a decision decided in an earlier run is never shown
as if it were the current one (after a restart the first row was an old rejected decision).
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widgets import DataTable

MIN_ROWS = 3  # rows shown when there are as many, even with fewer waiting: the newest decided ones


def table_height(rows: int, waiting: int) -> int:
    """The table's lines (its header and rows): every waiting decision, at least ``MIN_ROWS`` rows when there
    are as many; an empty table keeps one row for the look of it."""
    return 1 + max(1, min(rows, max(waiting, MIN_ROWS)))


class DecisionTable(DataTable[Any]):
    """A DataTable that knows whether the person chose its row (``chosen``); the control room moves the cursor
    only while nobody did."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.chosen = False  # the person moved the cursor: it stays where they put it

    def choose(self) -> None:
        self.chosen = True
        self.show_cursor = True

    def follow(self, row: int | None) -> None:
        """Nobody chose a row: the cursor on ``row`` (the newest waiting decision), or hidden when it is None."""
        self.chosen = False
        if row is None:
            self.show_cursor = False
            return
        self.show_cursor = True
        if self.cursor_row != row:
            self.move_cursor(row=row, animate=False)

    # every way the person moves the cursor: DataTable's keys and a click
    def action_cursor_up(self) -> None:
        self.choose()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self.choose()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self.choose()
        super().action_page_up()

    def action_page_down(self) -> None:
        self.choose()
        super().action_page_down()

    def action_scroll_top(self) -> None:
        self.choose()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self.choose()
        super().action_scroll_bottom()

    def on_click(self, event: events.Click) -> None:
        """Before DataTable's own handler. A click on a row while the cursor is hidden puts it there, and no
        more: DataTable's handler would take the click for a second one on the row under the hidden cursor and
        open that decision."""
        hidden = not self.show_cursor
        self.choose()
        row = event.style.meta.get("row")
        if hidden and isinstance(row, int) and 0 <= row < self.row_count:
            event.prevent_default()
            self.move_cursor(row=row, animate=False)

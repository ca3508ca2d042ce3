"""The Tasks and Decisions tables: their rows from the state, cut to the table's width, and brought up to date
in place (the cursor kept on its row)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from swarm_tui.engine.projection.state import DecisionView, SwarmState, TaskView
from swarm_tui.textsafe import plain
from swarm_tui.tui.model import fmt_age, fmt_usd, one_line, short_id, short_model
from swarm_tui.tui.style import state_style


def sync_table(table: DataTable[Any], rows: list[tuple[str, tuple[Any, ...]]], fit: int | None = None) -> None:
    """Bring a DataTable to these rows, keeping the cursor on the same key where it still exists.

    ``fit``: the column cut to the table's width (``fit_rows``). A DataTable's column only grows with its
    cells; when that column is wider than every cell it is to hold (the table got narrower, another column
    wider), the table is rebuilt with its columns measured afresh, so it never scrolls sideways."""
    keys = [k for k, _ in rows]
    current = [str(rk.value) for rk in table.rows]
    too_wide = fit is not None and bool(rows) and fit < len(table.ordered_columns)
    if too_wide:
        assert fit is not None
        col = table.ordered_columns[fit]
        need = max(cell_len(col.label.plain), *(cell_len(str(cells[fit])) for _, cells in rows))
        too_wide = col.content_width > need
    if keys == current and not too_wide:
        for key, cells in rows:
            old = table.get_row(key)
            for col_i, (a, b) in enumerate(zip(old, cells, strict=False)):
                was, now = str(a), str(b)
                if was != now:  # columns only grow: re-measure only a cell that got wider (it is costly)
                    table.update_cell(
                        key, table.ordered_columns[col_i].key, b, update_width=cell_len(now) > cell_len(was)
                    )
        return
    selected = None
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        selected = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
    if too_wide:
        columns = [(c.label, c.key.value) for c in table.ordered_columns]
        table.clear(columns=True)
        for label, ckey in columns:
            table.add_column(label, key=ckey)
    else:
        table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False, scroll=False)


def room_of(table: DataTable[Any]) -> int:
    """The cells a table's columns may fill: its width less its scrollbar's gutter (app.tcss keeps one, so the
    width does not change when a scrollbar appears after the columns were fitted)."""
    return max(0, table.scrollable_content_region.width)


def widths_of(table: DataTable[Any]) -> list[int]:
    """The widths of a table's columns now, without padding (they only grow)."""
    return [c.content_width for c in table.ordered_columns]


def fit_rows(
    rows: list[tuple[str, tuple[Any, ...]]], flex: int, width: int, floor: Sequence[int] = (), padding: int = 1
) -> list[tuple[str, tuple[Any, ...]]]:
    """Cut the text of column ``flex`` so each row fits a table ``width`` cells wide: that column gets what the
    others leave. ``floor`` are the table's column widths now (a DataTable's columns only grow, so a column is
    as wide as the widest cell it ever held; ``sync_table(fit=...)`` narrows the cut one); a cut text ends with
    ``…``."""
    ncols = max((len(cells) for _, cells in rows), default=0)
    used = 0
    for i in range(ncols):
        if i != flex:
            w = max([floor[i] if i < len(floor) else 0, *(cell_len(str(cells[i])) for _, cells in rows)])
            used += w + 2 * padding
    room = max(4, width - used - 2 * padding)
    out = []
    for key, cells in rows:
        cell = cells[flex]
        text = cell if isinstance(cell, Text) else Text(str(cell))
        if cell_len(text.plain) > room:
            text = text.copy()
            text.truncate(room - 1)
            text.append("…")
        out.append((key, (*cells[:flex], text, *cells[flex + 1 :])))
    return out


def task_rows(
    state: SwarmState, now: float, flt: str, width: int = 120, limit: int = 300, floor: Sequence[int] = ()
) -> list[tuple[str, tuple[Any, ...]]]:
    """The Tasks table's rows; ``width`` is the table's (the text gets what the other columns leave)."""
    order = {"awaiting_approval": 0, "running": 1, "awaiting_followup": 1, "pending": 2}
    tasks: list[TaskView] = sorted(
        state.tasks.values(), key=lambda t: (order.get(t.state, 3), -t.task.priority, -t.task.created_at)
    )
    out: list[tuple[str, tuple[Any, ...]]] = []
    for tv in tasks:
        text = one_line(tv.task.text, 300)
        if flt and not matches(flt, tv.id, text, tv.state):
            continue
        out.append(
            (
                tv.id,
                (
                    Text(short_id(tv.id, 14), style="dim"),
                    fmt_age(now - tv.task.created_at),
                    str(tv.task.priority),
                    Text(tv.state.replace("_", " "), style=state_style(tv.state)),
                    Text(text),
                ),
            )
        )
        if len(out) >= limit:
            break
    return fit_rows(out, 4, width, floor)


def decision_rows(
    state: SwarmState, flt: str, width: int = 60, limit: int = 200, floor: Sequence[int] = ()
) -> list[tuple[str, tuple[Any, ...]]]:
    """The Decisions table's rows, those that wait first, each part newest first; ``width`` is the table's: the
    estimated cost is shown whole, the plan gets what is left."""
    views = sorted(state.decisions.values(), key=lambda d: (d.status == "pending", d.decision.created_at), reverse=True)
    out: list[tuple[str, tuple[Any, ...]]] = []
    for dv in views:
        d = dv.decision
        plan = plan_summary(dv)
        if flt and not matches(flt, dv.id, d.source, plan, dv.status):
            continue
        pending = dv.status == "pending"
        mark = Text(
            "▶ PENDING" if pending else dv.status,
            style=state_style("awaiting_approval" if pending else dv.status),
        )
        out.append(
            (
                dv.id,
                (
                    mark,
                    Text(short_id(dv.id, 10), style="dim"),
                    Text(f"{len(dv.plan)}: {plan}"),
                    f"≤{fmt_usd(dv.estimate[1])}",
                ),
            )
        )
        if len(out) >= limit:
            break
    return fit_rows(out, 2, width, floor)


def plan_summary(dv: DecisionView) -> str:
    counts: dict[str, int] = {}
    for p in dv.plan:
        m = short_model(p.model)
        counts[m] = counts.get(m, 0) + 1
    if not counts:
        return "no workers"
    return ", ".join(f"{n} × {one_line(m, 40)}" for m, n in counts.items())


def matches(flt: str, *fields: str) -> bool:
    """Whether the filter text is in any of these fields, ignoring case."""
    f = flt.lower()
    return any(f in x.lower() for x in fields)


def no_match(what: str, flt: str) -> str:
    """What a panel says when the filter leaves it nothing to show."""
    return f"no {what} matches the filter “{plain(flt)}” (esc clears it)"

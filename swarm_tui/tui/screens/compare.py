"""Compare and promote: two answers of one task side by side with a line diff, and a key that makes one of them
the task's answer (the engine's "promote" control verb).

The diff is painted from ``compare_doc`` (pure data, already made inert); colour only repeats what the marker
column says (``-`` only in A, ``+`` only in B, ``~`` changed), so the view reads the same under NO_COLOR.
"""

from __future__ import annotations

from typing import Any, Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.commands import RESULTS_BINDINGS, shown_key
from swarm_tui.tui.compare_doc import Comparison, Row, compare, default_pair, pair_around, step_answer
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.exports import copy_answer
from swarm_tui.tui.promotion import PROMOTED, promote, promoted_of, watch_promotion
from swarm_tui.tui.results_doc import result_facts, task_title
from swarm_tui.tui.widgets.key_bar import KeyBar

Side = Literal["a", "b"]
A_STYLE, B_STYLE = "on rgb(72,28,34)", "on rgb(24,62,38)"  # only in A (removed) / only in B (added)
A_MARK, B_MARK = "bold underline on rgb(128,40,52)", "bold underline on rgb(36,112,62)"  # the differing chars


def open_compare(
    app: App[Any],
    controls: ControlClient,
    state: SwarmState,
    task_id: str,
    keymap: dict[str, str],
    around: int | None = None,
) -> None:
    """Push the compare screen for a task, or say why not (fewer than two answers, already open). ``around``:
    the 0-based answer the person has selected (the results screen): it against its neighbour (``pair_around``),
    it the active column; else the default pair."""
    n = len(state.task_results(task_id))
    if n < 2:
        what = "has one answer" if n == 1 else "has no answer yet"
        app.notify(f"task {plain(task_id)} {what}: nothing to compare", severity="warning", markup=False)
        return
    if isinstance(app.screen, CompareScreen) and app.screen.task_id == task_id:
        return
    app.push_screen(CompareScreen(state, task_id, keymap, controls, around=around))


def head_text(side: Side, index: int, count: int, r: Result, promoted: bool, active: bool) -> Text:
    """A column's heading: which answer, who wrote it, what it cost, and the ★ when it is the task's answer."""
    facts = dict(result_facts(r))
    t = Text("▶ " if active else "  ", style="bold")
    t.append(f"{side.upper()} · answer {index} of {count} · {facts['role']} · {facts['state']}", style="bold")
    if promoted:
        t.append(f" · {PROMOTED}", style="bold yellow")
    t.append(f"\n  {facts['model']}\n")
    t.append(f"  tokens {facts['tokens']} · {facts['cost']} · {facts['latency']}", style="dim")
    if r.reason:
        t.append(f"\n  {facts['reason'][:200]}", style="dim italic")
    return t


def _side(text: str | None, mark: str, spans: tuple[tuple[int, int], ...], style: str, hi: str) -> Text:
    if text is None:
        return Text("")
    body = Text(text, style=style if mark != " " else "")
    for start, end in spans:
        body.stylize(hi, start, end)
    return body


class DiffRows:
    """The aligned rows as a grid: marker, line number and line of A, a rule, the same for B (long lines fold).
    The markers say what the colours say: ``-`` only in A, ``+`` only in B, ``~`` changed.

    The text columns get fixed widths from the width at hand, so rich does not measure 2000 rows' cells first.
    """

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def table(self, width: int) -> Table:
        text_w = max(8, (width - 2 * (1 + 1 + 4 + 1) - 2) // 2)  # two (marker, number, padding) sets and the rule
        table = Table.grid(padding=(0, 1, 0, 0))
        for side in ("a", "b"):
            if side == "b":
                table.add_column(width=1, no_wrap=True, style="dim")  # the rule between the columns
            table.add_column(width=1, no_wrap=True)
            table.add_column(width=4, no_wrap=True, justify="right", style="dim")
            table.add_column(width=text_w, overflow="fold")
        for row in self.rows:
            a_mark = {"changed": "~", "left-only": "-"}.get(row.tag, " ")
            b_mark = {"changed": "~", "right-only": "+"}.get(row.tag, " ")
            table.add_row(
                Text(a_mark, style="bold"),
                str(row.left_no or ""),
                _side(row.left, a_mark, row.left_spans, A_STYLE, A_MARK),
                "│",
                Text(b_mark, style="bold"),
                str(row.right_no or ""),
                _side(row.right, b_mark, row.right_spans, B_STYLE, B_MARK),
            )
        return table


class CompareScreen(ModalScreen[None]):
    """Two answers of one task in columns A and B, their differences marked line by line."""

    # in the order of the key bar, what matters most first: on a narrow terminal the last ones do not fit
    BINDINGS = [
        *[b for b in RESULTS_BINDINGS if isinstance(b, Binding) and b.id in ("promote", "copy_answer")],
        Binding("left_square_bracket", "cycle(-1)", "Previous answer", key_display="["),
        Binding("right_square_bracket", "cycle(1)", "Next answer", key_display="]"),
        Binding("escape,q", "close", "Close"),
        Binding("left", "column('a')", "Column A", priority=True),
        Binding("right", "column('b')", "Column B", priority=True),
        Binding("tab,shift+tab", "column('')", "Other column", priority=True),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare {
        width: 96%; height: 94%; border: thick $accent; background: $surface; padding: 0 1;
    }
    CompareScreen #compare-heads { height: auto; margin: 1 0 0 0; }
    CompareScreen .compare-head { width: 1fr; height: auto; padding: 0 1; border-left: blank; }
    CompareScreen .compare-head.-active { border-left: thick $accent; background: $boost; }
    CompareScreen #compare-scroll { height: 1fr; margin: 1 0 0 0; }
    CompareScreen #compare-summary { margin: 1 0 0 0; }
    CompareScreen #compare-hint { width: 1fr; }
    """

    def __init__(
        self,
        state: SwarmState,
        task_id: str,
        keymap: dict[str, str],
        controls: ControlClient,
        around: int | None = None,
    ) -> None:
        super().__init__(classes="modal")
        self.state = state
        self.task_id = task_id
        self.keymap = keymap
        self.controls = controls
        self.title_text = task_title(state.tasks[task_id], 100)
        results = state.task_results(task_id)
        if around is not None and 0 <= around < len(results):
            a, b = pair_around(results, around)
            self.active: Side = "a" if a == around else "b"
        else:
            a, b = default_pair(results, promoted_of(state, task_id))
            self.active = "b"
        self.jobs: dict[Side, str] = {"a": results[a].job_id, "b": results[b].job_id}
        self.comparison = Comparison()
        self._shown: tuple[str, str] = ("", "")

    def compose(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield Label(Text(f"Compare · {self.title_text}", style="bold"))
            with Horizontal(id="compare-heads"):
                yield Static(id="head-a", classes="compare-head")
                yield Static(id="head-b", classes="compare-head")
            with VerticalScroll(id="compare-scroll"):
                yield Static(id="compare-rows")
            yield Static(id="compare-summary")
            promote_key = shown_key("promote", self.keymap)
            copy = shown_key("copy_answer", self.keymap)
            hint = (
                f"←/→ tab column · [ ] other answer in it · {promote_key} promote its answer · {copy} copy it · "
                "↑/↓ scroll · escape closes"
            )
            yield Static(Text(hint, style="dim"), id="compare-hint")
        yield KeyBar(keep=("close",))  # this view's keys, not the control room's (p promotes here)

    def on_mount(self) -> None:
        self.refresh_view()
        self.query_one("#compare-scroll").focus()

    def on_screen_resume(self) -> None:
        self.refresh_view()

    # ------------------------------------------------------------------ what is shown
    def results(self) -> list[Result]:
        return self.state.task_results(self.task_id)

    def index_of(self, side: Side) -> int:
        """The 0-based place of the side's answer among the task's answers (0 if it went away)."""
        jobs = [r.job_id for r in self.results()]
        return jobs.index(self.jobs[side]) if self.jobs[side] in jobs else 0

    def answer(self, side: Side) -> tuple[int, Result]:
        """(the answer's number, 1-based as on the results screen, the result) of a column."""
        i = self.index_of(side)
        return i + 1, self.results()[i]

    def refresh_view(self) -> None:
        """The headings (active column, ★ marker) always; the diff only when the pair changed."""
        results, promoted = self.results(), promoted_of(self.state, self.task_id)
        for side in ("a", "b"):
            index, r = self.answer(side)
            head = self.query_one(f"#head-{side}", Static)
            head.update(head_text(side, index, len(results), r, r.job_id == promoted, side == self.active))
            head.set_class(side == self.active, "-active")
        pair = (self.jobs["a"], self.jobs["b"])
        if pair != self._shown:
            self._shown = pair
            self.comparison = compare(self.answer("a")[1].text, self.answer("b")[1].text)
            self.query_one("#compare-rows", Static).update(DiffRows(self.comparison.rows))
            self.query_one("#compare-summary", Static).update(Text(self.comparison.summary(), style="bold"))
            self.query_one("#compare-scroll", VerticalScroll).scroll_home(animate=False)

    # ------------------------------------------------------------------ keys
    def action_column(self, side: str) -> None:
        self.active = side if side in ("a", "b") else ("a" if self.active == "b" else "b")  # type: ignore[assignment]
        self.refresh_view()

    def action_cycle(self, step: int) -> None:
        other: Side = "a" if self.active == "b" else "b"
        count = len(self.results())
        nxt = step_answer(self.index_of(self.active), step, count, self.index_of(other))
        if nxt == self.index_of(self.active):
            self.notify("no other answer to show in this column", severity="warning", timeout=3, markup=False)
            return
        self.jobs[self.active] = self.results()[nxt].job_id
        self.refresh_view()

    def action_copy_answer(self) -> None:
        copy_answer(self.app, *self.answer(self.active))

    def action_compare(self) -> None:
        """The palette's compare on this screen: this task's answers are compared here already."""

    def action_promote(self) -> None:
        index, r = self.answer(self.active)

        def promoted() -> None:
            if self.is_attached:  # not closed while the request was on its way
                self.refresh_view()
                watch_promotion(self, self.state, self.task_id, r.job_id, self.refresh_view)

        promote(self.app, self.controls, self.state, self.task_id, index, r, promoted)

    def action_close(self) -> None:
        self.dismiss(None)

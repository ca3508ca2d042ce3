"""One answer on the results screen: its facts on one line, then its text as (bounded, inert) Markdown."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from swarm_tui.engine.bus.wire import Result
from swarm_tui.tui.promotion import PROMOTED
from swarm_tui.tui.results_doc import answer_text, close_fences, result_facts, result_heading
from swarm_tui.tui.widgets.safe_markdown import PER_ANSWER, SafeMarkdown, plain_rest, split_for_markdown


class Answer(Vertical, can_focus=True):
    """One result: its facts on one line, then its text as Markdown. Focusable, so tab picks the one to copy."""

    def __init__(self, index: int, result: Result, budget: int = PER_ANSWER, promoted: bool = False) -> None:
        super().__init__(classes="answer")
        self.index = index
        self.result = result
        self.promoted = promoted
        self.head, self.rest, self.cost = split_for_markdown(answer_text(result).strip(), budget)

    def compose(self) -> ComposeResult:
        yield Static(self.meta(), classes="answer-meta")
        if self.head.strip() or not self.rest:
            yield SafeMarkdown(close_fences(self.head).strip() or "*(no text)*")
        if self.rest:
            yield from plain_rest(self.rest)

    def meta(self) -> Text:
        """The answer's facts on one line, ★ first when it is the task's answer."""
        r = self.result
        meta = Text()
        if self.promoted:
            meta.append(f"{PROMOTED}  ", style="bold yellow")
        meta.append(result_heading(self.index, r), style="bold")
        meta.append("  " + " · ".join(f"{k} {v}" for k, v in result_facts(r) if k not in ("model", "role")))
        return meta

    def show_promoted(self, promoted: bool) -> None:
        if promoted != self.promoted:
            self.promoted = promoted
            self.query_one(".answer-meta", Static).update(self.meta())

    def on_focus(self) -> None:
        self.scroll_visible(top=True, animate=False)

"""The results screen: a task and each of its answers rendered as Markdown, with keys to copy one answer and
to save the whole document.

Model text is data here too: it is made inert (``textsafe.plain``) before the Markdown parser sees it, and the
parser has no links, autolinks, images, link references or HTML, so ``[x](url)`` stays text: nothing in an
answer can open a URL or run an app action when clicked.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.tui.commands import RESULTS_BINDINGS, shown_key
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.exports import copy_answer, save_document
from swarm_tui.tui.promotion import promote, promoted_of, watch_promotion
from swarm_tui.tui.results_doc import (
    results_markdown,
    task_header_md,
    task_title,
)
from swarm_tui.tui.screens.compare import open_compare
from swarm_tui.tui.widgets.answer import Answer
from swarm_tui.tui.widgets.key_bar import KeyBar
from swarm_tui.tui.widgets.safe_markdown import (
    MARKDOWN_BLOCKS,
    PER_ANSWER,
    SafeMarkdown,
    plain_rest,
    split_for_markdown,
)


class ResultsScreen(ModalScreen[None]):
    """``enter`` on a task: the task and its results in order, each answer rendered as Markdown."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close"), *RESULTS_BINDINGS]
    DEFAULT_CSS = """
    ResultsScreen #results-scroll { height: 1fr; }
    ResultsScreen Answer { height: auto; padding: 0 1; margin: 1 0 0 0; border-left: blank; }
    ResultsScreen Answer:focus { border-left: thick $accent; background: $boost; }
    ResultsScreen .answer-meta { color: $text-muted; }
    ResultsScreen Markdown { margin: 0; padding: 0; }
    ResultsScreen #results-hint { width: 1fr; }
    """

    def __init__(
        self, state: SwarmState, task_id: str, export_dir: Path, keymap: dict[str, str], controls: ControlClient
    ) -> None:
        super().__init__(classes="modal")
        tv = state.tasks[task_id]
        self.state = state
        self.task_id = task_id
        self.title_text = task_title(tv, 100)
        self.header_md = task_header_md(tv)
        self.results = state.task_results(task_id)
        self.document = results_markdown(state, task_id) or ""
        self.export_dir = export_dir
        self.keymap = keymap
        self.controls = controls

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="results"):
            yield Label(Text(self.title_text, style="bold"))
            with VerticalScroll(id="results-scroll"):
                # the task's text is from outside too: under the same budget as an answer
                head, rest, spent = split_for_markdown(self.header_md, PER_ANSWER)
                yield SafeMarkdown(head, id="results-task")
                if rest:
                    yield from plain_rest(rest)
                if not self.results:
                    yield Static(Text("(no results stored yet)", style="dim italic"))
                left = MARKDOWN_BLOCKS - spent
                promoted = promoted_of(self.state, self.task_id)
                for i, r in enumerate(self.results, 1):
                    budget = min(PER_ANSWER, max(0, left), MARKDOWN_BLOCKS // len(self.results))
                    answer = Answer(i, r, budget, promoted=r.job_id == promoted)
                    left -= answer.cost
                    yield answer
            copy = shown_key("copy_answer", self.keymap)
            save = shown_key("save_results", self.keymap)
            diff = shown_key("compare", self.keymap)
            prom = shown_key("promote", self.keymap)
            hint = (
                f"tab next answer · {copy} copy the answer · {save} save as Markdown · {diff} compare with the next · "
                f"{prom} promote"
            )
            yield Label(Text(hint, style="dim"), id="results-hint")
        yield KeyBar(keep=("close",))  # this view's keys, not the control room's (p promotes here)

    def on_mount(self) -> None:
        answers = list(self.query(Answer))
        if answers:  # the first answer, under the task: the view reads from the top, tab goes on
            answers[0].focus(scroll_visible=False)
            self.call_after_refresh(self.query_one("#results-scroll", VerticalScroll).scroll_home, animate=False)
        else:
            self.query_one("#results-scroll").focus()

    def selected(self) -> Answer | None:
        """The answer with the focus: the one copy, compare and promote act on (the first before any)."""
        answers = list(self.query(Answer))
        focused = self.focused
        for a in answers:
            if focused is a:
                return a
        return answers[0] if answers else None

    def action_copy_answer(self) -> None:
        a = self.selected()
        if a is None:
            self.notify("no answer to copy yet", severity="warning", markup=False)
            return
        copy_answer(self.app, a.index, a.result)

    def action_save_results(self) -> None:
        save_document(self.app, self.task_id, self.document, self.export_dir)

    def action_compare(self) -> None:
        """The selected answer against its neighbour (the next one with text, else the one before): the pair
        the person sees, the selected one active (promote there promotes it)."""
        a = self.selected()
        around = a.index - 1 if a is not None else None
        open_compare(self.app, self.controls, self.state, self.task_id, self.keymap, around=around)

    def action_promote(self) -> None:
        a = self.selected()
        if a is None:
            self.notify("no answer to promote yet", severity="warning", markup=False)
            return
        job = a.result.job_id

        def promoted() -> None:
            if self.is_attached:  # not closed while the request was on its way
                self.show_promoted()
                watch_promotion(self, self.state, self.task_id, job, self.show_promoted)

        promote(self.app, self.controls, self.state, self.task_id, a.index, a.result, promoted)

    def show_promoted(self) -> None:
        """Move the ★ to the answer the state now says is the task's answer."""
        promoted = promoted_of(self.state, self.task_id)
        for a in self.query(Answer):
            a.show_promoted(a.result.job_id == promoted)

    def on_screen_resume(self) -> None:
        self.show_promoted()  # back from the compare screen, where a promotion may have landed

    def action_close(self) -> None:
        self.dismiss(None)

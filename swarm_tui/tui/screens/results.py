"""The results screen: a task and each of its answers rendered as Markdown, with keys to copy one answer and
to save the whole document.

Model text is data here too: it is made inert (``textsafe.plain``) before the Markdown parser sees it, and the
parser has no links, autolinks, images, link references or HTML, so ``[x](url)`` stays text: nothing in an
answer can open a URL or run an app action when clicked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown, Static

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.commands import RESULTS_BINDINGS, shown_key
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.driver import safe_markdown_table
from swarm_tui.tui.exports import copy_answer, save_document
from swarm_tui.tui.promotion import PROMOTED, promote, promoted_of, watch_promotion
from swarm_tui.tui.results_doc import (
    answer_text,
    close_fences,
    result_facts,
    result_heading,
    results_markdown,
    task_header_md,
    task_title,
)
from swarm_tui.tui.screens.compare import open_compare

# what the parser must not turn into something clickable or raw: links of every kind, images, HTML
DISABLED_RULES = ["link", "autolink", "image", "linkify", "reference", "html_inline", "html_block"]


def safe_parser() -> MarkdownIt:
    md = MarkdownIt("gfm-like", {"linkify": False, "html": False})
    md.disable(DISABLED_RULES, ignoreInvalid=True)
    return md


# Textual mounts a widget per Markdown block and one per table cell (~2-5 ms each; a 1 x 3000 table held the
# screen, and an engine in the same process, for seconds): a screen renders at most this many of them as
# Markdown, one answer (or the task's text) at most PER_ANSWER of them and HEAD_CHARS characters; the rest is
# shown as plain (inert) text. A table is rendered whole or not at all: one too large for what is left starts
# the plain part.
MARKDOWN_BLOCKS = 200
PER_ANSWER = 100
HEAD_CHARS = 30_000
CELLS = ("th_open", "td_open")


def _closing(tokens: list[Token], i: int) -> int:
    """The index of the token that closes the block opened at ``i`` (the last one if the parse was cut)."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def split_for_markdown(text: str, budget: int, max_chars: int = HEAD_CHARS) -> tuple[str, str, int]:
    """(the head to render as Markdown, the rest to show as plain text, the widgets the head costs).

    The cut falls at the start of the first block (a paragraph, a list item, a code block, a table, ...) that
    would go over ``budget`` or past ``max_chars`` characters; what comes before it is Markdown as written. A
    block costs one, a table one plus one per cell.
    """
    if budget <= 0:
        return "", text, 0
    src = text[: max_chars + 1]  # only the part that may become Markdown is parsed (an answer may be 200k)
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    cost = last = 0
    tokens = safe_parser().parse(src)
    inside = -1  # the index of the close of the table being skipped (its cells are paid for at its start)
    for i, tok in enumerate(tokens):
        if i <= inside or tok.type == "inline" or tok.nesting == -1 or tok.map is None:
            continue
        first, end = tok.map
        weight = 1
        if tok.type == "table_open":
            inside = _closing(tokens, i)
            weight += sum(1 for t in tokens[i:inside] if t.type in CELLS)
        too_long = starts[first] > max_chars or (tok.nesting == 0 and starts[min(end, len(lines))] > max_chars)
        if cost + weight > budget or too_long:
            return "\n".join(lines[:first]), "\n".join(lines[first:]), cost
        cost += weight
        last = first
    if len(src) == len(text):
        return text, "", cost
    # cut short: the last block seen may run on past what was parsed, so it goes with the rest
    return "\n".join(lines[:last]), "\n".join(lines[last:]), cost


class SafeMarkdown(Markdown):
    """Textual's Markdown for text from a model: made inert first, parsed without links, never opens a URL, its
    tables' tooltips plain."""

    BLOCKS = {**Markdown.BLOCKS, "table_open": safe_markdown_table()}

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(plain(text, keep_newlines=True), id=id, parser_factory=safe_parser, open_links=False)

    def on_markdown_link_clicked(self, event: Markdown.LinkClicked) -> None:
        event.prevent_default()
        event.stop()  # nothing to follow: links are text (a second line of defence)


def plain_rest(rest: str) -> Iterator[Static]:
    """What did not fit the Markdown budget: a note and the text as plain (inert) text."""
    note = (
        f"the rest ({len(rest)} characters) as plain text: too many blocks or table cells to render as Markdown; "
        "the saved file has it all"
    )
    yield Static(Text(note, style="dim italic"), classes="answer-note")
    yield Static(Text(rest), classes="answer-rest")  # made inert with the rest of the document


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


class ResultsScreen(ModalScreen[None]):
    """``enter`` on a task: the task and its results in order, each answer rendered as Markdown."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close"), *RESULTS_BINDINGS]
    DEFAULT_CSS = """
    ResultsScreen #results-scroll { height: 1fr; }
    ResultsScreen Answer { height: auto; padding: 0 1; margin: 1 0 0 0; border-left: blank; }
    ResultsScreen Answer:focus { border-left: thick $accent; background: $boost; }
    ResultsScreen .answer-meta { color: $text-muted; }
    ResultsScreen Markdown { margin: 0; padding: 0; }
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
                f"tab next · {copy} copy the answer · {save} save as Markdown · {diff} compare · {prom} promote · "
                "escape closes"
            )
            yield Label(Text(hint, style="dim"))

    def on_mount(self) -> None:
        answers = list(self.query(Answer))
        if answers:
            answers[-1].focus()  # the newest answer, as the plain view showed the end
        else:
            self.query_one("#results-scroll").focus()

    def selected(self) -> Answer | None:
        answers = list(self.query(Answer))
        focused = self.focused
        for a in answers:
            if focused is a:
                return a
        return answers[-1] if answers else None

    def action_copy_answer(self) -> None:
        a = self.selected()
        if a is None:
            self.notify("no answer to copy yet", severity="warning", markup=False)
            return
        copy_answer(self.app, a.index, a.result)

    def action_save_results(self) -> None:
        save_document(self.app, self.task_id, self.document, self.export_dir)

    def action_compare(self) -> None:
        open_compare(self.app, self.controls, self.state, self.task_id, self.keymap)

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

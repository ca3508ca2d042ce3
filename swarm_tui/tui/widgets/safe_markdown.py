"""Markdown from a model, made safe to show: inert text, no links, a bounded number of widgets.

Textual mounts a widget per Markdown block and per table cell, so a screen renders only a budget of them as
Markdown (``split_for_markdown``) and the rest as plain text (``plain_rest``).
"""

from __future__ import annotations

from collections.abc import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.text import Text
from textual.widgets import Markdown, Static

from swarm_tui.textsafe import plain
from swarm_tui.tui.driver import safe_markdown_table

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

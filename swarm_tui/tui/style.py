"""How states look on screen, and the small text helpers every panel draws with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

from rich.text import Text

from swarm_tui.engine.states import DecisionStatus, TaskState, WorkerState

# Every state a panel colours: a worker's, a task's and a decision's (they share their common words).
ShownState: TypeAlias = WorkerState | TaskState | DecisionStatus

STATE_STYLE: Final[dict[ShownState, str]] = {
    "pending": "yellow",
    "awaiting_approval": "bold yellow",
    "awaiting_followup": "yellow",
    "running": "cyan",
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "rejected": "dim red",
    "queued": "dim",
    "waiting": "yellow",
    "over_budget": "bold red",
    "retrying": "yellow",
    "approved": "green",
    "expired": "dim",
}
# The same table looked up by any string: a state from an engine elsewhere (``--attach``) may be one this app
# does not know, and is then drawn plain.
_BY_NAME: Final[Mapping[str, str]] = {state: style for state, style in STATE_STYLE.items()}


def state_style(state: str) -> str:
    """The style a state is drawn in ("" for a state this app does not know)."""
    return _BY_NAME.get(state, "")


def bar(frac: float, width: int, *, mark: float | None = None, fill: str = "█", empty: str = "░") -> str:
    """A horizontal bar; ``mark`` (0..1) puts a ``│`` at that position (the headroom or ceiling line)."""
    width = max(1, width)
    frac = min(1.0, max(0.0, frac))
    n = int(round(frac * width))
    cells = [fill] * n + [empty] * (width - n)
    if mark is not None:
        i = min(width - 1, max(0, int(round(mark * width))))
        cells[i] = "│"
    return "".join(cells)


def spaced(words: list[tuple[str, str]]) -> Text:
    """Styled words on one line, a space between each two. The space ends the word before it: a styled run
    that starts with a space loses it in an SVG export drawn by librsvg (screenshots read ``running40 tok``)."""
    t = Text()
    for i, (word, style) in enumerate(words):
        t.append(word if i == len(words) - 1 else word + " ", style=style)
    return t

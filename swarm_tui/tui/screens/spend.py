"""The Spend screen (``$``): where the money went, the figures of ``swarm-tui spend`` (engine/guards/spend_view.py)
read off the state the app shows, redrawn while it is open. The price gaps and the attempts still waiting for
their cost come from the engine's spend info, as the Spend panel's do."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.engine.guards.spend_view import DEFAULT_DAYS, SpendView, info_problem, spend_lines, spend_view
from swarm_tui.engine.info import AnySpend
from swarm_tui.engine.projection.state import SwarmState, utc_day
from swarm_tui.textsafe import plain
from swarm_tui.tui.widgets.key_bar import KeyBar

REDRAW_S = 2.0  # spend moves when a job ends: every few seconds is soon enough, and nothing while it does not


# the last view, what it was made of and (weakly: a closed app's state may go) the state it was made from
_last: list[Any] = [lambda: None, None, None]


def view_of(state: SwarmState, spend: AnySpend | None, now: float, days: int = DEFAULT_DAYS) -> SpendView:
    """The spend view as the screen shows it: the state's entries, the engine's price gaps and pending attempts.

    Made again only when something it is made of moved (the state's version, the day, the engine's pending
    attempts or price gaps): a long log's view takes a while to build, on the app's loop, every REDRAW_S."""
    pending = (int(spend.get("reconciling") or 0), float(spend.get("reconciling_usd") or 0.0)) if spend else (-1, 0.0)
    gaps = repr((spend.get("fallback_models"), spend.get("unpriced_models"))) if spend else ""
    key = (state.version, days, utc_day(now), pending, gaps)
    if _last[0]() is not state or _last[1] != key:
        _last[:] = [weakref.ref(state), key, spend_view(state, now, days, pending=pending, problem=info_problem(spend))]
    view: SpendView = _last[2]
    return view


def spend_text(view: SpendView) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, line in enumerate(spend_lines(view)):
        style = "bold" if i == 0 else "yellow" if line.startswith("price ") else ""
        t.append(plain(line) + "\n", style=style)
    return t


class SpendScreen(ModalScreen[None]):
    """Today and the last days' spend, by model, role, task and day."""

    BINDINGS = [Binding("escape,q,enter,dollar_sign", "close", "Close")]

    def __init__(self, look: Callable[[], tuple[SwarmState, AnySpend | None, float]]) -> None:
        super().__init__(classes="modal")
        self.look = look  # the state the app shows now, the spend info, the time
        self._shown = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="spend-dialog"):
            yield Label(Text("Where the money went", style="bold"))
            with VerticalScroll(id="text-scroll"):
                yield Static(self._body(), id="spend-body")
            yield Label(
                Text("escape closes · arrows/page keys scroll · swarm-tui spend --json has every row", style="dim")
            )
        yield KeyBar(keep=("close",))

    def _body(self) -> Text:
        text = spend_text(view_of(*self.look()))
        self._shown = text.plain
        return text

    def on_mount(self) -> None:
        self.query_one("#text-scroll").focus()
        self.set_interval(REDRAW_S, self.redraw)

    def redraw(self) -> None:
        text = spend_text(view_of(*self.look()))  # the same view while nothing moved (view_of)
        if text.plain != self._shown:
            self._shown = text.plain
            self.query_one("#spend-body", Static).update(text)

    def action_close(self) -> None:
        self.dismiss(None)

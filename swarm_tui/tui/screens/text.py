"""A scrollable text view (a worker's output, a decision's details)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.tui.widgets.key_bar import KeyBar


class TextScreen(ModalScreen[None]):
    """A scrollable view of a long text (a decision's raw answer, a worker's whole on-screen output)."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, body: Text) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(Text(self.title_text, style="bold"))
            with VerticalScroll(id="text-scroll"):
                yield Static(self.body, id="text-body")
            yield Label(Text("escape closes · arrows/page keys scroll", style="dim"))
        yield KeyBar(keep=("close",))  # this view's keys, not the control room's

    def on_mount(self) -> None:
        self.query_one("#text-scroll").focus()
        self.query_one("#text-scroll", VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

"""A yes/no question (y / n, escape is no)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.tui.widgets.key_bar import KeyBar


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="modal")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question))
            yield Label(Text("y yes · n no", style="dim"))
        yield KeyBar(keep=())  # this view's keys, not the control room's

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

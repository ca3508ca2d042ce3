"""A one-line input, its text checked before it is accepted."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from swarm_tui.tui.widgets.key_bar import KeyBar


class InputScreen(ModalScreen[str | None]):
    """One line of input; ``check`` returns an error message, or None (or "") for a valid value."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, *, placeholder: str = "", value: str = "", check: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield Input(value=self.value, placeholder=self.placeholder, id="modal-input")
            yield Label(Text("enter ok · escape cancel", style="dim"), id="modal-hint")
        yield KeyBar(keep=("cancel",))  # this view's keys, not the control room's

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if not value:
            self.dismiss(None)
            return
        if self.check is not None:
            err = self.check(value)
            if err:
                self.query_one("#modal-hint", Label).update(Text(err, style="bold red"))
                return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)

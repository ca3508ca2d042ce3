"""Modal screens: confirm (y/n), a one-line input, the help screen, and a scrollable text view."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


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

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


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

    def on_mount(self) -> None:
        self.query_one("#text-scroll").focus()
        self.query_one("#text-scroll", VerticalScroll).scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, rows: list[tuple[str, str, str]], notes: list[str]) -> None:
        super().__init__(classes="modal")
        self.rows = rows
        self.notes = notes

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("Keys\n\n", style="bold")
        for key, desc, ident in self.rows:
            t.append(f"  {key:<10}", style="bold cyan")
            t.append(f"{desc:<62}")
            t.append(f"[keys] {ident}\n", style="dim")
        t.append("\n")
        for note in self.notes:
            t.append(note + "\n", style="dim")
        with Vertical(classes="dialog wide", id="help"):
            with VerticalScroll():
                yield Static(t)
            yield Label(Text("escape closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)

"""The keys and what they do, as the config maps them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


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

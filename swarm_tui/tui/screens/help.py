"""The keys and what they do, as the config maps them."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from swarm_tui.tui.widgets.key_bar import KeyBar


def keys_table(rows: list[tuple[str, str, str]]) -> Table:
    """The keys as a grid: the key and its ``[keys]`` id never wrap (an id cut in two is not the one to write
    in the config); what the key does wraps when the terminal is too narrow for it."""
    table = Table.grid(padding=(0, 2, 0, 0))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(ratio=1, overflow="fold")
    table.add_column(style="dim", no_wrap=True)
    for key, desc, ident in rows:
        table.add_row(Text(key), Text(desc), Text(f"[keys] {ident}"))  # Text: "[keys]" is no markup tag
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, rows: list[tuple[str, str, str]], notes: list[str]) -> None:
        super().__init__(classes="modal")
        self.rows = rows
        self.notes = notes

    def compose(self) -> ComposeResult:
        notes = Text("\n" + "\n".join(self.notes), style="dim")
        with Vertical(classes="dialog wide", id="help"):
            with VerticalScroll():
                yield Static(Text("Keys", style="bold"))
                yield Static(keys_table(self.rows), id="help-keys")
                yield Static(notes, id="help-notes")
            yield Label(Text("escape closes", style="dim"))
        yield KeyBar(keep=("close",))

    def action_close(self) -> None:
        self.dismiss(None)

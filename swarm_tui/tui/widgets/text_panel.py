"""A panel drawn as one Text, repainted only when the text changed and re-laid out only when its height did."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import var
from textual.widget import Widget


class TextPanel(Widget):
    """A panel whose reading builds one Text into ``shown`` (``render`` builds it again at the size it is drawn at).

    They are shown again every second: only a changed text is repainted, and re-laid out only when its number
    of lines changed (re-laying out on every show re-laid out the whole screen every second)."""

    shown: var[Text | None] = var(None, init=False)

    def watch_shown(self, old: Text | None, new: Text | None) -> None:
        lines = new.plain.count("\n") if new is not None else -1
        self.refresh(layout=old is None or old.plain.count("\n") != lines)

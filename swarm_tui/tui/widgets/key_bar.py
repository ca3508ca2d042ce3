"""The key line at the bottom of the control room: one widget, drawn from the screen's active bindings.

Textual's ``Footer`` is a container of one ``FooterKey`` widget per key, and it recomposes (removes and mounts
every key, each styled by the CSS engine) whenever the screen's bindings change: three times before the first
frame, and again on every focus move. On this app's start-up that was ~0.15 s of the ~0.25 s between
``App.run`` and the first full frame (cProfile and a stand-in measured it). ``KeyBar`` keeps the Footer's look
(the same theme variables, the same padding, the palette key docked right behind a thin rule) and what it
does (dimmed keys whose action is disabled, a click presses the key, the hovered key shows its tooltip), but a
bindings change is one repaint.
"""

from __future__ import annotations

from typing import NamedTuple

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget


class _Key(NamedTuple):
    start: int  # cells from the left edge
    end: int
    binding: Binding
    enabled: bool
    tooltip: str


class KeyBar(Widget, can_focus=False):
    """The screen's shown keys on one line; ``compact`` drops the padding (narrow terminals)."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--hover", "keybar--rule"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        & > .keybar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .keybar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .keybar--hover {
            background: $block-hover-background;
        }
        & > .keybar--rule {
            color: $foreground 20%;
        }
    }
    """

    compact: reactive[bool] = reactive(False, toggle_class="-compact")
    # what a key says now where its binding's word would be wrong (``{"pause": "Resume"}`` while paused)
    labels: reactive[dict[str, str]] = reactive(dict)

    def __init__(
        self, *, keep: tuple[str, ...] = ("help",), order: tuple[str, ...] = (), id: str | None = None
    ) -> None:
        """``keep``: actions whose key stays on the line when not every key fits (the way to the rest);
        ``order``: actions shown first, in this order (the rest follow in the bindings' order)."""
        super().__init__(id=id)
        self.keep = keep
        self.order = order
        self._keys: list[_Key] = []
        self._hover: str | None = None  # the action of the key under the mouse

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, _screen: object) -> None:
        self.refresh()

    # ------------------------------------------------------------------ what is shown
    def _shown(self) -> tuple[list[tuple[Binding, bool, str]], tuple[Binding, bool, str] | None]:
        """The shown bindings, one per action (the first, as the Footer does), and the palette's key."""
        active = self.screen.active_bindings
        seen: set[str] = set()
        shown: list[tuple[Binding, bool, str]] = []
        for _node, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                shown.append((binding, enabled, tooltip or binding.tooltip or binding.description))
        if self.order:  # a stable sort: the ordered actions first, the rest as they were
            rank = {action: i for i, action in enumerate(self.order)}
            shown.sort(key=lambda x: rank.get(x[0].action, len(rank)))
        palette = None
        if self.app.ENABLE_COMMAND_PALETTE and self.app.COMMAND_PALETTE_BINDING in active:
            _node, binding, enabled, tooltip = active[self.app.COMMAND_PALETTE_BINDING]
            palette = (binding, enabled, tooltip or binding.tooltip or binding.description)
        return shown, palette

    def _piece(self, binding: Binding, enabled: bool, compact: bool) -> Text:
        key = self.get_component_rich_style("keybar--key", partial=True)
        desc = self.get_component_rich_style("keybar--description", partial=True)
        if binding.action == self._hover:
            hover = self.get_component_rich_style("keybar--hover", partial=True)
            key, desc = key + hover, desc + hover
        if not enabled:
            key, desc = key + Style(dim=True), desc + Style(dim=True)
        shown_key = self.app.get_key_display(binding)
        word = self.labels.get(binding.action, binding.description)
        if compact:
            return Text.assemble((shown_key, key), (f" {word}", desc))
        return Text.assemble((f" {shown_key} ", key), (f"{word} ", desc))

    def render(self) -> Text:
        shown, palette = self._shown()
        width = self.size.width
        right = Text(end="")
        if palette is not None:
            binding, enabled, tooltip = palette
            right.append("▏", self.get_component_rich_style("keybar--rule", partial=True))
            piece = self._piece(binding, enabled, True)  # the palette's key is always in the compact style
            right.append_text(piece)
            if not self.compact:
                right.append(" ")
        room = max(0, width - right.cell_len)
        gap = " " if self.compact else ""  # the Footer's keys: padded, or a margin of one cell when compact
        self._keys = []
        line = Text(no_wrap=True, overflow="crop", end="")
        pieces = [(self._piece(b, e, self.compact), b, e, t) for b, e, t in shown]
        budget = room - sum(p.cell_len + len(gap) for p, b, *_ in pieces if b.action in self.keep)
        if sum(p.cell_len + len(gap) for p, *_ in pieces) > room:
            # whole keys only (one cut in half reads as another key), in order, and the kept ones (help) stay
            fitted = []
            for x in pieces:
                cost = x[0].cell_len + len(gap)
                if x[1].action in self.keep:
                    fitted.append(x)
                elif cost <= budget:
                    budget -= cost
                    fitted.append(x)
                else:
                    budget = -1  # nothing after the first key that did not fit
            pieces = fitted
        for piece, binding, enabled, tooltip in pieces:
            start = line.cell_len
            if start + piece.cell_len > room:
                break
            line.append_text(piece)
            self._keys.append(_Key(start, line.cell_len, binding, enabled, tooltip))
            line.append(gap)
        if palette is None:
            line.truncate(width)
            return line
        line.truncate(room, pad=True)
        binding, enabled, tooltip = palette
        self._keys.append(_Key(room + 1, width - (0 if self.compact else 1), binding, enabled, tooltip))
        line.append_text(right)
        return line

    # ------------------------------------------------------------------ the mouse
    def _at(self, x: int) -> int | None:
        for i, k in enumerate(self._keys):
            if k.start <= x < k.end:
                return i
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        at = self._at(event.x)
        action = self._keys[at].binding.action if at is not None else None
        if action != self._hover:
            self._hover = action
            self.tooltip = self._keys[at].tooltip if at is not None else None
            self.refresh()

    def on_leave(self, _: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.tooltip = None
            self.refresh()

    def on_click(self, event: events.Click) -> None:
        at = self._at(event.x)
        if at is None:
            return
        key = self._keys[at]
        if key.enabled:
            self.app.simulate_key(key.binding.key)
        else:
            self.app.bell()

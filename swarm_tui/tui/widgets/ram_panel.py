"""The RAM panel: used and available RAM against the headroom, its recent history, and who uses what."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.reactive import var

from swarm_tui.engine.info import RamSummary
from swarm_tui.tui.model import fmt_mb, one_line, plural, sparkline
from swarm_tui.tui.style import bar
from swarm_tui.tui.widgets.text_panel import TextPanel

RAM_REDRAW_S = 30.0  # the RAM panel at rest: one redraw per this many seconds
RAM_STEP_MB = 100.0  # a move of available RAM this large is drawn at once
# bar, used, headroom, sparkline, its range, this app: the height of a reading, kept by the placeholder so that
# the first reading does not re-lay out the screen (the Decisions panel above it shrank, a repaint of the column)
PLACEHOLDER_LINES = 6


@dataclass(frozen=True)
class RamReading:
    """One reading for the panel: the RAM guard's summary and the available MB over time."""

    ram: RamSummary | None
    history: tuple[float, ...] = ()
    now: float | None = None  # monotonic time of the reading (None: when it is shown)


class RamPanel(TextPanel):
    """A gauge of used/available RAM with the headroom line, a sparkline, and who uses what."""

    DEFAULT_CSS = "RamPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }"

    # The latest reading. Set every second, often the same dict changed in place: every assignment is looked
    # at (always_update), and the panel redrawn only when it moved enough or RAM_REDRAW_S passed.
    reading: var[RamReading | None] = var(None, init=False, always_update=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ram: RamSummary | None = None
        self.history: list[float] = []
        self._shown_at = float("-inf")
        self._drawn: tuple[float, bool, Any, tuple[str, ...]] | None = None  # the reading on screen

    def watch_reading(self, reading: RamReading | None) -> None:
        """Redrawn at once when the reading moved (by RAM_STEP_MB available, the LOW state, the local models),
        else at most every RAM_REDRAW_S: at rest the panel costs the terminal ~50 B/s, not a redraw a sample."""
        if reading is None:
            return
        ram, history = reading.ram, list(reading.history)
        now = time.monotonic() if reading.now is None else reading.now
        if not self._moved(ram) and now - self._shown_at < RAM_REDRAW_S:
            self.history = history  # kept for a redraw caused by something else (a resize)
            return
        self.ram, self.history, self._shown_at = ram, history, now
        self._drawn = None if ram is None else self._key_of(ram)
        self.shown = self.build(ram, history, self.content_size.width or 40)

    def _moved(self, ram: RamSummary | None) -> bool:
        """Whether this reading differs from the one on screen in what matters at a glance (a copy of it is
        kept in ``_drawn``: the reading may be the same dict, updated in place)."""
        key, old = (None if ram is None else self._key_of(ram)), self._drawn
        if old is None or key is None:
            return old != key
        return abs(key[0] - old[0]) >= RAM_STEP_MB or key[1:] != old[1:]

    @staticmethod
    def _key_of(ram: RamSummary) -> tuple[float, bool, Any, tuple[str, ...]]:
        names = tuple(str(m.get("name")) for m in ram.get("local_models", []))
        return float(ram.get("available_mb", 0)), bool(ram.get("low")), ram.get("headroom_mb"), names

    def render(self) -> Text:
        return self.build(self.ram, self.history, self.content_size.width or 40)

    @staticmethod
    def build(ram: RamSummary | None, history: list[float], width: int) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        w = max(10, width)
        total = ram.get("total_mb") if ram else None
        avail = ram.get("available_mb") if ram else None
        if not ram or not total or avail is None:
            t.append("no RAM reading" + "\n" * (PLACEHOLDER_LINES - 1), style="dim")  # the settled height
            return t
        headroom = ram.get("headroom_mb")
        used = total - avail
        low = ram.get("low", False) or (headroom is not None and avail < headroom)
        mark = (total - headroom) / total if headroom is not None else None
        t.append(bar(used / total, w, mark=mark), style="bold red" if low else "green")
        t.append("\n")
        t.append(f"used {fmt_mb(used)} · available {fmt_mb(avail)} of {fmt_mb(total)}")
        if headroom is not None:
            t.append(f"\nheadroom {fmt_mb(headroom)} (│)")
            if low:
                t.append("  LOW: local work waits", style="bold red")
        if history:
            t.append("\n")
            recent = history[-w:]
            lo, hi = min(recent), max(recent)
            if hi - lo < 256:  # a flat line for small wobbles, not a magnified one
                mid = (hi + lo) / 2
                lo, hi = mid - 128, mid + 128
            t.append(sparkline(history, w, lo=lo, hi=hi), style="cyan")
            t.append("\n")
            t.append(
                f"available {fmt_mb(min(recent))}–{fmt_mb(max(recent))}, last {plural(len(recent), 'reading')}",
                style="dim",
            )
        own, kids = ram.get("own_rss_mb"), ram.get("children_rss_mb")
        models = ram.get("local_models", [])
        t.append("\n")
        t.append(f"this app {fmt_mb(own)}" + (f" + children {fmt_mb(kids)}" if kids else ""))
        if models:
            shares = [f"{one_line(str(m.get('name', '?')), 24)} {fmt_mb(m.get('size_mb'))}" for m in models[:3]]
            t.append("\nlocal models: " + ", ".join(shares))
        else:
            t.append(" · no local model loaded", style="dim")
        return t

"""The replay's timeline line: where the position is (its time, event N of M, a bar), how fast, playing or not."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from swarm_tui.engine.bus.timefmt import local_text

BAR_CELLS = 24


@dataclass(frozen=True)
class TimelineView:
    """What the line is built from (the timeline's figures at one moment)."""

    time: float
    seq: int
    last_seq: int
    speed: float
    playing: bool
    fraction: float
    gap_s: float  # an idle gap in the log passes in at most this much real time


def timeline_line(v: TimelineView, *, note: bool = True) -> Text:
    """The line; ``note``: how idle gaps pass, at its end (its keys are on the key bar)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(" ▶ playing " if v.playing else " ⏸ paused ", style="bold reverse green" if v.playing else "bold reverse")
    t.append(f" {v.speed:g}x │ ")
    when = local_text(v.time, "%Y-%m-%d %H:%M:%S") if v.time else "-"
    t.append(when, style="bold")
    t.append(f" │ event {v.seq} of {v.last_seq} │ ")
    done = round(v.fraction * (BAR_CELLS - 1))
    t.append("━" * done, style="cyan")
    t.append("●", style="bold cyan")
    t.append("─" * (BAR_CELLS - 1 - done), style="dim")
    if note:
        t.append(f" │ idle gaps pass in ≤{v.gap_s:g}s", style="dim")
    return t


class TimelineBar(Static):
    """One line under the panels, above the key bar, while replaying."""

    DEFAULT_CSS = """
    TimelineBar { height: 1; background: $panel; }
    """

    view: var[TimelineView | None] = var(None, init=False)

    def watch_view(self, view: TimelineView | None) -> None:
        if view is not None:
            line = timeline_line(view)
            self.update(line if line.cell_len <= self.size.width else timeline_line(view, note=False))

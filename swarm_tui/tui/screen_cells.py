"""What the terminal already shows, so a frame writes only the places that changed (free of Textual).

Textual repaints a widget's whole region whenever it is refreshed: a header whose countdown moved one digit
rewrites the 120-column line, a panel re-laid out with the same size rewrites every line of it, and a screen
shown for the first time is painted twice (its layout, then the repaint its resume asks for). Over ssh each of
those is bytes on the link: the first 15 s after the first frame cost ~60 KB, most of it the same cells again.

A frame reaches the terminal as pieces, each an absolute cursor move and the styled text of a run of cells
(Textual renders every run self-contained: its style set, then reset). ``ScreenCells`` remembers, per row, the
runs it let through; a piece identical to the run already at that place is dropped, and a piece that differs
goes out and forgets the runs it covers. A full frame is treated the same (Textual sends one for a mere focus change);
the memory is emptied when the terminal's content is unknown: a new size, a new screen mode (start, return from
a suspend).
"""

from __future__ import annotations

import re

from rich.cells import cell_len

RESET = "\x1b[0m"  # Textual ends every styled segment with it
CURSOR_TO = re.compile(r"\x1b\[(\d+);(\d+)H")  # CUP: what starts every run of a frame
ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")  # no cells


class ScreenCells:
    """The runs on screen: ``rows[y][x] = (end, text, its segments, their widths)``, 1-based like the cursor
    moves; ``written`` and ``dropped``: the characters let through and held back (the bench and tests read them)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[int, tuple[int, str, list[str], list[int]]]] = {}
        self.size = (0, 0)
        self.written = 0
        self.dropped = 0

    def forget(self) -> None:
        """The terminal's content is unknown (the first frame, a new size, a return from a suspend): the next
        frame is written whole."""
        self.rows.clear()

    def frame(self, text: str, size: tuple[int, int]) -> str:
        """A frame for a screen of ``size`` (columns, rows): only its runs that differ from what is on screen."""
        if size != self.size:  # a resized terminal keeps some of its old cells and loses others
            self.forget()
            self.size = size
        out = self._pass(text)
        self.written += len(out)
        self.dropped += len(text) - len(out)
        return out

    def _pass(self, frame: str) -> str:
        parts = CURSOR_TO.split(frame)
        out = [parts[0]]  # anything before the first move (nothing, from Textual) goes out as it is
        for i in range(1, len(parts) - 2, 3):
            y, x, text = int(parts[i]), int(parts[i + 1]), parts[i + 2]
            text = text.removesuffix("\n")  # a line break between runs: every run starts with its own move
            row = self.rows.setdefault(y, {})
            old = row.get(x)
            if old is not None and old[1] == text:
                continue
            segs = text.split(RESET)
            widths = [cell_len(ESCAPES.sub("", seg)) for seg in segs]
            end = x + sum(widths)
            if end == x:  # a move with no cells (the cursor's place at the end) is not remembered
                out.append(f"\x1b[{y};{x}H{text}")
                continue
            if old is not None and old[0] == end:
                out += _segments_changed(y, x, old[2], old[3], segs, widths)
            else:
                out.append(f"\x1b[{y};{x}H{text}")
                for ox in [ox for ox, (oend, *_) in row.items() if ox < end and oend > x]:
                    del row[ox]
            row[x] = (end, text, segs, widths)
        return "".join(out)


def _segments_changed(
    y: int, x: int, old: list[str], old_widths: list[int], new: list[str], widths: list[int]
) -> list[str]:
    """What to write of a run over the run on screen of the same span. Each styled segment ends with a reset, so
    any slice of them can be written alone: of the same shape, each changed segment (a countdown's digit, not its
    line); else the slice between the segments both start with and end with (a header's new middle)."""
    last = len(new) - 1
    if old_widths == widths:
        out = []
        for k, (a, b, w) in enumerate(zip(old, new, widths, strict=True)):
            if a != b:
                out.append(f"\x1b[{y};{x}H{b}{RESET if k < last else ''}")
            x += w
        return out
    head = 0  # segments alike at the start (same text, same place)
    while head < min(len(old), len(new)) - 1 and old[head] == new[head]:
        x += widths[head]
        head += 1
    tail = 0  # ... and at the end (the last one of each is what follows the last reset)
    while tail < min(len(old), len(new)) - 1 - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    middle = new[head : len(new) - tail]
    text = RESET.join(middle) + (RESET if tail else "")
    return [f"\x1b[{y};{x}H{text}"] if text else []

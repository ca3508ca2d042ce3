"""Small display-side data: bounded output rings per worker, a RAM history, and formatting helpers.

The full output of a worker stays in its Result on the bus; the screen keeps only a bounded tail.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.cells import get_character_cell_size

from swarm_tui.engine.models import short_name
from swarm_tui.textsafe import plain

RING_CHARS = 6000  # characters of recent output kept per worker on screen
REASONING_CHARS = 2000  # characters of recent reasoning kept per worker (shown dimmed until content comes)


class OutputRing:
    """The recent output of one worker: at most ``limit`` characters, already made inert."""

    __slots__ = ("parts", "size", "limit", "tokens", "last_seq", "dropped", "reasoning", "heard_at")

    def __init__(self, limit: int = RING_CHARS) -> None:
        self.parts: deque[str] = deque()
        self.size = 0
        self.limit = limit
        self.tokens = 0
        self.last_seq = -1
        self.dropped = 0  # characters that fell off the front
        self.reasoning = ""  # the tail of the model's reasoning (not part of the output)
        self.heard_at = 0.0  # when output last arrived (output is live only: someone works the job now)

    def append(self, text: str, tokens: int = 0, seq: int | None = None, reasoning: str = "") -> bool:
        if seq is not None:
            if seq <= self.last_seq:
                return False  # a duplicate or late chunk
            self.last_seq = seq
        if text or tokens or reasoning:
            self.heard_at = time.time()
        self.tokens += tokens
        if reasoning:
            self.reasoning = (self.reasoning + plain(reasoning[-REASONING_CHARS:], keep_newlines=True))[
                -REASONING_CHARS:
            ]
        if not text:
            return tokens > 0 or bool(reasoning)
        text = plain(text, keep_newlines=True)
        if len(text) >= self.limit:
            self.dropped += self.size + len(text) - self.limit
            self.parts.clear()
            text = text[-self.limit :]
            self.size = 0
        self.parts.append(text)
        self.size += len(text)
        while self.size > self.limit and self.parts:
            over = self.size - self.limit
            first = self.parts[0]
            if len(first) <= over:
                self.parts.popleft()
                self.size -= len(first)
                self.dropped += len(first)
            else:
                self.parts[0] = first[over:]
                self.size -= over
                self.dropped += over
        return True

    def text(self) -> str:
        if len(self.parts) > 1:
            joined = "".join(self.parts)
            self.parts.clear()
            self.parts.append(joined)
        return self.parts[0] if self.parts else ""

    def tail_lines(self, width: int, lines: int) -> list[str]:
        """The last ``lines`` screen lines of the output, hard-wrapped at ``width`` columns."""
        return wrap_tail(self.text(), width, lines)

    def reasoning_lines(self, width: int, lines: int) -> list[str]:
        """The last ``lines`` screen lines of the reasoning."""
        return wrap_tail(self.reasoning, width, lines)


def wrap_tail(text: str, width: int, lines: int) -> list[str]:
    """The last ``lines`` screen lines of ``text``, wrapped at ``width`` columns on word boundaries (a word
    longer than a line is cut)."""
    if lines <= 0:
        return []
    width = max(4, width)
    src = text[-(width * lines * 2 + 2) :].rstrip("\n")
    out: list[str] = []
    for raw in reversed(src.split("\n")):
        out[:0] = wrap_words(raw.expandtabs(4), width)
        if len(out) >= lines:
            break
    return out[-lines:]


def _fits(line: str, width: int) -> int:
    """How many of ``line``'s first characters fit in ``width`` terminal cells (a wide character takes two)."""
    if line.isascii():
        return min(len(line), width)
    total = 0
    for i, ch in enumerate(line):
        total += get_character_cell_size(ch)
        if total > width:
            return i
    return len(line)


def wrap_words(line: str, width: int) -> list[str]:
    """One line of text in pieces of at most ``width`` columns (terminal cells: a wide character takes two),
    broken at the last space that fits (the space itself dropped), else mid-word (a word longer than a line)."""
    width = max(1, width)
    out: list[str] = []
    while (n := _fits(line, width)) < len(line):
        cut = line.rfind(" ", 0, n + 1)
        if cut <= 0 or not line[:cut].strip():  # no space to break at (or only an indent): cut the word
            n = max(1, n)  # a wide character in a one-cell line: it goes alone rather than never
            out.append(line[:n])
            line = line[n:]
        else:
            out.append(line[:cut])
            line = line[cut + 1 :]
    out.append(line)
    return out


def fmt_usd(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    try:
        return f"${float(v):.{digits}f}"
    except (TypeError, ValueError):
        return "-"


def fmt_mb(v: Any) -> str:
    if v is None:
        return "-"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return f"{f / 1024:.1f} GB" if f >= 1024 else f"{f:.0f} MB"


def fmt_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def short_id(ident: str, keep: int = 14) -> str:
    return ident if len(ident) <= keep else "…" + ident[-(keep - 1) :]


def short_model(model: str) -> str:
    return short_name(model)


def plural(n: int, word: str, words: str = "") -> str:
    """``1 worker``, ``2 workers`` (``words``: a plural not made with an s)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def one_line(text: str, limit: int = 200) -> str:
    return plain(text[: limit * 2])[:limit]


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int, lo: float | None = None, hi: float | None = None) -> str:
    if not values or width <= 0:
        return ""
    vals = values[-width:]
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    span = hi - lo
    if span <= 0:
        return SPARK[len(SPARK) // 2] * len(vals)
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int((v - lo) / span * (len(SPARK) - 1) + 0.5)))] for v in vals)


def num(d: dict[str, Any] | None, key: str) -> float | None:
    if not d:
        return None
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)

"""Two answers of one task side by side: aligned rows, a tag per row, a summary. No Textual here, so the
alignment is tested as data and the compare screen only paints it.

Both texts go through ``textsafe.plain`` first: an answer is hostile data, and nothing in it (an escape
sequence, a control character, a bidi override) may reach the terminal through the diff either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Literal

from swarm_tui.engine.bus.wire import Result
from swarm_tui.textsafe import plain

RowTag = Literal["same", "changed", "left-only", "right-only"]

# a diff of two 200k-character answers is thousands of rows: the screen shows at most this many (and says so)
MAX_ROWS = 2000
# changed lines longer than this get no word-level highlight (quadratic work, and nobody reads it)
MAX_INLINE = 400
# above this many lines in all, difflib's "popular line" heuristic stays on (blank lines stop being anchors,
# but the match stays fast on long answers)
AUTOJUNK_ABOVE = 2000

Span = tuple[int, int]


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side view: a line of A, of B, or both (None: nothing on that side)."""

    tag: RowTag
    left: str | None
    right: str | None
    left_no: int | None = None  # 1-based line numbers, for the gutter
    right_no: int | None = None
    left_spans: tuple[Span, ...] = ()  # the characters that differ, on a "changed" row
    right_spans: tuple[Span, ...] = ()


@dataclass
class Comparison:
    """The aligned rows (at most ``MAX_ROWS``), and the numbers over the whole texts."""

    rows: list[Row] = field(default_factory=list)
    total_rows: int = 0
    same: int = 0  # lines in both
    only_a: int = 0  # lines of A with no equal line in B (changed or removed)
    only_b: int = 0
    lines_a: int = 0
    lines_b: int = 0
    ratio: float = 1.0

    @property
    def capped(self) -> bool:
        return self.total_rows > len(self.rows)

    @property
    def similarity(self) -> int:
        """The ratio as a whole per cent (100 only when the texts are the same line for line)."""
        pct = round(self.ratio * 100)
        return 99 if pct == 100 and self.ratio < 1.0 else pct

    def summary(self) -> str:
        text = (
            f"{self.same} lines the same · {self.only_a} only in A · {self.only_b} only in B · "
            f"{self.similarity}% similar"
        )
        if self.capped:
            text += f" · showing the first {len(self.rows)} of {self.total_rows} rows"
        return text


def lines_of(text: str) -> list[str]:
    """The text made inert and split into lines (tabs expanded, so the columns line up)."""
    safe = plain(text, keep_newlines=True).replace("\r\n", "\n").expandtabs(4)
    return safe.split("\n") if safe else []


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
# a changed pair less alike than this is simply two different lines: no word highlight (it would be noise)
INLINE_RATIO = 0.4


def inline_spans(a: str, b: str) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """The character ranges of ``a`` and of ``b`` that differ, word by word (none for long or unlike lines:
    the row is marked anyway)."""
    if len(a) > MAX_INLINE or len(b) > MAX_INLINE:
        return (), ()
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    matcher = SequenceMatcher(None, ta, tb, autojunk=False)
    if matcher.ratio() < INLINE_RATIO:
        return (), ()
    pa, pb = _offsets(ta), _offsets(tb)
    left: list[Span] = []
    right: list[Span] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i2 > i1 and a[pa[i1] : pa[i2]].strip():
            left.append((pa[i1], pa[i2]))
        if j2 > j1 and b[pb[j1] : pb[j2]].strip():
            right.append((pb[j1], pb[j2]))
    return tuple(left), tuple(right)


def _offsets(tokens: list[str]) -> list[int]:
    """Where each token starts, and the end: ``out[k]`` is the offset of token k, ``out[-1]`` the length."""
    out = [0]
    for t in tokens:
        out.append(out[-1] + len(t))
    return out


def compare(text_a: str, text_b: str, max_rows: int = MAX_ROWS) -> Comparison:
    """Align two answers line by line (difflib): equal lines side by side, a replaced block paired line for
    line (the shorter side padded with nothing), a removed line on the left only, an added one on the right."""
    a, b = lines_of(text_a.strip("\n")), lines_of(text_b.strip("\n"))
    matcher = SequenceMatcher(None, a, b, autojunk=len(a) + len(b) > AUTOJUNK_ABOVE)
    out = Comparison(lines_a=len(a), lines_b=len(b), ratio=matcher.ratio() if a or b else 1.0)
    rows = out.rows

    def add(row: Row) -> None:
        out.total_rows += 1
        if len(rows) < max_rows:
            rows.append(row)

    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.same += i2 - i1
            for k in range(i2 - i1):
                add(Row("same", a[i1 + k], b[j1 + k], i1 + k + 1, j1 + k + 1))
            continue
        out.only_a += i2 - i1
        out.only_b += j2 - j1
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            if i < i2 and j < j2:
                ls, rs = inline_spans(a[i], b[j]) if len(rows) < max_rows else ((), ())
                add(Row("changed", a[i], b[j], i + 1, j + 1, ls, rs))
            elif i < i2:
                add(Row("left-only", a[i], None, i + 1, None))
            else:
                add(Row("right-only", None, b[j], None, j + 1))
    return out


# ------------------------------------------------------------------------------------------ which answers
def default_pair(results: list[Result], promoted: str = "") -> tuple[int, int]:
    """(index of A, index of B) into ``results`` (oldest first): the promoted answer against the newest other
    one; without a promoted answer the two newest "done" ones (older on the left), else the two newest."""
    n = len(results)
    if n < 2:
        return 0, 0
    shown = [i for i, r in enumerate(results) if r.job_id == promoted]
    if shown:
        a = shown[0]
        return a, max(i for i in range(n) if i != a)
    done = [i for i, r in enumerate(results) if r.state == "done"]
    if len(done) >= 2:
        return done[-2], done[-1]
    return n - 2, n - 1


def pair_around(results: list[Result], i: int) -> tuple[int, int]:
    """(index of A, index of B), older on the left: answer ``i`` and its neighbour, the next answer with text
    after it, else the nearest one before it with text, else the next one at all."""
    n = len(results)
    if n < 2:
        return 0, 0
    with_text = [j for j in (*range(i + 1, n), *range(i - 1, -1, -1)) if results[j].text.strip()]
    j = with_text[0] if with_text else (i + 1) % n
    return min(i, j), max(i, j)


def step_answer(current: int, step: int, count: int, other: int) -> int:
    """The next (``step`` 1) or previous (-1) answer after ``current``, wrapping and passing over ``other``
    (the answer in the other column); ``current`` itself when there is nothing else to show."""
    nxt = current
    for _ in range(count):
        nxt = (nxt + step) % count
        if nxt != other:
            return nxt
    return current

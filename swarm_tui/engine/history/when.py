"""A point of the log as a person writes it: a sequence number, an ISO 8601 time, or a time relative to now.

``12345`` is the log's sequence number 12345 (``status --json`` shows ``log.last_seq``); ``2026-12-04T18:30``,
``2026-12-04 18:30:00+01:00`` and ``2026-12-04`` are times (without an offset: this machine's local time, as
``date`` prints it); ``-15m``, ``-2h``, ``-1d``, ``-1h30m``, ``-90s`` are that long before now. Anything else is a
``UsageError`` whose one line says what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from swarm_tui.engine.errors import UsageError

ACCEPTED = "a log sequence number (12345), an ISO 8601 time (2026-12-04T18:30) or a time before now (-15m, -2h, -1d)"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"-((?:\d{1,6}[smhdw])+)")
_PART = re.compile(r"(\d{1,6})([smhdw])")


@dataclass(frozen=True, slots=True)
class Point:
    """A sequence number (``kind == "seq"``) or a UNIX time (``kind == "time"``). ``span``: how long the time as
    typed lasts (1.0 for a time to the second, as the tools print them: ``11:09:51`` is all of that second)."""

    kind: Literal["seq", "time"]
    value: float
    span: float = 0.0

    @property
    def seq(self) -> int:
        return int(self.value)


def parse_point(text: str, *, now: float, what: str = "--at") -> Point:
    """``text`` as a point of the log; ``now`` is the UNIX time relative times count back from."""
    s = text.strip()
    if not s:
        raise UsageError(f"{what} is empty: give {ACCEPTED}")
    if s.isascii() and s.isdigit():
        if len(s) > 18 or int(s) < 1:
            raise UsageError(f"{what} {s}: sequence numbers start at 1 (give {ACCEPTED})")
        return Point("seq", int(s))
    m = _RELATIVE.fullmatch(s)
    if m is not None:
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(m.group(1)))
        return Point("time", now - seconds)
    if s.startswith("-") and s[1:].isascii() and s[1:].isdigit():
        raise UsageError(f"{what} {s}: give a unit (s, m, h, d or w), as in -{s[1:]}m")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise UsageError(f"{what} {_shown(s)}: not understood; give {ACCEPTED}") from None
    try:
        t = dt.timestamp()  # a naive time is local time, as ``date`` prints it
    except (ValueError, OverflowError, OSError):  # 0001-01-01 east of UTC is in the year 0
        raise UsageError(f"{what} {_shown(s)}: out of the range of times; give {ACCEPTED}") from None
    return Point("time", t, 0.0 if dt.microsecond else 1.0)


def _shown(s: str) -> str:
    """The value as typed, cut and made printable for the one-line error."""
    clean = "".join(c if c.isprintable() else "?" for c in s[:40])
    return repr(clean + ("…" if len(s) > 40 else ""))

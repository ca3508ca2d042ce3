"""Times as text, for any finite float: a time read from the bus or a file is the publisher's word, and
``datetime`` raises for a year outside 1..9999 (``-1e13``, ``1e12``). Such a time is shown at the nearest end
of that range instead; nothing that formats a time from the log may raise for it."""

from __future__ import annotations

import math
from datetime import UTC, datetime

# The UNIX times datetime can show in any time zone: from 0002-01-01 to 9998-12-31 UTC (a day's room at each end)
MIN_TS = datetime(2, 1, 1, tzinfo=UTC).timestamp()
MAX_TS = datetime(9998, 12, 31, tzinfo=UTC).timestamp()


def clamped(t: float) -> float:
    """``t`` within what datetime can show (a NaN is 0: the epoch)."""
    return 0.0 if math.isnan(t) else min(max(t, MIN_TS), MAX_TS)


def utc_text(t: float, fmt: str) -> str:
    """``t`` in UTC, formatted (``strftime``)."""
    return datetime.fromtimestamp(clamped(t), UTC).strftime(fmt)


def local_text(t: float, fmt: str) -> str:
    """``t`` in this machine's time zone, formatted (``strftime``); in UTC when the zone cannot say."""
    try:
        return datetime.fromtimestamp(clamped(t)).strftime(fmt)
    except (ValueError, OverflowError, OSError):
        return utc_text(t, fmt)

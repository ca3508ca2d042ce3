"""Numbers from outside (the bus, a provider's answer), read the same way everywhere.

Python's json gives a bool for ``true`` (an ``int`` to ``isinstance``), ``nan`` and ``inf`` for the literals NaN
and Infinity, and integers of any size: ``float(10**400)`` raises OverflowError, and so does ``math.isfinite``
given it. None of these is a number to count money or tokens with.
"""

from __future__ import annotations

import math
from typing import Any

_TOO_BIG = 10**300  # an integer at least this large is no count or cost (and near float's own limit)


def finite(v: Any) -> float | None:
    """``v`` as a finite float; None for a bool, a non-number, NaN, an infinity or an integer too large."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, int) and abs(v) >= _TOO_BIG:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def nonnegative(v: Any) -> float | None:
    """``v`` as a finite float >= 0, else None (unknown)."""
    f = finite(v)
    return f if f is not None and f >= 0 else None

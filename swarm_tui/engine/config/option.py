"""One configuration option as the table declares it (its key, type, default, environment variable, secret
flag and check), and the checks the table's entries share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Option:
    key: str  # "section.name"
    type: type
    default: Any
    help: str
    env: str | None = None
    secret: bool = False
    login: bool = False  # a URL that may carry user:password@ (shown, and named in errors, without it)
    allowed: str = ""  # human text for the error message
    check: Check | None = None


def positive(v: Any) -> bool:
    return bool(v > 0)


def nonneg(v: Any) -> bool:
    return bool(v >= 0)


def in_range(lo: float, hi: float) -> Check:
    return lambda v: lo <= v <= hi


def splits(v: str) -> bool:
    import shlex

    try:
        shlex.split(v)
    except ValueError:
        return False
    return True


def alert_levels(v: Any) -> bool:
    """``budget.alerts``: parts of the ceiling, sorted and distinct (``_coerce`` built the tuple)."""
    return 0 < len(v) <= 8 and all(0 < a <= 1 for a in v) and list(v) == sorted(set(v))


def one_of(*choices: str) -> Check:
    return lambda v: v in choices

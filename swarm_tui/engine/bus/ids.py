"""Ids: the part of the wire vocabulary that needs no pydantic (the states are in ``engine/states.py``).

The screen's modules import these before the first frame; ``wire`` (pydantic models, ~70 ms to import here)
comes with the engine, after it. ``wire`` re-exports the id helpers.
"""

from __future__ import annotations

import secrets
import time

CEILING_LIMIT_USD = 1e9  # a daily ceiling is 0 <= USD < this, wherever it is set or read

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out or "0"


def new_id(prefix: str) -> str:
    """A short, time-sortable, unique id such as ``t-mfx3k2a1-3f2a``."""
    return f"{prefix}-{_base36(int(time.time() * 1000))}-{secrets.token_hex(2)}"


def job_id(decision_id: str, index: int) -> str:
    """Deterministic per decision and plan position, so re-publishing a job is harmless."""
    return f"{decision_id}-j{index}"


def worker_id(decision_id: str, index: int) -> str:
    return f"{decision_id}-w{index}"

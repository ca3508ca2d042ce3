"""Which reservations belong to a dead holder, judged by what this process has seen itself.

Dropping a reservation frees budget: the unsafe direction. So it never depends on comparing a holder's clock
(the ``at`` it wrote) with this host's clock, which may be minutes apart. A process drops a reservation only
when it has itself seen it unchanged (same ``at``, same holder ``by``, same refresh count ``n``) for the stale
limit on its own monotonic clock. A live holder refreshes its reservation (``reserve`` again before each call),
which changes it and restarts every watcher's count. A dead one is dropped by the first process that watched
it long enough; a process that starts after the holder died waits the whole limit from its first look. Keeping
a dead reservation longer than needed only holds budget back; it never lets a call through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Signature = tuple[float, str, int]


def signature(r: dict[str, Any]) -> Signature:
    return float(r.get("at", 0.0)), str(r.get("by", "")), int(r.get("n", 0))


class StaleWatch:
    """First sighting, on this process's monotonic clock, of each reservation as it is now, per ledger key."""

    def __init__(self, stale_s: float, rc_stale_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stale_s = stale_s  # a job's reservation
        self.rc_stale_s = rc_stale_s  # an attempt's ("rc"): settled by the reconciler, kept far longer
        self.monotonic = monotonic
        self._seen: dict[str, dict[str, tuple[Signature, float]]] = {}

    def observe(self, key: str, reserved: dict[str, dict[str, Any]]) -> list[str]:
        """Note what ``reserved`` (the reservations under ``key``, just read) holds now; returns the ids seen
        unchanged for their whole limit."""
        now = self.monotonic()
        if not reserved:  # nothing held: nothing to remember (a purged decision's key leaves no trace)
            self._seen.pop(key, None)
            return []
        seen = self._seen.setdefault(key, {})
        for rid in [r for r in seen if r not in reserved]:
            del seen[rid]
        dead: list[str] = []
        for rid, r in reserved.items():
            sig = signature(r)
            first = seen.get(rid)
            if first is None or first[0] != sig:
                seen[rid] = (sig, now)
                continue
            if now - first[1] >= (self.rc_stale_s if r.get("rc") else self.stale_s):
                dead.append(rid)
        return dead

    def forget(self, key: str, ids: list[str]) -> None:
        seen = self._seen.get(key, {})
        for rid in ids:
            seen.pop(rid, None)

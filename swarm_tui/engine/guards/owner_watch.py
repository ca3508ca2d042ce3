"""Whether the process that owns attempt records is gone, judged by what this process has seen itself.

An owner rewrites its heartbeat key ``o.<owner>`` every ``HEARTBEAT_S`` while it owns records (a clean stop
deletes it). Taking its records over while it lives makes two processes record one attempt: the adopter charges
the worst case while the owner records the real cost. So another process adopts them only when the heartbeat is
gone, or when its revision has not moved for ``ORPHAN_S`` (15 missed beats) on the adopter's own monotonic
clock. The ``at`` an owner writes is never compared with another host's clock (they may be minutes apart), and
an owner paused by a cluster's leader election, a full disk or a stop-the-world pause of ``ORPHAN_S`` or less
keeps its records. A process that starts after the owner died waits ``ORPHAN_S`` from its first look: a dead
owner's attempts keep their reservations a little longer, which holds budget back and never lets a call through.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HEARTBEAT_S = 2.0
ORPHAN_S = 15 * HEARTBEAT_S  # a heartbeat seen unchanged this long here: its owner is gone
FORGET_S = 3600.0  # a heartbeat seen unchanged this long, owning no record any more, is deleted


class OwnerWatch:
    """First sighting, on this process's monotonic clock, of each owner's heartbeat revision."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._seen: dict[str, tuple[int, float]] = {}

    def unchanged_for(self, owner: str, revision: int) -> float:
        """Seconds this process has seen the owner's heartbeat at ``revision`` (0.0 the first time)."""
        now = self.monotonic()
        seen = self._seen.get(owner)
        if seen is None or seen[0] != revision:
            self._seen[owner] = (revision, now)
            return 0.0
        return now - seen[1]

    def gone(self, owner: str, revision: int | None) -> bool:
        """True when the heartbeat is deleted (``revision`` None) or seen unchanged for ``ORPHAN_S``."""
        if revision is None:
            self._seen.pop(owner, None)
            return True
        return self.unchanged_for(owner, revision) >= ORPHAN_S

    def forget(self, owner: str) -> None:
        self._seen.pop(owner, None)

"""Ends of attempts the bus did not take, kept by the process that knows them and written when it is back.

An attempt's end (its cost or its generation id) that could not be written through a retry stays here, and
its attempt stays live (no scan charges it as cut off, at its worst case), until the end is written or
``openrouter.reconcile_max_s`` passes: then the scan takes it, with what its record says.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

EndFn = Callable[..., Awaitable[object]]  # Reconciler.end(aid, keys, **end)


class LateEnds:
    def __init__(
        self,
        end: EndFn,
        *,
        live: set[str],
        counts: Counter[str],
        monotonic: Callable[[], float],
        max_s: float,
    ) -> None:
        self.end = end
        self.live = live  # the reconciler's attempts in flight
        self.counts = counts
        self.monotonic = monotonic
        self.max_s = max_s
        self.pending: dict[str, tuple[tuple[str, ...], dict[str, Any], float]] = {}  # keys, end's arguments, since

    def __bool__(self) -> bool:
        return bool(self.pending)

    def keep(self, aid: str, keys: tuple[str, ...], end: dict[str, Any]) -> None:
        self.pending[aid] = (keys, end, self.monotonic())

    async def write(self) -> None:
        """Each end kept, tried again; one that fails for ``reconcile_max_s`` is given up to the scan (its record
        then says what the bus took: a generation id to ask about, or the worst case)."""
        for aid, (keys, end, since) in list(self.pending.items()):
            try:
                await self.end(aid, keys, **end)
            except Exception as exc:  # noqa: BLE001 - the bus still away: kept for the next pass
                if self.monotonic() - since < self.max_s:
                    self.live.add(aid)
                    log.debug("attempt %s: end not written yet: %s", aid, type(exc).__name__)
                    continue
                log.warning("attempt %s: its end could not be written: left to the scan", aid)
                self.live.discard(aid)
                self.counts["end_given_up"] += 1
            else:
                self.counts["ended_late"] += 1
            self.pending.pop(aid, None)

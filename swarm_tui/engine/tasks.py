"""Stopping a component's background tasks.

Every long-lived part (the spend guard's loops, the RAM sampler, the reconciler, the conductor) ends its
background work the same way on ``stop()``: cancel each task, then wait for each to finish, swallowing the
``CancelledError`` that a cancelled task raises and any error it died of earlier (that error was logged, or is
of no use, when the component is going away). Cancelling all before awaiting any lets the tasks unwind at the
same time instead of one after the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

AGAIN_AFTER_S = 2.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None], *, again_after_s: float = AGAIN_AFTER_S) -> None:
    """Cancel every task given (None is skipped: a task that was never started), then wait for them all.

    A task still running ``again_after_s`` after its cancel is cancelled again, until it ends: on Python 3.11
    ``asyncio.wait_for`` returns a result that completes together with the cancel and drops the cancel, so a loop
    built on it goes on as if never told to stop (a reconciler's stop hung 1 run in 3 that way)."""
    started = [t for t in tasks if t is not None]
    for t in started:
        t.cancel()
    pending = {t for t in started if not t.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=again_after_s)
        for t in pending:
            t.cancel()
    for t in started:
        if not t.cancelled():
            t.exception()  # retrieved: an error it died of earlier was logged, or is of no use now

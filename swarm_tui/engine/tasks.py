"""Stopping a component's background tasks.

Every long-lived part (the spend guard's loops, the RAM sampler, the reconciler, the conductor) ends its
background work the same way on ``stop()``: cancel each task, then wait for each to finish, swallowing the
``CancelledError`` that a cancelled task raises and any error it died of earlier (that error was logged, or is
of no use, when the component is going away). Cancelling all before awaiting any lets the tasks unwind at the
same time instead of one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task given (None is skipped: a task that was never started), then await each one."""
    started = [t for t in tasks if t is not None]
    for t in started:
        t.cancel()
    for t in started:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t

"""The one way tests wait: poll a condition until it holds or a generous timeout says what did not happen.

Generous because CI machines are shared and slow; a passing test never waits longer than its condition takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.css.query import QueryError

# What a condition may raise while what it looks at has not arrived yet: a missing key, row or widget.
NOT_YET: tuple[type[BaseException], ...] = (LookupError, QueryError)


async def until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until pred() is truthy; return its value."""
    end = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except NOT_YET:
            v = None
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def timed(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> float:
    """Like ``until``, returning the seconds it took."""
    t0 = time.monotonic()
    await until(pred, timeout, what)
    return time.monotonic() - t0


async def until_async(fn: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll an async condition until it is truthy; return its value."""
    end = time.monotonic() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class LoopHeld:
    """``async with LoopHeld() as held``: ``held.worst`` is the longest the event loop was held in one piece while
    the block ran (a ticker every 5 ms, started and settled before the block)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.worst, last = max(self.worst, now - last), now

    async def __aenter__(self) -> LoopHeld:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.02)
        self.worst = 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        assert self._task is not None
        await self._task

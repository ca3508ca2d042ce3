"""Start parts in order; stop exactly the parts that started, in reverse.

The engine (follower, control server, info subscription, components, the bus) and the standalone worker (bus,
guards, pool) share this one rule. A start that fails half-way leaves the parts before it recorded, so the
owner's ``stop()`` (in its ``finally``) undoes exactly those: a part that never started is never stopped. Each
stop is bounded, so one hung part cannot hold the others (or the embedded NATS server) up, and a failing stop
is logged, never raised, because the parts after it must still stop. ``stop()`` is idempotent.

``cancel_and_wait`` is how every long-lived part (the spend guard's loops, the RAM sampler, the reconciler, the
conductor) ends its background work on ``stop()``: cancel each task, then wait for each to finish, swallowing
the ``CancelledError`` a cancelled task raises and any error it died of earlier (that error was logged, or is of
no use, when the component is going away). Cancelling all before awaiting any lets the tasks unwind at the same
time instead of one after the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0  # per part: long enough for a pool to hand back its jobs, short enough to quit
CANCEL_GRACE_S = 5.0  # after the bound: how long a cancelled stop may take to clean up

StopFn = Callable[[], Awaitable[object]]
T = TypeVar("T")

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


async def within(aw: Awaitable[T], seconds: float | None) -> T:
    """``await aw``, raising TimeoutError after ``seconds`` (None: no limit): ``asyncio.wait_for`` without its
    Python 3.11 flaw. There, a cancel that lands as the awaited thing completes is dropped and its result
    returned (gh-86296), so a cancelled worker read on (and was billed for) its whole stream: 1 CI run in
    ~40. ``asyncio.timeout`` awaits in the calling task itself, so a cancel always reaches the caller."""
    async with asyncio.timeout(seconds):
        return await aw


class Part(Protocol):
    """Anything with a name and async ``start``/``stop`` (every engine component)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Stopped(RuntimeError):
    """A part was asked to start after (or finished starting while) its lifecycle stopped."""


@dataclass(frozen=True)
class _Running:
    name: str
    stop: StopFn
    timeout_s: float | None


class Lifecycle:
    def __init__(self, owner: str, *, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        self.owner = owner  # for log lines: "engine", "worker"
        self.cancel_grace_s = cancel_grace_s
        self._running: list[_Running] = []
        self._stopping = False
        self._stragglers: set[asyncio.Future[object]] = set()  # stops that outlived their bound, kept referenced

    @property
    def started(self) -> list[str]:
        """The names of the running parts, in start order."""
        return [r.name for r in self._running]

    @property
    def stopped(self) -> bool:
        return self._stopping

    def adopt(self, name: str, stop: StopFn, *, timeout_s: float | None = STOP_TIMEOUT_S) -> None:
        """Record a part started by someone else (a connected bus handed in), or one whose ``stop`` is safe
        whatever its start got to (an engine with its own lifecycle): it is stopped with the others."""
        if self._stopping:
            raise Stopped(f"{self.owner} is stopped: {name} was not recorded")
        self._running.append(_Running(name, stop, timeout_s))

    async def start(
        self,
        name: str,
        start: Callable[[], Awaitable[object]],
        stop: StopFn,
        *,
        timeout_s: float | None = STOP_TIMEOUT_S,
    ) -> None:
        """Run ``start``; once it returns, ``stop`` is owed. An error propagates and nothing is recorded.

        ``timeout_s`` bounds the stop (None: unbounded, only for a part whose stop bounds its own steps)."""
        if self._stopping:
            raise Stopped(f"{self.owner} is stopped: {name} not started")
        await start()
        running = _Running(name, stop, timeout_s)
        if self._stopping:  # stop() ran while we were starting: undo this part too, then say so
            await self._stop_one(running)
            raise Stopped(f"{self.owner} was stopped while {name} started")
        self._running.append(running)

    async def start_part(self, part: Part, *, timeout_s: float | None = STOP_TIMEOUT_S) -> None:
        await self.start(part.name, part.start, part.stop, timeout_s=timeout_s)

    async def stop(self) -> None:
        """Stop what started, newest first. Never raises for a part's failure; a second call does nothing."""
        if self._stopping:
            return
        self._stopping = True
        while self._running:
            await self._stop_one(self._running.pop())

    async def _stop_one(self, part: _Running) -> None:
        # A task, not wait_for: wait_for waits for a cancelled stop to finish, so a stop that swallows the
        # cancellation would hang the whole shutdown.
        async def run_stop() -> object:  # a coroutine for create_task: stop functions are any awaitable
            return await part.stop()

        task: asyncio.Future[object] = asyncio.create_task(run_stop(), name=f"stop-{part.name}")
        try:
            done, _ = await asyncio.wait({task}, timeout=part.timeout_s)
        except asyncio.CancelledError:  # our caller gave up (its own bound): do not leave the stop behind
            task.cancel()
            raise
        if not done:
            # Over its bound: cancel the stop and give the cancellation a short grace to run its cleanup (a pool
            # cancelled here still stores a job's last word and acks it before the bus closes), then go on.
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=self.cancel_grace_s)
            if not done:
                self._stragglers.add(task)
                task.add_done_callback(self._forget)
                log.error(
                    "%s: stopping %s took over %.1f s; going on without it",
                    self.owner,
                    part.name,
                    (part.timeout_s or 0) + self.cancel_grace_s,
                )
                return
            log.warning("%s: stopping %s took over %.1f s; cancelled", self.owner, part.name, part.timeout_s)
            if task.cancelled():
                return
        try:
            task.result()
        except (Exception, asyncio.CancelledError):  # a failing stop is logged: the parts after it still stop
            log.exception("%s: stopping %s failed", self.owner, part.name)

    def _forget(self, task: asyncio.Future[object]) -> None:
        """A straggler ended at last: drop it, and read its outcome so asyncio does not warn about it."""
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()

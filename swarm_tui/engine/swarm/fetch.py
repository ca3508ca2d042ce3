"""The pool's side of the work queue: its pull subscription, the pull request waited on, and the held jobs.

A pool pulls only as many jobs as it has free slots. A job delivered beyond them (the scale went down during a
long pull), or parked by nats-py after a pull gave up, is held: heartbeated with ``in_progress`` so JetStream
does not hand it to another worker after ``ack_wait``, and started first when a slot frees.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping

from nats.aio.msg import Msg as NatsMsg
from nats.js.client import JetStreamContext

from swarm_tui.engine.bus.jobs import JobQueue
from swarm_tui.engine.bus.nats_compat import take_parked
from swarm_tui.engine.swarm.run import Run

FETCH_WAIT_S = 0.5
# With no job for IDLE_AFTER_S the pull request lasts FETCH_IDLE_WAIT_S: a job still arrives at once (the pull is
# a long poll, answered by the server the moment a job is stored), but an idle app asks nats-server 60x less
# often (its idle CPU: docs/performance.md). A reconnect, or a new leader of the work queue's consumer (a
# cluster's failover: pull requests die with the old leader), starts a new pull at once; a job delivered beyond
# the slots free by then (the scale went down during the wait) is held, not started.
FETCH_IDLE_WAIT_S = 30.0
IDLE_AFTER_S = 10.0


class JobFetch:
    """One lane's pull subscription (``cloud`` or ``local``: bus/subjects.py), its pull and its held jobs."""

    def __init__(self, counts: Counter[str], lane: str = "cloud") -> None:
        self.counts = counts
        self.lane = lane
        self.psub: JetStreamContext.PullSubscription | None = None
        self.pending: asyncio.Task[list[NatsMsg]] | None = None  # the pull waited on now (a reconnect cancels it)
        self.held: list[NatsMsg] = []  # jobs delivered beyond our free slots: heartbeated, started first

    async def bind(self, jobs: JobQueue) -> None:
        self.psub = await jobs.bind_pull(self.lane)

    async def unbind(self) -> None:
        if self.psub is not None:
            with contextlib.suppress(Exception):  # the bus is gone: the server drops the interest with it
                await self.psub.unsubscribe()
            self.psub = None

    def repull(self) -> None:
        """The pull request waited on is gone on the server's side: pull again now, not at its expiry."""
        fetch = self.pending
        if fetch is not None and not fetch.done():
            fetch.cancel()

    async def pull(self, n: int, *, idle: bool) -> list[NatsMsg]:
        """Up to ``n`` jobs; nats-py's TimeoutError when none came, CancelledError when ``repull`` cut it."""
        assert self.psub is not None
        fetch = self.pending = asyncio.create_task(
            self.psub.fetch(n, timeout=FETCH_IDLE_WAIT_S if idle else FETCH_WAIT_S), name="pool-pull"
        )
        try:
            return await fetch
        finally:
            self.pending = None

    async def drain_late(self) -> None:
        """Take jobs that arrived after a fetch gave up (nats-py parks them in the pull subscription's queue,
        where nobody would heartbeat them and JetStream would hand them to another worker after ack_wait):
        hold them, say they are in progress, and start them first when a slot frees."""
        for m in take_parked(self.psub):
            if m.headers and m.headers.get("Status"):
                continue  # a status message of an earlier pull request
            await self.hold(m)
            self.counts["late_delivery"] += 1

    async def hand_back(self, delay: float) -> None:
        """On stop: the held jobs, and those delivered to the last pull after it gave up, redelivered soon."""
        with contextlib.suppress(Exception):  # the bus is gone: JetStream redelivers them after ack_wait
            await self.drain_late()
        held, self.held = self.held, []
        for m in held:
            with contextlib.suppress(Exception):  # as above: redelivered after ack_wait
                await m.nak(delay=delay)

    async def hold(self, m: NatsMsg) -> None:
        """A job with no free slot: heartbeated (``in_progress``) and started first when a slot frees."""
        with contextlib.suppress(Exception):  # the bus is away: the heartbeat loop says it again
            await m.in_progress()
        self.held.append(m)


async def heartbeat_loop(runs: Mapping[str, Run], fetches: Iterable[JobFetch], ack_wait_s: float) -> None:
    """Say every running job (not acked yet) and every held one is in progress, well within ack_wait."""
    every = max(0.5, min(10.0, ack_wait_s / 3))
    while True:
        await asyncio.sleep(every)
        for m in [r.msg for r in runs.values() if not r.acked] + [m for f in fetches for m in f.held]:
            with contextlib.suppress(Exception):  # the bus is away: the next beat says it again
                await m.in_progress()

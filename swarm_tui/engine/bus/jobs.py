"""The job queue as the swarm sees it: the pool's pull consumer and the few stream reads the swarm needs.

The pool, the controller and the max-deliveries handler ask this small API rather than the bus's JetStream
context, so the bus decides which context (and which timeout) serves each call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js.errors import NotFoundError

from swarm_tui.engine.bus import subjects as S

if TYPE_CHECKING:
    from nats.js.api import RawStreamMsg
    from nats.js.client import JetStreamContext


class JobQueue:
    """``SWARM_JOBS`` and its durable consumers (one per lane), over a JetStream context the bus hands in per call."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def bind_pull(self, lane: str) -> JetStreamContext.PullSubscription:
        """Bind to one lane's durable pull consumer, shared by every pool (the bus creates it in ``setup``)."""
        return await self._js.pull_subscribe_bind(durable=S.jobs_consumer(lane), stream=S.JOBS_STREAM)

    async def get(self, seq: int) -> RawStreamMsg:
        """The job stored at ``seq``; NotFoundError when it is gone (another pool handled it)."""
        return await self._js.get_msg(S.JOBS_STREAM, seq)

    async def delete(self, seq: int) -> None:
        await self._js.delete_msg(S.JOBS_STREAM, seq)

    async def is_queued(self, subject: str) -> bool:
        """Whether a job is still stored on ``subject`` (the last message there); False when none is."""
        try:
            await self._js.get_last_msg(S.JOBS_STREAM, subject)
        except NotFoundError:
            return False
        return True

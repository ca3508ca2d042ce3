"""The bus's event log as a ``LogSource``: JetStream's ``SWARM_EVENTS`` stream, read, never written.

``read`` runs an ordered push consumer from the first sequence wanted and stops at the last (or where the log
ends); ``bounds`` is the stream's state with the first and last events' stored times; ``seq_at`` finds the first
event at or after a time by a binary search over direct reads of single messages (about 17 reads for 100,000).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from nats.errors import Error as NatsError
from nats.js import api as jsapi
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.history.source import Bounds, Stored

_END = object()
# A direct read's stored time is cut to the microsecond, a consumer's rounded to it: the same event's two times may
# differ by one microsecond, so "at or after t" allows two.
_TIME_SLACK = 2e-6
READ_IDLE_S = 10.0  # a read that waits this long for its next event gives up (JetStream's own requests: 5 s)


class StreamBus(Protocol):
    """What the log needs of the bus (``Bus``)."""

    @property
    def jetstream(self) -> JetStreamContext: ...


class BusLog:
    """The event stream of a connected bus."""

    def __init__(self, bus: StreamBus) -> None:
        self.bus = bus

    async def bounds(self) -> Bounds:
        js = self.bus.jetstream
        st = (await js.stream_info(S.EVENTS_STREAM)).state
        if not st.messages:
            return Bounds(0, 0, 0.0, 0.0, 0, st.bytes or 0)
        first = await self._at_or_after(st.first_seq)
        last = await self._get(st.last_seq)
        first_time = first.time if first is not None else 0.0
        last_time = last.time if last is not None else first_time
        return Bounds(st.first_seq, st.last_seq, first_time, last_time, st.messages, st.bytes)

    async def identity(self) -> str:
        """What tells this stream from another one of the same name (its creation time): checkpoints are kept
        under it, so a stream deleted and made again never continues the old one's."""
        info = await self.bus.jetstream.stream_info(S.EVENTS_STREAM)
        created = info.created
        return f"{created.timestamp():.6f}" if created is not None else f"first-{info.state.first_seq}"

    async def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        start_seq = max(1, start_seq)
        if end_seq < start_seq:
            return
        st = (await self.bus.jetstream.stream_info(S.EVENTS_STREAM)).state
        if not st.messages or start_seq > st.last_seq:
            return
        end_seq = min(end_seq, st.last_seq)
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            queue.put_nowait(Stored(meta.sequence.stream, meta.timestamp.timestamp(), msg.subject, msg.data))
            if meta.sequence.stream >= end_seq or meta.num_pending == 0:
                queue.put_nowait(_END)

        config = jsapi.ConsumerConfig(deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
        sub = await self.bus.jetstream.subscribe(
            S.EVENTS_ALL, cb=on_msg, ordered_consumer=True, config=config, stream=S.EVENTS_STREAM
        )
        try:
            while True:
                try:  # a bus that stops answering mid-read (the server gone) ends the read, never hangs it
                    item = await asyncio.wait_for(queue.get(), READ_IDLE_S)
                except TimeoutError:
                    raise SwarmError(f"the bus's log stopped sending events (none for {READ_IDLE_S:.0f} s)") from None
                if item is _END:
                    return
                if item.seq > end_seq:
                    return
                yield item
        finally:
            try:
                await sub.unsubscribe()
            except NatsError:  # the connection closing: the subscription ends with it
                pass

    async def seq_at(self, t: float) -> int:
        t -= _TIME_SLACK
        b = await self.bounds()
        if b.empty or t > b.last_time:
            return b.last_seq + 1
        if t <= b.first_time:
            return b.first_seq
        lo, hi = b.first_seq, b.last_seq  # the answer is in (lo, hi]: lo's time < t <= hi's time
        while hi - lo > 1:
            mid = (lo + hi) // 2
            got = await self._at_or_after(mid)
            if got is None or got.seq > hi:
                hi = mid
                continue
            if got.time < t:
                lo = got.seq
            else:
                hi = got.seq
        return hi

    async def _get(self, seq: int) -> Stored | None:
        try:
            raw = await self.bus.jetstream.get_msg(S.EVENTS_STREAM, seq=seq)
        except NotFoundError:
            return None
        return _stored(raw)

    async def _at_or_after(self, seq: int) -> Stored | None:
        """The event at ``seq``, or the first after it when that one was deleted."""
        try:
            raw = await self.bus.jetstream.get_msg(S.EVENTS_STREAM, seq=seq, next=True, subject=S.EVENTS_ALL)
        except NotFoundError:
            return None
        return _stored(raw)


def _stored(raw: jsapi.RawStreamMsg) -> Stored:
    t = raw.time.timestamp() if raw.time is not None else 0.0
    return Stored(raw.seq or 0, t, raw.subject or "", raw.data or b"")

"""The bus's event log as a ``LogSource``: JetStream's ``SWARM_EVENTS`` stream, read, never written.

``read`` runs an ordered push consumer from the first event stored at or after the first sequence wanted (none
when there is none in the range: a deleted tail) and stops at the last (or where the log ends); ``bounds`` is the
stream's state with the first event's stored time and the stream's last time; ``seq_at`` finds the first
event at or after a time by a binary search over direct reads of single messages (about 17 reads for 100,000).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from nats.errors import Error as NatsError
from nats.js import api as jsapi
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.nats_compat import stream_info_doc
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.history.source import Bounds, Stored
from swarm_tui.engine.lifecycle import within

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
        """The stream's extent. Its last time is the stream's own ``last_ts`` (JetStream keeps it, as it keeps
        ``last_seq``, when the newest message is deleted); the first time is the first stored event's."""
        doc = await stream_info_doc(self.bus.jetstream, S.EVENTS_STREAM)
        st = doc.get("state") or {}
        messages, size = int(st.get("messages") or 0), int(st.get("bytes") or 0)
        if not messages:
            return Bounds(0, 0, 0.0, 0.0, 0, size)
        first_seq, last_seq = int(st.get("first_seq") or 0), int(st.get("last_seq") or 0)
        first = await self._at_or_after(first_seq)
        first_time = first.time if first is not None else rfc3339(st.get("first_ts"))
        last_time = rfc3339(st.get("last_ts"))
        if not last_time:  # a server that does not say: the newest stored event's
            last = await self._get(last_seq)
            last_time = last.time if last is not None else first_time
        return Bounds(first_seq, last_seq, first_time, max(first_time, last_time), messages, size)

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
        first = await self._at_or_after(start_seq)  # none stored from there (deleted to the end): no consumer waits
        if first is None or first.seq > end_seq:
            return
        start_seq = first.seq
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
                if (
                    not queue.empty()
                ):  # what has arrived is taken at once (a timer per event cost 28 µs: 0.28 s a 10k fold)
                    item = queue.get_nowait()
                else:
                    try:  # a bus that stops answering mid-read (the server gone) ends the read, never hangs it
                        item = await within(queue.get(), READ_IDLE_S)
                    except TimeoutError:
                        raise SwarmError(
                            f"the bus's log stopped sending events (none for {READ_IDLE_S:.0f} s)"
                        ) from None
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


def rfc3339(text: object) -> float:
    """A JetStream time (``2026-12-05T11:09:51.123456789Z``) as UNIX time, cut to the microsecond as a direct
    read's is; 0.0 when absent or not such a time (JetStream's zero time, ``0001-01-01T00:00:00Z``, included)."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return 0.0
    head, _, frac = text[:-1].partition(".")
    try:
        t = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    except (ValueError, OverflowError):
        return 0.0
    digits = (frac + "000000")[:6]
    return max(0.0, t + int(digits) / 1e6) if digits.isdigit() else 0.0


def _stored(raw: jsapi.RawStreamMsg) -> Stored:
    t = raw.time.timestamp() if raw.time is not None else 0.0
    return Stored(raw.seq or 0, t, raw.subject or "", raw.data or b"")

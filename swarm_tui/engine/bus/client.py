"""The NATS bus: streams, consumers and buckets, publishing, and reading events, over a ``Connection``.

JetStream is the source of truth. Everything here is plain asyncio and nats-py; nothing imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as jsapi
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.connection import Connection
from swarm_tui.engine.bus.follower import EventFollower, EventHandler
from swarm_tui.engine.bus.jobs import JobQueue
from swarm_tui.engine.bus.reasons import reason as _reason
from swarm_tui.engine.bus.topology import ensure_kv, ensure_stream
from swarm_tui.engine.bus.trust import DeadLetters, event_subject, read_event
from swarm_tui.engine.bus.wire import Event, Msg
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import BusError, Denied, TooLarge

log = logging.getLogger(__name__)


MSG_TOO_LARGE = 10054  # JetStream: "message size exceeds maximum allowed" (the stream's max_msg_size)
NO_STORAGE = 10047  # JetStream: "insufficient storage resources available" (max_bytes over what the store holds)


class Bus(Connection):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.dead = DeadLetters()
        self._kv: dict[str, KeyValue] = {}
        self._fast: JetStreamContext | None = None
        self._fast_nc: NATS | None = None
        # Whether setup brings an existing event stream to log.max_age_days/max_bytes: only the engine's start
        # does; any other process creates a missing stream with them but leaves an existing one's limits alone
        # (a one-shot command from a laptop with the defaults must not cut a hub's log: JetStream drops at once).
        self.log_limits = False

    async def connect(self, *, setup: bool = True, connect_timeout: float = 5.0, log_limits: bool = False) -> Bus:
        """Connect; with ``setup``, create what is missing (``log_limits``: the engine's start, see above)."""
        self.log_limits = log_limits
        await self.open(connect_timeout)
        if self.leaf:  # the hub's engine owns the streams; wait for the link that reaches them
            await self._await_hub(connect_timeout * 2)
        elif setup:
            await self.setup()
        return self

    # ------------------------------------------------------------------ topology
    async def setup(self, deadline_s: float = 30.0) -> None:
        """Create streams, consumers and buckets. Idempotent: an existing one is updated to this config (with
        ``nats.replicas``, never fewer replicas than it has: see ``topology``). Retried while JetStream is not
        ready yet: a cluster that has just started has no meta leader for a few seconds (requests time out or
        answer 503, "JetStream system temporarily unavailable"); a refused replica count is not retried."""
        await retrying(self._setup_once, deadline_s, passthrough=(BusError,))

    async def _setup_once(self) -> None:
        denied = len(self.denied)
        try:
            await self._create_all()
        except Exception as exc:  # re-raised: as Denied when the server refused this login, else as it came
            if len(self.denied) > denied:  # a login without the rights to create: no use asking again
                raise Denied(f"NATS refused to set up the swarm's streams: {self.denied[-1]}") from None
            if isinstance(exc, APIError) and exc.err_code == NO_STORAGE:  # asking again cannot make room
                raise BusError(self._no_room(), code=2) from None
            raise

    def _no_room(self) -> str:
        """One line for a store too small for the streams: what the event log asks, what else is reserved."""
        log_mib = self.cfg.log.max_bytes / 2**20
        others = 64 + 16 + 16 * len(S.BUCKETS)  # the jobs and dead-letter streams and the buckets (MiB)
        head = f"NATS has no room for the swarm's streams: log.max_bytes = {self.cfg.log.max_bytes} ({log_mib:.0f} MiB)"
        if self.kind == "embedded":
            disk = self.cfg.nats.embedded_disk_mb
            return (
                f"{head} and {others} MiB for the other streams do not fit the embedded server's "
                f"nats.embedded_disk_mb = {disk}: lower log.max_bytes or raise nats.embedded_disk_mb"
            )
        return f"{head}: the server's JetStream store (max_file_store) cannot reserve it: lower log.max_bytes"

    async def _create_all(self) -> None:
        js = self.jetstream
        days = self.cfg.log.max_age_days
        await self._ensure_stream(
            jsapi.StreamConfig(
                name=S.EVENTS_STREAM,
                subjects=[S.EVENTS_ALL],
                retention=jsapi.RetentionPolicy.LIMITS,
                storage=jsapi.StorageType.FILE,
                max_age=days * 86400.0,
                max_bytes=self.cfg.log.max_bytes,
                max_msg_size=1_048_576,
                duplicate_window=300.0,
                discard=jsapi.DiscardPolicy.OLD,
            )
        )
        await self._ensure_stream(
            jsapi.StreamConfig(
                name=S.JOBS_STREAM,
                subjects=[S.JOBS_ALL],
                retention=jsapi.RetentionPolicy.WORK_QUEUE,
                storage=jsapi.StorageType.FILE,
                max_age=7 * 86400.0,
                max_bytes=64 * 1024 * 1024,
                max_msg_size=1_048_576,
                duplicate_window=600.0,
            )
        )
        await self._ensure_stream(
            jsapi.StreamConfig(
                name=S.DEAD_STREAM,
                subjects=[S.DEAD_ALL],
                retention=jsapi.RetentionPolicy.LIMITS,
                storage=jsapi.StorageType.FILE,
                max_age=7 * 86400.0,
                max_msgs=10_000,
                max_bytes=16 * 1024 * 1024,
                duplicate_window=120.0,
            )
        )
        # the old consumer of every lane overlaps the lanes' own (refused on a work queue): removed; its jobs stay
        # in the stream (a work queue drops a message only when acked) and the lane consumers deliver them
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(S.JOBS_STREAM, S.JOBS_OLD_CONSUMER)
            log.info("work queue: consumer %r replaced by one per lane", S.JOBS_OLD_CONSUMER)
        for lane in S.JOB_LANES:
            await js.add_consumer(
                S.JOBS_STREAM,
                jsapi.ConsumerConfig(
                    durable_name=S.jobs_consumer(lane),
                    ack_policy=jsapi.AckPolicy.EXPLICIT,
                    ack_wait=self.cfg.swarm.ack_wait_s,
                    max_deliver=5,
                    max_ack_pending=1000,
                    filter_subject=S.jobs_of(lane),
                    deliver_policy=jsapi.DeliverPolicy.ALL,
                    # replicas 0: the consumer follows its stream's (a work queue led by the stream's leader)
                ),
            )
        for bucket, ttl in S.BUCKETS.items():
            self._kv[bucket] = await ensure_kv(js, bucket, ttl, self.cfg.nats.replicas)

    async def _ensure_stream(self, cfg: jsapi.StreamConfig) -> None:
        keep = not self.log_limits and cfg.name == S.EVENTS_STREAM
        await ensure_stream(self.jetstream, cfg, self.cfg.nats.replicas, keep_limits=keep)

    async def kv(self, bucket: str) -> KeyValue:
        if bucket not in self._kv:
            self._kv[bucket] = await self.jetstream.key_value(bucket)
        return self._kv[bucket]

    @property
    def lookup(self) -> JetStreamContext:
        """A context with a short timeout for lookups: a request lost in a reconnect is asked again soon."""
        if self.nc is None:
            raise BusError("not connected to NATS")
        if self._fast is None or self._fast_nc is not self.nc:
            self._fast, self._fast_nc = self.nc.jetstream(timeout=1.0), self.nc
        return self._fast

    @property
    def jobs(self) -> JobQueue:
        """The job queue (the pool's consumer, the stream reads the swarm needs) on the current connection."""
        return JobQueue(self.jetstream)

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context of the current connection (5 s timeout); BusError when not connected."""
        if self.js is None:
            raise BusError("not connected to NATS")
        return self.js

    # ------------------------------------------------------------------ publishing
    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str | None = None, deadline_s: float = 30.0
    ) -> jsapi.PubAck:
        """Publish to a stream, retrying through an outage with the same Nats-Msg-Id so it is stored once.

        A message too large for the server or the stream fails at once: sending it again cannot succeed."""
        headers = {"Nats-Msg-Id": msg_id or uuid.uuid4().hex}
        delay = 0.05
        end = time.monotonic() + deadline_s
        while True:
            try:
                return await self.jetstream.publish(subject, payload, headers=headers, timeout=2.0)
            except MaxPayloadError:  # nats-py refuses it before sending
                limit = self.nc.max_payload if self.nc is not None else 0
                raise TooLarge(_too_large(subject, len(payload), limit)) from None
            except (TimeoutError, NatsTimeout, NoRespondersError, ConnectionError) as exc:
                if time.monotonic() > end:
                    raise BusError(f"NATS did not store a message on {subject} in time ({_reason(exc)})") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception as exc:  # noqa: BLE001 - JetStream refusals (503, no leader yet), closed or reconnecting
                if isinstance(exc, APIError) and exc.err_code == MSG_TOO_LARGE:
                    raise TooLarge(_too_large(subject, len(payload), 0)) from None
                if time.monotonic() > end or self.nc is None or self.nc.is_closed:
                    raise BusError(f"NATS did not store a message on {subject}: {_reason(exc)}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def publish_event(self, m: Msg, *, msg_id: str | None = None) -> jsapi.PubAck:
        return await self.publish(event_subject(m), m.to_bytes(), msg_id=msg_id)

    async def last_event(self, subject: str, *, deadline_s: float = 20.0) -> Event | None:
        """The newest event on an exact subject, or None (also when it was refused: ``trust``). Retries through a
        short outage."""
        delay, end = 0.05, time.monotonic() + deadline_s
        while True:
            try:
                raw = await self.lookup.get_last_msg(S.EVENTS_STREAM, subject)
                break
            except NotFoundError:
                return None
            except (NatsTimeout, NoRespondersError, TimeoutError, ConnectionError) as exc:
                # a request lost with a dead connection: ask again on the new one instead of failing the job
                if time.monotonic() > end:
                    raise BusError(f"NATS did not answer a lookup of {subject}: {_reason(exc)}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        stored_at = raw.time.timestamp() if raw.time is not None else None
        return await read_event(self, raw.subject or subject, raw.data or b"", stored_at, f"evt-{raw.seq}")

    # ------------------------------------------------------------------ reading the log
    async def replay(self, handler: EventHandler, *, follow: bool = False, start_seq: int = 0) -> EventFollower:
        """Feed every event in the log to ``handler(subject, msg, seq)``; return once caught up.

        With ``follow`` the subscription stays open and new events keep coming (re-created after a reconnect
        from the last sequence seen). Malformed events go to the dead letters, never to the handler.
        """
        f = EventFollower(self, handler)
        await f.start(start_seq=start_seq)
        await f.caught_up.wait()
        if not follow:
            await f.stop()
        return f


def _too_large(subject: str, size: int, limit: int) -> str:
    over = f"NATS's limit of {limit:,} bytes" if limit else "the stream's message size limit"
    return f"a message of {size:,} bytes on {subject} is over {over}: not sent"


async def retrying(
    op: Callable[[], Awaitable[Any]],
    deadline_s: float = 30.0,
    *,
    passthrough: tuple[type[BaseException], ...] = (),
    on_error: Callable[[], None] | None = None,
) -> Any:
    """``op()`` retried through a bus outage (backoff 0.1 s doubling to 2 s) until ``deadline_s``; errors of the
    ``passthrough`` types are raised at once. For KV operations that must outlive a reconnect."""
    end = time.monotonic() + deadline_s
    delay = 0.1
    while True:
        try:
            return await op()
        except passthrough:
            raise
        except Exception:  # re-raised at the deadline: connection closed or reconnecting errors from nats-py
            if time.monotonic() > end:
                raise
            if on_error is not None:
                on_error()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

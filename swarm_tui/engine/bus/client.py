"""The NATS bus: connection (remote or embedded), streams/consumers/buckets, publishing and reading events.

JetStream is the source of truth. Everything here is plain asyncio and nats-py; nothing imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as jsapi
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.embedded import EmbeddedLease
from swarm_tui.engine.bus.follower import EventFollower as EventFollower
from swarm_tui.engine.bus.follower import EventHandler
from swarm_tui.engine.bus.jobs import JobQueue
from swarm_tui.engine.bus.login import auth_options
from swarm_tui.engine.bus.pin import NotThisServer, Pin, lose, revive
from swarm_tui.engine.bus.reasons import reason as _reason
from swarm_tui.engine.bus.reasons import safe_url
from swarm_tui.engine.bus.topology import ensure_kv, ensure_stream
from swarm_tui.engine.bus.trust import DeadLetters as DeadLetters
from swarm_tui.engine.bus.trust import event_subject as event_subject
from swarm_tui.engine.bus.trust import read_event
from swarm_tui.engine.bus.where import resolve
from swarm_tui.engine.bus.wire import Event, Msg
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import BusError, TooLarge

log = logging.getLogger(__name__)


MSG_TOO_LARGE = 10054  # JetStream: "message size exceeds maximum allowed" (the stream's max_msg_size)
StateCallback = Callable[[str], Awaitable[None] | None]


class Bus:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.lease: EmbeddedLease | None = None
        self.pin: Pin | None = None  # the embedded server: its token, and the check that we reached it
        self.url = ""
        self.kind = ""  # "embedded" (we run it), "embedded-shared" (another process runs it), "remote"
        self.why = ""  # why this bus (where.py): "nats.url is ...", "nats.probe_default: ...", the embedded one
        self.state = "disconnected"
        self.warnings: list[str] = []
        self.dead = DeadLetters()
        self.denied: list[str] = []  # permissions violations the server reported (contrib/nats/hub.conf)
        self._state_cbs: list[StateCallback] = []
        self._kv: dict[str, KeyValue] = {}
        self._fast: JetStreamContext | None = None
        self._fast_nc: NATS | None = None
        # the laptop as a leaf node: our embedded server links to a hub, whose JetStream (and engine) we use
        self.leaf = bool(cfg.nats.leaf_url) and not cfg.nats.url

    # ------------------------------------------------------------------ connection
    def on_state(self, cb: StateCallback) -> None:
        self._state_cbs.append(cb)

    async def set_state(self, state: str) -> None:
        self.state = state
        for cb in list(self._state_cbs):
            try:
                res = cb(state)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # noqa: BLE001
                log.exception("bus state callback failed")

    async def _resolve(self) -> str:
        w = await resolve(self.cfg, leaf=self.leaf)
        self.kind, self.why, self.lease, self.pin = w.kind, w.why, w.lease, w.pin
        return w.url

    def _check_exposure(self, url: str, authed: bool) -> None:
        hosts = [urlparse(u.strip()).hostname or "" for u in url.split(",")]
        for h in hosts:
            if h in ("localhost", ""):
                continue
            try:
                if ipaddress.ip_address(h).is_loopback:
                    continue
            except ValueError:
                pass
            if not authed:
                msg = (
                    f"the bus at {h} is reachable beyond loopback and no NATS authentication is configured: "
                    "anyone who can reach it can read tasks and control the swarm (see docs/security.md)"
                )
                self.warnings.append(msg)
                log.warning(msg)
            return

    async def connect(self, *, setup: bool = True, connect_timeout: float = 5.0) -> Bus:
        opts = auth_options(self.cfg)
        try:
            url = await self._resolve()
        except OSError as exc:
            raise BusError(f"cannot start the embedded NATS server: {exc}") from None
        self.url = url
        if self.pin is not None:  # its token alone, asked for once the server proved to be it
            opts = {"token": self.pin.token}
        opts |= {"reconnect_time_wait": 0.25, "connect_timeout": connect_timeout}  # seconds (typed int, are float)
        self._check_exposure(url, bool({"token", "user", "user_credentials", "nkeys_seed"} & opts.keys()))

        async def disconnected() -> None:
            if self.state not in ("closed", "lost"):
                await self.set_state("reconnecting")
            await revive(self)  # our embedded server died: start it again before nats-py reconnects

        async def reconnected() -> None:
            await self.set_state("connected")

        auth_failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, NotThisServer):  # nothing was sent to it
                if self.nc is None and not auth_failed.done():
                    auth_failed.set_result(str(exc))
                elif self.nc is not None:
                    lose(self, str(exc))
                return
            text = str(exc).lower()
            if "permissions violation" in text:  # the server dropped what this login may not do
                self._note_denied(str(exc))
                return
            if ("authorization" in text or "authentication" in text) and not auth_failed.done():
                auth_failed.set_result(_reason(exc))
            log.debug("nats: %s", type(exc).__name__)

        async def closed() -> None:
            if self.state != "lost":
                await self.set_state("closed")

        if not await _any_reachable(url, connect_timeout):
            await self.close()
            raise BusError(f"cannot connect to NATS at {safe_url(url)}: nothing answers there")
        nc = NATS()
        if self.pin is not None:
            self.pin.nc = nc
        connecting = asyncio.ensure_future(
            nc.connect(
                servers=[u.strip() for u in url.split(",")],
                name="swarm-tui",
                max_reconnect_attempts=-1,
                # a PING every 20 s, stale at the third unanswered one: a silent dead link is noticed 40-60 s after
                # it died (a closed one at once, by the read error); the server idles more than with 10 s / 3
                ping_interval=20,
                max_outstanding_pings=2,
                allow_reconnect=True,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error_cb,
                closed_cb=closed,
                **opts,
            )
        )
        try:
            # nats-py retries a refused login forever when reconnects are unlimited: stop at the first refusal
            waiters: set[asyncio.Future[Any]] = {connecting, auth_failed}
            await asyncio.wait(waiters, timeout=connect_timeout * 3, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
                reason = auth_failed.result() if auth_failed.done() else "timed out"
                raise BusError(f"cannot connect to NATS at {safe_url(url)}: {reason}")
            connecting.result()
            self.nc = nc
        except BusError:
            await self.close()
            raise
        except (TimeoutError, NoServersError, OSError) as exc:
            await self.close()
            raise BusError(f"cannot connect to NATS at {safe_url(url)}: {_reason(exc)}") from None
        except Exception as exc:  # nats raises auth errors as plain errors
            await self.close()
            raise BusError(f"cannot connect to NATS at {safe_url(url)}: {_reason(exc)}") from None
        self.js = self.nc.jetstream(timeout=5)
        await self.set_state("connected")
        if self.leaf:  # the hub's engine owns the streams; wait for the link that reaches them
            await self._await_hub(connect_timeout * 2)
        elif setup:
            await self.setup()
        return self

    def _note_denied(self, text: str) -> None:
        """Each distinct refusal logged once (a worker's login runs into them only where its rights end)."""
        line = text.removeprefix("nats: ")[:200]
        if line not in self.denied and len(self.denied) < 50:
            self.denied.append(line)
            log.warning("NATS refused this login: %s", line)

    async def _await_hub(self, timeout: float) -> None:
        """A leaf's JetStream is the hub's: ready once ``$JS.API.INFO`` (mapped to the hub's domain) is answered."""
        end = time.monotonic() + timeout
        while True:
            try:
                assert self.nc is not None
                await self.nc.request("$JS.API.INFO", b"", timeout=0.5)
                return
            except Exception as exc:  # noqa: BLE001 - no responders until the leaf link is up
                if time.monotonic() > end:
                    await self.close()
                    hub = safe_url(self.cfg.nats.leaf_url)
                    raise BusError(
                        f"the hub {hub} does not answer over the leaf link ({_reason(exc)}): check nats.leaf_url "
                        f"and nats.leaf_creds, and that the hub runs JetStream with the domain "
                        f"{self.cfg.nats.leaf_domain!r} (nats.leaf_domain; docs/deploy.md)"
                    ) from None
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        """The one shutdown path of the bus: drain the connection, then stop the embedded server if ours."""
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), 3)
            except Exception:  # noqa: BLE001
                with contextlib.suppress(Exception):
                    await nc.close()
        self.state = "closed"
        if self.lease is not None:
            self.lease.stop()
            self.lease = None

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
        except Exception:
            if len(self.denied) > denied:  # a login without the rights to create: no use asking again
                raise BusError(f"NATS refused to set up the swarm's streams: {self.denied[-1]}") from None
            raise

    async def _create_all(self) -> None:
        js = self.jetstream
        days = self.cfg.nats.events_max_age_days
        await self._ensure_stream(
            jsapi.StreamConfig(
                name=S.EVENTS_STREAM,
                subjects=[S.EVENTS_ALL],
                retention=jsapi.RetentionPolicy.LIMITS,
                storage=jsapi.StorageType.FILE,
                max_age=days * 86400.0,
                max_bytes=self.cfg.nats.events_max_mb * 1024 * 1024,
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
        await js.add_consumer(
            S.JOBS_STREAM,
            jsapi.ConsumerConfig(
                durable_name=S.JOBS_CONSUMER,
                ack_policy=jsapi.AckPolicy.EXPLICIT,
                ack_wait=self.cfg.swarm.ack_wait_s,
                max_deliver=5,
                max_ack_pending=1000,
                filter_subject=S.JOBS_ALL,
                deliver_policy=jsapi.DeliverPolicy.ALL,
                # replicas 0: the consumer follows its stream's (a work queue led by the stream's leader)
            ),
        )
        for bucket, ttl in S.BUCKETS.items():
            self._kv[bucket] = await ensure_kv(js, bucket, ttl, self.cfg.nats.replicas)

    async def _ensure_stream(self, cfg: jsapi.StreamConfig) -> None:
        await ensure_stream(self.jetstream, cfg, self.cfg.nats.replicas)

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

    @property
    def _js(self) -> JetStreamContext:
        return self.jetstream

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
            except Exception as exc:  # JetStream refusals (503 without a leader yet), closed/reconnecting errors
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


async def _any_reachable(url: str, timeout: float) -> bool:
    """A quick TCP check: nats-py with unlimited reconnects would otherwise retry an absent server forever."""
    for u in url.split(","):
        p = urlparse(u.strip())
        default = 443 if p.scheme == "wss" else 80 if p.scheme == "ws" else 4222
        try:
            _r, w = await asyncio.wait_for(
                asyncio.open_connection(p.hostname or "127.0.0.1", p.port or default), timeout
            )
        except (TimeoutError, OSError):
            continue
        w.close()
        with contextlib.suppress(Exception):
            await w.wait_closed()
        return True
    return False


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
        except Exception:  # noqa: BLE001 - connection closed or reconnecting errors from nats-py
            if time.monotonic() > end:
                raise
            if on_error is not None:
                on_error()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

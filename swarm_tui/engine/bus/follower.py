"""Reading the event log: an ordered push consumer that replays it from a sequence, then follows it.

Each message passes ``trust.read_event`` first (decoded, on its own subject, not dated from the future): what
does not is set aside as a dead letter and never reaches the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext
from nats.js import api as jsapi

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.nats_compat import answer_flow_control_when_asked
from swarm_tui.engine.bus.reasons import reason as _reason
from swarm_tui.engine.bus.trust import ReadingBus, read_event
from swarm_tui.engine.bus.wire import Event
from swarm_tui.engine.lifecycle import cancel_and_wait
from swarm_tui.engine.states import BusState

log = logging.getLogger(__name__)

EventHandler = Callable[[str, Event, int], None]  # (subject, event, stream sequence)


class FollowedBus(ReadingBus, Protocol):
    """What the follower needs of the bus: its JetStream context, news of its state, what ``read_event`` needs."""

    @property
    def jetstream(self) -> JetStreamContext: ...

    def on_state(self, cb: Callable[[BusState], Awaitable[None]]) -> None: ...


class EventFollower:
    def __init__(self, bus: FollowedBus, handler: EventHandler) -> None:
        self.bus = bus
        self.handler = handler
        self.last_seq = 0
        self.caught_up = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._started = False
        self._stopped = False
        self._target = 0
        self._resubscribing: asyncio.Task[None] | None = None
        self.resubscribe_failures = 0
        bus.on_state(self._on_state)

    @property
    def subscription(self) -> JetStreamContext.PushSubscription | None:
        """The ordered consumer's subscription while there is one (None between a reconnect and its resubscribe)."""
        return self._sub

    async def _on_state(self, state: BusState) -> None:
        if state != "connected" or self._stopped or not self._started:
            return
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the subscription died with the old connection: nothing to end
                await self._sub.unsubscribe()
            self._sub = None
        if self._resubscribing is None or self._resubscribing.done():
            self._resubscribing = asyncio.create_task(self._resubscribe(), name="events-resubscribe")

    async def _resubscribe(self) -> None:
        """Subscribe again from the last sequence seen, until it holds. Right after a reconnect to a cluster
        whose node died, JetStream may have no leader for seconds (timeouts, 503): one try then left the
        follower without a subscription for good, and the engine's state stopped at the kill (the cluster fault
        test caught it: the log held every SpendEntry, the engine's projection only those before the kill)."""
        delay = 0.25
        while not self._stopped and self._sub is None:
            try:
                await self._subscribe()
            except Exception as exc:  # noqa: BLE001 - no leader yet, a timeout: try again
                self.resubscribe_failures += 1
                log.warning("event log subscription failed (%s); retrying in %.2f s", _reason(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def resume(self) -> None:
        """Subscribe again from the last sequence seen, now: a leaf whose hub came back need not wait for the
        ordered consumer to miss two heartbeats (nats-py resets it only then)."""
        await self._on_state("connected")

    async def start(self, start_seq: int = 0) -> None:
        self.last_seq = max(0, start_seq - 1)
        info = await self.bus.jetstream.stream_info(S.EVENTS_STREAM)
        self._target = info.state.last_seq
        if self._target <= self.last_seq or info.state.messages == 0:
            self.caught_up.set()
        await self._subscribe()
        self._started = True

    async def _subscribe(self) -> None:
        """An ordered push consumer from ``last_seq + 1`` (idle CPU: docs/performance.md).

        Its idle heartbeat is 15 s, not nats-py's 5 s: nats-py re-creates the consumer after two heartbeat
        periods without a message or heartbeat, so a consumer lost without a reconnect is replaced 30-60 s
        later (a reconnect re-subscribes at once, ``_on_state``). And its flow control is answered when the
        server asks, not polled every 0.25 s (``nats_compat.answer_flow_control_when_asked``)."""
        js = self.bus.jetstream
        heartbeat_s = 15.0
        if self.last_seq > 0:
            cfg = jsapi.ConsumerConfig(
                deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last_seq + 1
            )
            self._sub = await js.subscribe(
                S.EVENTS_ALL,
                cb=self._on_msg,
                ordered_consumer=True,
                config=cfg,
                stream=S.EVENTS_STREAM,
                idle_heartbeat=heartbeat_s,
            )
        else:
            self._sub = await js.subscribe(
                S.EVENTS_ALL,
                cb=self._on_msg,
                ordered_consumer=True,
                deliver_policy=jsapi.DeliverPolicy.ALL,
                stream=S.EVENTS_STREAM,
                idle_heartbeat=heartbeat_s,
            )
        answer_flow_control_when_asked(self._sub)

    async def _on_msg(self, msg: NatsMsg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        try:
            ev = await read_event(self.bus, msg.subject, msg.data, meta.timestamp.timestamp(), f"evt-{seq}")
            if ev is not None:
                self.handler(msg.subject, ev, seq)
        except Exception:  # logged: neither a reader's nor a handler's bug may stop the log
            log.exception("event on %s not applied", msg.subject[:120])
        finally:  # whatever the last message was, a replay that reached it has caught up
            if meta.num_pending == 0 or seq >= self._target:
                self.caught_up.set()

    async def stop(self) -> None:
        self._stopped = True
        await cancel_and_wait([self._resubscribing])
        if self._sub is not None:
            with contextlib.suppress(Exception):  # a connection closing or gone: the subscription ends with it
                await self._sub.unsubscribe()
            self._sub = None

"""Writing an event: publish it to the log, then apply it to this process's projection at once.

The engine's event follower applies every event when the log delivers it, but that comes a moment later. A
part that acts on its own write (a control request answered with the new state, the conductor approving the
decision it just published) must see the write now, so it records through here: the one place that owns the
"apply my own write now" rule. ``SwarmState.apply`` is idempotent per event id, so the second application
from the log changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from swarm_tui.engine.bus.wire import LogEvent, Msg
from swarm_tui.engine.projection.state import SwarmState


class EventPublisher(Protocol):
    """What the recorder needs from the bus (``Bus.publish_event``)."""

    async def publish_event(self, m: Msg, *, msg_id: str | None = None) -> Any: ...


class Recorder:
    """``await record(ev, msg_id=...)``: publish (deduplicated on the bus by ``msg_id``), then apply."""

    def __init__(self, bus: EventPublisher, state: SwarmState) -> None:
        self.bus = bus
        self.state = state

    async def __call__(self, ev: LogEvent, *, msg_id: str | None = None) -> None:
        await self.bus.publish_event(ev, msg_id=msg_id)
        self.state.apply(ev)

    @asynccontextmanager
    async def around(self, ev: LogEvent, *, msg_id: str | None = None) -> AsyncIterator[None]:
        """Publish now; apply when the block ends without an error. For writes whose other effects (a KV mark,
        a broadcast to the pools) come between the event and the local state change, as they always have."""
        await self.bus.publish_event(ev, msg_id=msg_id)
        yield
        self.state.apply(ev)

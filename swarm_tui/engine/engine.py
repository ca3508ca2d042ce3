"""The engine: the bus, the state projection, control requests and the components, with one shutdown path.

The same engine runs inside the TUI, headless (``swarm-tui run --headless``), and in tests. Components are
plain asyncio objects with ``start()``, ``stop()`` and ``info()``; they learn about the world from events
(``on_event``) and report through the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.msg import Msg as NatsMsg

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus, EventFollower
from swarm_tui.engine.config import Config
from swarm_tui.engine.control_requests import Controls, ControlServer
from swarm_tui.engine.projection import SwarmState

log = logging.getLogger(__name__)

EventListener = Callable[[str, Any, int], None]


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


class Engine:
    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
        demo: bool = False,
        components: list[Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.demo = demo
        self.started_at = clock()
        self.state = SwarmState(session_start=self.started_at, clock=clock)
        self.components: list[Any] = list(components or [])
        self.controls = Controls(bus, self.state, max_scale=cfg["swarm.max_scale"], clock=clock)
        self._server = ControlServer(bus, self.controls)
        self._listeners: list[EventListener] = []
        self._follower: EventFollower | None = None
        self._info_sub: Any = None
        self._stopping = False
        self.host = socket.gethostname()

    def add(self, component: Any) -> Any:
        self.components.append(component)
        return component

    def get(self, name: str) -> Any:
        for c in self.components:
            if getattr(c, "name", "") == name:
                return c
        return None

    def on_event(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _dispatch(self, subject: str, ev: Any, seq: int) -> None:
        self.state.apply(ev, seq)
        for c in self.components:
            handler = getattr(c, "on_event", None)
            if handler is not None:
                try:
                    handler(ev)
                except Exception:  # noqa: BLE001
                    log.exception("%s failed on an event", getattr(c, "name", c))
        for cb in list(self._listeners):
            try:
                cb(subject, ev, seq)
            except Exception:  # noqa: BLE001
                log.exception("event listener failed")

    async def start(self) -> None:
        """Replay the log into the state, then start serving control requests and the components."""
        if self.state.scale is None:
            self.state.scale = self.cfg["swarm.scale"]
        self._follower = await self.bus.replay(self._dispatch, follow=True)
        assert self.bus.nc is not None
        await self._server.start()
        self._info_sub = await self.bus.nc.subscribe(S.ENGINE_INFO, cb=self._on_info)
        for c in self.components:
            await c.start()
        log.info("engine started (bus %s, %d events replayed)", self.bus.kind, self.state.events)

    async def stop(self) -> None:
        """The one shutdown path: components (reverse order), control server, follower, then the bus."""
        if self._stopping:
            return
        self._stopping = True
        for c in reversed(self.components):
            try:
                await asyncio.wait_for(c.stop(), 10)
            except Exception:  # noqa: BLE001
                log.exception("stopping %s failed", getattr(c, "name", c))
        await self._server.stop()
        if self._info_sub is not None:
            with contextlib.suppress(Exception):
                await self._info_sub.unsubscribe()
        if self._follower is not None:
            await self._follower.stop()
        await self.bus.close()

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "engine": {
                "pid": os.getpid(),
                "host": self.host,
                "started_at": self.started_at,
                "demo": self.demo,
                "uptime_s": round(self.clock() - self.started_at, 1),
            },
            "bus": {
                "url": _display_url(self.bus.url),
                "kind": self.bus.kind,
                "state": self.bus.state,
                "malformed": dict(self.bus.dead.counts),
                "warnings": list(self.bus.warnings),
            },
        }
        for c in self.components:
            try:
                out[c.name] = c.info()
            except Exception as exc:  # noqa: BLE001
                out[c.name] = {"error": type(exc).__name__}
        return out

    async def _on_info(self, msg: NatsMsg) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(self.info(), default=str).encode())


def _display_url(url: str) -> str:
    from swarm_tui.engine.bus.client import _safe_url

    return _safe_url(url) if url else ""

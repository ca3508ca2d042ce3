"""The engine: the bus, the state projection, control requests and the components, with one shutdown path.

The same engine runs inside the TUI, headless (``swarm-tui run --headless``), and in tests. Components are
plain asyncio objects with ``start()``, ``stop()`` and ``info()`` (``Component``); those that learn about the
world from events also have ``on_event`` (``EventListener``). They report through the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from nats.aio.msg import Msg as NatsMsg
from nats.errors import Error as NatsError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.follower import EventFollower
from swarm_tui.engine.bus.wire import Event, WorkerEvent
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import Controls, ControlServer
from swarm_tui.engine.info import EngineInfo, InfoError
from swarm_tui.engine.lifecycle import Lifecycle, Part, cancel_and_wait
from swarm_tui.engine.projection.recorder import Recorder
from swarm_tui.engine.projection.state import SwarmState

log = logging.getLogger(__name__)


# The chunk counter's bounds (``_on_chunk``): anyone on the bus may publish a chunk or a worker event.
MAX_FOREIGN = 1000  # other processes' live workers counted at once
MAX_CHUNK_TOKENS = 1_000_000  # one chunk's count taken (a real one carries a flush's worth: tens)
MAX_TOKENS = 10**9  # a worker's sum held under this


def _no(_worker_id: str) -> bool:
    return False


EventCallback = Callable[[str, Event, int], None]


class Component(Part, Protocol):
    """A part the engine starts, stops (newest first) and asks for its info."""

    def info(self) -> Mapping[str, object]:
        """Its own TypedDict from engine/info.py, reported under ``name`` in ``Engine.info()``."""
        ...


@runtime_checkable
class EventListener(Protocol):
    """The optional part of a component that folds in every event of the log, after the projection has."""

    def on_event(self, ev: Event) -> None: ...


C = TypeVar("C", bound=Component)


class Engine:
    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
        demo: bool = False,
        components: list[Component] | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.demo = demo
        self.started_at = clock()
        self.state = SwarmState(session_start=self.started_at, clock=clock)
        self.components: list[Component] = []
        self._hearers: list[tuple[str, EventListener]] = []  # the components with on_event, in start order
        self.record = Recorder(bus, self.state)  # for parts that act on their own writes (controls, conductor)
        self.controls = Controls(
            bus,
            self.state,
            max_scale=cfg.swarm.max_scale,
            clock=clock,
            record=self.record,
            task_max_usd=cfg.budget.task_max_usd,
        )
        self._server = ControlServer(bus, self.controls)
        self._listeners: list[EventCallback] = []
        self._follower: EventFollower | None = None
        self._info_sub: Any = None
        self._chunk_sub: Any = None
        self._chunk_syncing: asyncio.Task[None] | None = None
        self._counting = False
        self._foreign: set[str] = set()  # live workers no pool of this process runs (``_note_worker``)
        self.streamed: dict[str, int] = {}  # such a worker's id -> tokens its chunks carried
        self._life = Lifecycle("engine")
        self._life.adopt("bus", bus.close)  # handed in (connected or not): ours to close, whatever start got to
        self.host = socket.gethostname()
        for c in components or []:
            self.add(c)

    def add(self, component: C) -> C:
        self.components.append(component)
        if isinstance(component, EventListener):
            self._hearers.append((component.name, component))
        return component

    def get(self, kind: type[C]) -> C | None:
        """The first component of a class (``engine.get(SpendGuard)``), or None."""
        for c in self.components:
            if isinstance(c, kind):
                return c
        return None

    def on_event(self, listener: EventCallback) -> None:
        self._listeners.append(listener)

    def _dispatch(self, subject: str, ev: Event, seq: int) -> None:
        self.state.apply(ev, seq)
        if isinstance(ev, WorkerEvent):
            self._note_worker(ev)
        for name, hearer in self._hearers:
            try:
                hearer.on_event(ev)
            except Exception:  # one component's bug must not keep the event from the others
                log.exception("%s failed on an event", name)
        for cb in list(self._listeners):
            try:
                cb(subject, ev, seq)
            except Exception:  # as above: the next listener still hears the event
                log.exception("event listener failed")

    async def start(self) -> None:
        """Replay the log into the state, then start serving control requests and the components.

        Each part is recorded once it has started, so ``stop()`` after a start that failed half-way stops
        exactly those (and the bus)."""
        if self.state.scale is None:
            self.state.scale = self.cfg.swarm.scale
        await self._life.start("event follower", self._follow, self._unfollow)
        await self._life.start("control server", self._server.start, self._server.stop)
        await self._life.start("info responder", self._serve_info, self._unserve_info)
        await self._life.start("chunk counter", self._count_chunks, self._uncount_chunks)
        for c in self.components:
            await self._life.start_part(c)
        # Everything imported and built so far (Textual and the app too, when in-process) lives as long as the
        # process: out of the collector's reach, or every full collection walks it with the GIL held (tens of ms,
        # seen in the chunk-to-screen p99).
        gc.freeze()
        log.info("engine started (bus %s, %d events replayed)", self.bus.kind, self.state.events)

    async def stop(self) -> None:
        """The one shutdown path: what started, newest first (the components in reverse order, the info
        responder, the control server, the follower), then the bus. Bounded per part; a second call is a no-op."""
        await self._life.stop()

    async def _follow(self) -> None:
        self._follower = await self.bus.replay(self._dispatch, follow=True)

    async def _unfollow(self) -> None:
        if self._follower is not None:
            await self._follower.stop()

    async def _serve_info(self) -> None:
        assert self.bus.nc is not None
        self._info_sub = await self.bus.nc.subscribe(S.ENGINE_INFO, cb=self._on_info)

    async def _unserve_info(self) -> None:
        if self._info_sub is not None:
            with contextlib.suppress(NatsError, OSError):  # the connection is closed or going: nothing to undo
                await self._info_sub.unsubscribe()

    async def _count_chunks(self) -> None:
        self._counting = True
        self._sync_chunk_sub()

    async def _uncount_chunks(self) -> None:
        self._counting = False
        await cancel_and_wait([self._chunk_syncing])
        await self._unfollow_foreign()

    def _note_worker(self, ev: WorkerEvent) -> None:
        """A live worker that no pool of this process runs (a ``swarm-tui worker`` elsewhere, or beside this one)
        has its chunks counted here, for ``status``; the pools here report their own. Chunks are subscribed to
        only while there is such a worker: each one costs a delivery and a parse, at thousands a second. The
        worker's state is the projection's (a late or forged "running" after its end does not bring it back)."""
        wid = ev.worker_id
        w = self.state.workers.get(wid)
        streaming = w is not None and w.state in ("running", "retrying")  # queued or held ones send no chunks
        if streaming and wid not in self._foreign:
            here = any(getattr(c, "runs_worker", _no)(wid) for c in self.components)
            if not here and len(self._foreign) < MAX_FOREIGN:
                self._foreign.add(wid)
        elif not streaming:
            self._foreign.discard(wid)
            self.streamed.pop(wid, None)
        self._sync_chunk_sub()

    def _sync_chunk_sub(self) -> None:
        if self._chunk_syncing is None or self._chunk_syncing.done():
            self._chunk_syncing = asyncio.create_task(self._follow_foreign(), name="engine-chunk-sub")

    async def _follow_foreign(self) -> None:
        """Subscribe or unsubscribe until the subscription matches the foreign workers: they may change while a
        subscribe or an unsubscribe waits for the server, and a change then is followed by the next turn."""
        while (want := self._counting and bool(self._foreign)) != (self._chunk_sub is not None):
            try:
                if want:
                    if self.bus.nc is None:
                        return  # no connection: the next worker event tries again
                    self._chunk_sub = await self.bus.nc.subscribe(S.CHUNK_ALL, cb=self._on_chunk)
                else:
                    sub, self._chunk_sub = self._chunk_sub, None
                    await sub.unsubscribe()
            except (NatsError, OSError) as e:  # the connection is closed or going: the next worker event retries
                log.debug("the chunk subscription did not change: %s", type(e).__name__)
                return

    async def _unfollow_foreign(self) -> None:
        if self._chunk_sub is not None:
            sub, self._chunk_sub = self._chunk_sub, None
            with contextlib.suppress(NatsError, OSError):  # the connection is closed or going: nothing to undo
                await sub.unsubscribe()

    async def _on_chunk(self, msg: NatsMsg) -> None:
        """Count a chunk's tokens for a live worker of another process (``_note_worker``): ``status`` would
        otherwise say 0 while its card counts them. Anyone may publish a chunk: a count is taken only within
        ``MAX_CHUNK_TOKENS`` and a worker's sum is held under ``MAX_TOKENS``."""
        if msg.subject.rpartition(".")[2] not in self._foreign:  # the subject names the worker: no parse
            return
        try:
            c = json.loads(msg.data)
            wid, n = c["worker_id"], c["tokens"]
        except (ValueError, TypeError, KeyError):
            return
        if wid in self._foreign and type(n) is int and 0 < n <= MAX_CHUNK_TOKENS:
            self.streamed[wid] = min(MAX_TOKENS, self.streamed.get(wid, 0) + n)

    def info(self) -> EngineInfo:
        """The engine, its bus, and each component's info under the component's name: what the app's header and
        panels and ``status`` show (sent as JSON to whoever asks on ``swarm.engine.info``)."""
        out: EngineInfo = {
            "engine": {
                "pid": os.getpid(),
                "host": self.host,
                "started_at": self.started_at,
                "demo": self.demo,
                "uptime_s": round(self.clock() - self.started_at, 1),
                "streamed": dict(self.streamed),  # only foreign workers': _note_worker drops the others
            },
            "bus": {
                "url": _display_url(self.bus.url),
                "kind": self.bus.kind,
                "state": self.bus.state,
                "malformed": dict(self.bus.dead.counts),
                "warnings": list(self.bus.warnings),
            },
        }
        # Which components there are is known only at run time, so each fills the key of its name (the name-to-
        # shape pairing is checked by tests/integration/test_info_contract.py, each shape by its info()).
        parts = cast(dict[str, object], out)
        for c in self.components:
            try:
                parts[c.name] = c.info()
            except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
                parts[c.name] = InfoError(error=type(exc).__name__)
        return out

    async def _on_info(self, msg: NatsMsg) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):  # an unanswered info request is the asker's timeout, never ours
                await msg.respond(json.dumps(self.info(), default=str).encode())


def _display_url(url: str) -> str:
    from swarm_tui.engine.bus.reasons import safe_url

    return safe_url(url) if url else ""

"""The app's view of an engine: in-process (``LocalLink``) or over the bus (``RemoteLink``).

Both expose the same things: a ``SwarmState`` projection, a live ``info()`` snapshot, the bus state, chunks of
worker output, and control requests. Controls always travel as bus requests (``swarm.ctl.<verb>``), which the
engine serves, so an in-process UI and an attached one take the same path. Nothing here imports Textual: the
App registers plain callbacks and turns them into its own messages.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, cast

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.ids import new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.info import EngineInfo, usable
from swarm_tui.engine.projection.state import SwarmState

if TYPE_CHECKING:  # nats-py (and aiohttp under it) is imported when a link starts, after the first frame
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.follower import EventFollower
    from swarm_tui.engine.bus.wire import Chunk, Reply  # pydantic: imported after the first frame
    from swarm_tui.engine.history.timeline import Timeline
    from swarm_tui.engine.history.when import Point

log = logging.getLogger(__name__)

EventCallback = Callable[[str, Any, int], None]
ChunkCallback = Callable[["Chunk"], None]
StateCallback = Callable[[str], None]
# Where the engine runs: in this process (quitting stops it) or elsewhere (``--attach``); the header says which.
LinkKind: TypeAlias = Literal["embedded engine", "remote engine", "log replay"]
READ_ONLY = "replay is read-only"  # the one answer to anything that would publish while replaying


class Link:
    """What the App needs from an engine. Subclasses fill in ``start``, ``stop`` and ``refresh_info``."""

    kind: ClassVar[LinkKind]

    def __init__(self, cfg: Config, *, demo: bool = False) -> None:
        self.cfg = cfg
        self.demo = demo
        self.state = SwarmState()
        self.bus: Bus | None = None
        self.on_event: EventCallback | None = None
        self.on_chunk: ChunkCallback | None = None
        self._decode: Callable[..., Any] | None = None  # wire.decode, bound when chunks are subscribed
        self.on_bus_state: StateCallback | None = None
        self.on_nudge: Callable[[], None] | None = None  # the engine's info moved on its own (in-process: RAM)
        self.bad_chunks = 0
        self._info: EngineInfo = {}  # until an engine answers
        self._chunk_sub: Any = None

    # ---- what the App calls
    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def refresh_info(self) -> EngineInfo:
        return self._info

    def info(self) -> EngineInfo:
        return self._info

    @property
    def bus_state(self) -> str:
        return self.bus.state if self.bus is not None else "disconnected"

    @property
    def bus_kind(self) -> str:
        return self.bus.kind if self.bus is not None else ""

    async def control(self, verb: str, args: dict[str, Any]) -> Reply | None:
        """A control request to the engine; None when no engine answers."""
        from swarm_tui.engine.bus.wire import Reply  # pydantic: after the first frame (the bus came first)

        if self.bus is None or self.bus.nc is None:
            return Reply(ok=False, error="not connected to the bus")
        from swarm_tui.engine.control_requests import request

        return await request(self.bus, verb, {"by": "tui", **args})

    async def submit_task(self, text: str, priority: int = 5) -> str:
        if self.bus is None:
            raise RuntimeError("not connected to the bus")
        from swarm_tui.engine.bus.wire import Task, task_text_problem

        problem = task_text_problem(text)
        if problem:  # one line, as `swarm-tui submit` says it (the model's own error spans lines)
            raise ValueError(problem)
        task = Task(id=new_id("t"), text=text, priority=priority, created_at=time.time(), source="tui", demo=self.demo)
        await self.bus.publish_event(task, msg_id=task.id)
        return task.id

    # ---- shared plumbing
    def _event(self, subject: str, ev: Any, seq: int) -> None:
        if self.on_event is not None:
            self.on_event(subject, ev, seq)

    def _bus_state(self, state: str) -> None:
        if self.on_bus_state is not None:
            self.on_bus_state(state)

    def _nudge(self) -> None:
        if self.on_nudge is not None:
            self.on_nudge()

    async def _subscribe_chunks(self) -> None:
        assert self.bus is not None and self.bus.nc is not None
        from swarm_tui.engine.bus.wire import decode

        self._decode = decode  # once, not an import per chunk
        self._chunk_sub = await self.bus.nc.subscribe(S.CHUNK_ALL, cb=self._on_chunk_msg)

    async def _on_chunk_msg(self, msg: Any) -> None:
        try:
            assert self._decode is not None
            chunk = self._decode(msg.data, expect="chunk")
        except InvalidMessage:
            self.bad_chunks += 1  # counted and ignored: live chunks are not stored anywhere
            return
        if self.on_chunk is not None:
            self.on_chunk(chunk)

    async def _unsubscribe_chunks(self) -> None:
        if self._chunk_sub is not None:
            with contextlib.suppress(Exception):  # a closed connection: the subscription went with it
                await self._chunk_sub.unsubscribe()
            self._chunk_sub = None


class LocalLink(Link):
    """An engine running in this process: its state and info are read directly."""

    kind: ClassVar[LinkKind] = "embedded engine"

    def __init__(self, engine: Any, *, connect: bool = True) -> None:
        super().__init__(engine.cfg, demo=engine.demo)
        self.engine = engine
        self.bus = engine.bus
        self.state = engine.state
        self._connect = connect
        self._started = False

    async def start(self) -> None:
        assert self.bus is not None
        self.bus.on_state(self._bus_state)
        if self._connect and self.bus.nc is None:
            await self.bus.connect(log_limits=True)  # the engine's start: it sets the log's limits
        self.engine.on_event(self._event)
        await self.engine.start()
        self._started = True
        for c in getattr(self.engine, "components", []):  # the RAM guard tells of a real move at once
            on_move = getattr(c, "on_move", None)
            if callable(on_move):
                on_move(self._nudge)
        await self._subscribe_chunks()
        self._bus_state(self.bus.state)

    async def stop(self) -> None:
        """The engine's single stop path (components, control server, follower, bus)."""
        await self._unsubscribe_chunks()
        await self.engine.stop()

    async def refresh_info(self) -> EngineInfo:
        try:
            self._info = self.engine.info()
        except Exception:  # the last info stays on screen; the next tick asks again
            log.exception("engine info failed")
        if "ram" not in self._info:  # no RAM guard in this engine: read the machine ourselves
            with contextlib.suppress(Exception):  # no reading this time: the RAM panel says "no figures"
                from swarm_tui.engine.guards.memory import ram_snapshot

                self._info["ram"] = ram_snapshot(self.cfg)
        return self._info


class EmbeddedLink(LocalLink):
    """The in-process engine, built when the link starts (after the app's first frame).

    The engine's modules, nats-py and aiohttp (~0.25 s of imports) are loaded by ``start``, not before the
    screen is drawn. Until then the state is an empty projection (the engine's is empty until its log replay
    anyway) and there is no bus.
    """

    def __init__(self, cfg: Config, *, demo: bool = False) -> None:
        Link.__init__(self, cfg, demo=demo)
        self.engine: Any = None
        self._connect = True
        self._started = False

    async def start(self) -> None:
        if self.engine is None:
            from swarm_tui.engine.assemble import assemble
            from swarm_tui.engine.bus.client import Bus

            engine = assemble(self.cfg, Bus(self.cfg), demo=self.demo)
            self.engine, self.bus, self.state = engine, engine.bus, engine.state
        await super().start()

    async def stop(self) -> None:
        if self.engine is not None:
            await super().stop()

    async def refresh_info(self) -> EngineInfo:
        if self.engine is None:
            return self._info
        return await super().refresh_info()


class RemoteLink(Link):
    """An engine elsewhere (``--attach URL``): our own state from the log, info by request every second."""

    kind: ClassVar[LinkKind] = "remote engine"

    def __init__(self, cfg: Config, url: str | None, *, demo: bool = False) -> None:
        # no URL: the bus this config names (a leaf's embedded server, whose engine is on the hub)
        super().__init__(cfg.replace(nats__url=url) if url else cfg, demo=demo)
        from swarm_tui.engine.bus.client import Bus

        self.url = url or ""
        self.bus = Bus(self.cfg)
        self._follower: EventFollower | None = None
        self.engine_seen = False
        self.hub_lost = False  # a leaf whose link to the hub is down: our bus answers, the hub's JetStream not

    @property
    def bus_state(self) -> str:
        state = super().bus_state
        return "hub lost" if state == "connected" and self.hub_lost else state

    @property
    def bus_kind(self) -> str:
        return "leaf" if self.bus is not None and self.bus.leaf else super().bus_kind

    async def start(self) -> None:
        assert self.bus is not None
        self.bus.on_state(self._bus_state)
        await self.bus.connect(setup=False)
        self._follower = await self.bus.replay(self._apply, follow=True)
        await self._subscribe_chunks()
        self._bus_state(self.bus.state)
        await self.refresh_info()

    def _apply(self, subject: str, ev: Any, seq: int) -> None:
        self.state.apply(ev, seq)
        self._event(subject, ev, seq)

    async def refresh_info(self) -> EngineInfo:
        if self.bus is None or self.bus.nc is None or self.bus.nc.is_closed:
            return self._info
        try:
            wait = 0.6 if self.bus.leaf else 0.9  # a leaf may ask the hub next: both within the 1 s tick
            msg = await self.bus.nc.request(S.ENGINE_INFO, b"", timeout=wait)
            data = json.loads(msg.data)
        except Exception:  # noqa: BLE001 - no engine answers right now (timeout, no responders, bad JSON)
            self._info = {}
            await self._check_hub()
            return self._info
        await self._set_hub_lost(False)
        # What Engine.info() sent, as JSON: taken as its shape (the engine runs the same package); readers still
        # read with defaults, so a part missing from an engine of another version shows as unknown.
        self._info = cast(EngineInfo, data) if isinstance(data, dict) else {}
        self.engine_seen = self.engine_seen or bool(self._info)
        pool = usable(self._info.get("pool"))
        if self.state.scale is None and pool is not None and isinstance(pool.get("scale"), int):
            self.state.scale = pool["scale"]  # no scale change in the log yet: the engine's starting scale
        return self._info

    async def _check_hub(self) -> None:
        """On a leaf, no engine answering may mean the link to the hub is down: ask the hub's JetStream."""
        if self.bus is None or not self.bus.leaf or self.bus.nc is None:
            return
        try:
            await self.bus.nc.request("$JS.API.INFO", b"", timeout=0.3)  # the hub's, by the leaf's mapping
        except Exception:  # noqa: BLE001 - no responders: the hub is out of reach
            await self._set_hub_lost(True)
        else:
            await self._set_hub_lost(False)

    async def _set_hub_lost(self, lost: bool) -> None:
        if lost != self.hub_lost:
            self.hub_lost = lost
            log.warning("the hub is %s", "out of reach over the leaf link" if lost else "back")
            if not lost and self._follower is not None:
                await self._follower.resume()  # catch up from the log at once
            self._bus_state(self.bus_state)

    async def stop(self) -> None:
        await self._unsubscribe_chunks()
        if self._follower is not None:
            await self._follower.stop()
        if self.bus is not None:
            await self.bus.close()


class StaticLink(Link):
    """A link with fixed state and info and no bus: for snapshots, screenshots and layout work."""

    kind: ClassVar[LinkKind] = "embedded engine"

    def __init__(
        self,
        cfg: Config,
        state: SwarmState,
        info: EngineInfo,
        *,
        demo: bool = False,
        bus_state: str = "connected",
        bus_kind: str = "embedded",
    ) -> None:
        super().__init__(cfg, demo=demo)
        self.state = state
        self._info = info
        self._bus_state_value = bus_state
        self._bus_kind_value = bus_kind
        self.controls: list[tuple[str, dict[str, Any]]] = []
        self.tasks: list[str] = []

    @property
    def bus_state(self) -> str:
        return self._bus_state_value

    @property
    def bus_kind(self) -> str:
        return self._bus_kind_value

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def control(self, verb: str, args: dict[str, Any]) -> Reply | None:
        from swarm_tui.engine.bus.wire import Reply

        self.controls.append((verb, args))
        return Reply(ok=True, data={})

    async def submit_task(self, text: str, priority: int = 5) -> str:
        self.tasks.append(text)
        return "t-static"


class ReplayLink(Link):
    """The log's past, read-only (``swarm-tui replay``): the state is the timeline's at its position, and nothing
    is ever published (a control or a task is refused here, before any bus). ``bus``: the one whose log the
    timeline reads, connected by ``start`` without setting anything up; None for a file."""

    kind: ClassVar[LinkKind] = "log replay"

    def __init__(
        self, cfg: Config, timeline: Timeline, *, start_at: Point | None, where: str, bus: Bus | None = None
    ) -> None:
        super().__init__(cfg)
        self.timeline = timeline
        self.start_at = start_at
        self.where = where  # what is replayed, as the header says it ("the bus's log", "file run.jsonl")
        self.bus = bus
        self.state = timeline.state
        self._frozen = False  # the objects of the opening are in the permanent generation (``start``)
        self._ended = False  # the app is gone (``end``)

    @property
    def bus_state(self) -> str:
        return "connected" if self.bus is None else super().bus_state  # a file needs no bus: nothing is lost

    async def start(self) -> None:
        if self.bus is not None:
            from swarm_tui.engine.history.buslog import BusLog
            from swarm_tui.engine.history.checkpoint import log_checkpoints
            from swarm_tui.engine.paths import data_dir

            await self.bus.connect(setup=False)
            if isinstance(self.timeline.source, BusLog):  # the bus log's checkpoints, as status --at keeps them
                self.timeline.checkpoints = await log_checkpoints(
                    self.timeline.source, max_scale=self.cfg.swarm.max_scale, data=data_dir(self.cfg.paths.data_dir)
                )
        from swarm_tui.engine.history.checkpoint import paused_gc

        # the fold at the position is a heap of long-lived objects (~3 million at 100,000 events): collected as
        # they are made, the young generations walked them twice and the first full collection once more, ~0.5 s
        # of the opening; frozen instead until the position first moves (``thaw``), as the first frame needs none.
        # Only an opening that ended well freezes, and only while the app is still there: a failed or cancelled
        # one (the bus gone, q meanwhile) leaves nothing frozen for nobody to thaw
        with paused_gc():
            await self.timeline.open(self.start_at)
        if not self._ended:
            gc.freeze()
            self._frozen = True
        self.state = self.timeline.state

    def thaw(self) -> None:
        """The position moves: what the opening froze is collectable again (a fold let go of is freed)."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    def end(self) -> None:
        """The app goes: nothing stays frozen, and an opening still under way freezes nothing when it ends."""
        self._ended = True
        self.thaw()

    async def stop(self) -> None:
        self.end()
        if self.bus is not None:
            await self.bus.close()

    def moved(self) -> SwarmState:
        """The timeline moved: its state (a step back folds a new one) is the link's."""
        self.state = self.timeline.state
        return self.state

    async def control(self, verb: str, args: dict[str, Any]) -> Reply | None:
        from swarm_tui.engine.bus.wire import Reply

        return Reply(ok=False, error=READ_ONLY)

    async def submit_task(self, text: str, priority: int = 5) -> str:
        raise ValueError(READ_ONLY)

"""The App: wires a Link (an engine in-process or elsewhere) to the control room; keeps quit, help, the palette,
the link and the way out.

Engine happenings arrive as plain callbacks from the link and become Textual messages (coalesced) or, for the
high-rate worker output, appends to bounded rings. ONE app-wide timer (every ``ui.refresh_ms``) carries out
what the render scheduler decides: the state views when something moved (throttled), the cards with new
output; it pauses while nothing is dirty. The info tick (the engine's info, the header's countdown, the ages)
runs every second while anything moves and every ``idle_tick_s`` at rest; an event, a key, a bus change or a
RAM move polls at once (idle CPU). The screens own their keys and actions (``screens/room_actions.py`` for the
control room); what they ask of the engine goes through the ``ControlClient``, in workers, in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, assert_never

from rich.text import Text
from textual import events, work
from textual.app import App
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from swarm_tui.engine.info import EngineInfo, usable
from swarm_tui.engine.lifecycle import within
from swarm_tui.engine.states import FINAL_STATES
from swarm_tui.textsafe import plain
from swarm_tui.tui.attention.watch import AttentionWatch
from swarm_tui.tui.benchprobe import LatencyProbe
from swarm_tui.tui.commands import SwarmCommands, help_notes, help_rows, shown_key
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.driver import CrashSafeApp, write_raw
from swarm_tui.tui.link import Link
from swarm_tui.tui.messages import BusStateChanged, InfoMoved, InfoUpdated, LinkReady, RoomReady, StateChanged
from swarm_tui.tui.model import OutputRing, plural
from swarm_tui.tui.plain_toasts import PlainToastApp
from swarm_tui.tui.render_scheduler import TUNING, RenderScheduler
from swarm_tui.tui.screens.confirm import ConfirmScreen
from swarm_tui.tui.screens.control_room import ControlRoom
from swarm_tui.tui.screens.help import HelpScreen
from swarm_tui.tui.terminal import install_stop_signals, real_terminal_driver

if TYPE_CHECKING:  # pydantic: imported with the engine, after the first frame
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.wire import Chunk
    from swarm_tui.engine.history.timeline import Timeline

log = logging.getLogger(__name__)

MAX_RINGS = 2000  # output rings for unknown worker ids beyond this are not created (a flood of bogus ids)
PRUNE_RINGS = 200  # above this many rings, those of long-finished workers without a card are dropped


class SwarmApp(PlainToastApp, CrashSafeApp[int]):
    CSS_PATH = "app.tcss"
    TITLE = "swarm-tui"
    COMMANDS = App.COMMANDS | {SwarmCommands}
    ENABLE_COMMAND_PALETTE = True
    ROOM: type[ControlRoom] = ControlRoom  # the default screen (the replay's is a ControlRoom on the log)

    def __init__(
        self,
        link: Link,
        *,
        refresh_ms: int | None = None,
        clock: Callable[[], float] = time.time,
        deterministic: bool = False,
        handle_signals: bool = False,
        rings: dict[str, OutputRing] | None = None,
        ram_history: list[float] | None = None,
    ) -> None:
        super().__init__(driver_class=real_terminal_driver() if handle_signals else None)
        self.link = link
        self.cfg = link.cfg
        self.refresh_s = (refresh_ms or self.cfg.ui.refresh_ms) / 1000.0
        self.clock = clock  # wall time, for ages and countdowns (a fixed instant in the scenes)
        self.deterministic = deterministic  # scenes and snapshots: no timers, no engine, every card at once
        self.handle_signals = handle_signals
        self.rings: dict[str, OutputRing] = rings if rings is not None else {}
        self._ram_history = ram_history or []  # the RAM panel's first readings (the control room keeps them)
        self.info: EngineInfo = link.info()
        self.ready = False
        self.scheduler = RenderScheduler(TUNING, on_wake=self._resume_flush)
        self.controls = ControlClient(self, link, accepted=self.scheduler.invalidate_state)
        # the needs-you alerts: bell, notification, header badge, the ! key
        self.needs_you = AttentionWatch(
            self.cfg.notify,
            clock,
            look=lambda: (self.link.state, self.info, self.link.bus_state) if self.ready else None,
            write=lambda seq: write_raw(self, seq),
            notify=self.notify,
            shown_key=lambda: self.shown_key("attention"),
            on_badge=lambda: self.room.show_header(),
            send_control=self.control,
            levels=self.cfg.budget.alerts,
        )
        self._room: ControlRoom | None = None
        self._shutting_down = False
        self._probe = LatencyProbe.from_env()  # bench only (SWARM_BENCH_LATENCY_FILE), else None
        self._flush_timer: Timer | None = None  # paused while nothing is dirty (idle CPU)
        self._tick_timer: Timer | None = None  # the next info tick (one-shot: 1 s apart while active, more at rest)
        self._tick_due = 0.0  # monotonic time the next info tick is set for
        self._last_tick = 0.0  # monotonic time of the last info tick
        self._last_activity = float("-inf")  # monotonic time of the last event, key, output or bus change
        self.keymap = dict(self.cfg.keys)  # binding id -> key, as the config says it (shown in hints and help)
        if self.keymap:
            self.set_keymap(self.keymap)

    def get_default_screen(self) -> Screen[Any]:
        self._room = self.ROOM(
            self.link,
            info=self.info,
            rings=self.rings,
            clock=self.clock,
            scheduler=self.scheduler,
            keymap=self.keymap,
            attention=self.needs_you,
            controls=self.controls,
            deterministic=self.deterministic,
            ram_history=self._ram_history,
        )
        return self._room

    @property
    def room(self) -> ControlRoom:
        assert self._room is not None, "the control room exists once the App is composed"
        return self._room

    def on_resize(self, event: Resize) -> None:
        """Every room hears of it: the live one and the timeline's pushed over it (each lays out its panels)."""
        for screen in self.screen_stack:
            if isinstance(screen, ControlRoom):
                screen.terminal_resized(event.size)

    # ------------------------------------------------------------------ start-up
    def on_room_ready(self, _: RoomReady) -> None:
        if self.ready:  # a room opened later (the timeline's) starts nothing
            return
        self.link.on_event = self._on_link_event
        self.link.on_chunk = self._on_link_chunk
        self.link.on_bus_state = self._on_link_bus_state
        self.link.on_nudge = self._on_link_nudge
        if self.handle_signals:  # SIGTERM/SIGHUP: the same clean stop as `q`
            install_stop_signals(self.terminal_lost)
        self.refresh_all()
        self.call_after_refresh(self.refresh_all)  # again once the panels have their sizes
        if self.deterministic:
            self.ready = self.room.ready = True
        else:
            self._flush_timer = self.set_interval(self.refresh_s, self._flush_output, name="flush")
            self._last_tick = time.monotonic()
            self._schedule_tick(TUNING.tick_s)
            # the first full frame first, then the engine (its start-up shares this loop: ~0.5 s with NATS)
            self._start_when_drawn()
        self.room.decision_table.focus()

    def _start_when_drawn(self) -> None:
        """Start the engine once the first full frame is out.

        Starting the engine before that held the whole frame back by the engine's start-up (~0.3 s of imports,
        embedded nats-server, JetStream setup and log replay on this loop). The key bar draws with the panels
        (Textual's Footer came a few frames later, after its recomposes), so: one refresh, and a short gap for
        the driver's writer thread.
        """
        self.call_after_refresh(lambda: self.set_timer(0.02, self.start_link))

    @work(group="engine", exit_on_error=False, description="engine start (connect, replay the log, components)")
    async def start_link(self) -> None:
        await self.link.start()
        self.post_message(LinkReady())

    @work(group="info", exclusive=True, exit_on_error=False, description="engine info")
    async def poll_info(self) -> None:
        info = await self.link.refresh_info()
        self.post_message(InfoUpdated(info.copy()))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where background failures become a notification and a log line; the app stays up."""
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        err = worker.error
        what = worker.description or worker.name
        log.error("%s failed: %s", what, err, exc_info=err)
        text = f"{what} failed: {plain(str(err) or type(err).__name__)[:240]}"
        if worker.group == "engine":
            self.room.engine_error = plain(str(err) or type(err).__name__)[:200]
        self.notify(text, title="error", severity="error", timeout=12, markup=False)

    # ------------------------------------------------------------------ the link (plain callbacks)
    def _on_link_event(self, subject: str, ev: Any, seq: int) -> None:
        new_worker = (
            ev.type == "worker" and ev.worker_id not in self.room.workers_panel.cards and ev.state not in FINAL_STATES
        )
        self.scheduler.event(new_worker=new_worker)
        self.post_message(StateChanged())

    def _on_link_chunk(self, chunk: Chunk) -> None:
        ring = self.rings.get(chunk.worker_id)
        if ring is None:
            if len(self.rings) > MAX_RINGS:
                return  # a flood of unknown worker ids: ignore rather than grow without bound
            ring = self.rings[chunk.worker_id] = OutputRing()
        if ring.append(chunk.text, chunk.tokens, chunk.seq, chunk.reasoning):
            self.scheduler.output(chunk.worker_id)
            if self._probe is not None:
                self._probe.chunk(chunk)

    def _on_link_bus_state(self, state: str) -> None:
        self.post_message(BusStateChanged(state))

    def _on_link_nudge(self) -> None:
        """The engine's info moved on its own (a RAM move): poll it now, not at the next tick at rest."""
        self.post_message(InfoMoved())

    def on_link_ready(self, _: LinkReady) -> None:
        self.ready = self.room.ready = True
        self._last_activity = float("-inf")  # the log's replay is not activity: at rest from here unless it moves
        self.room.engine_error = ""
        self.refresh_all()
        self.poll_info()
        self.needs_you.check()  # the baseline: what already waits shows in the badge, rings nothing

    def on_state_changed(self, _: StateChanged) -> None:
        self.activity()
        match self.scheduler.state_changed():
            case "state":
                self.refresh_state()
            case "cards":
                self.room.sync_workers()
            case None:
                pass
            case other:
                assert_never(other)

    def on_bus_state_changed(self, event: BusStateChanged) -> None:
        self.activity()
        self.room.show_header()
        self.needs_you.check()
        if event.state == "reconnecting":
            self.notify("the bus connection was lost; reconnecting…", severity="warning", timeout=5, markup=False)
        elif event.state == "lost":  # given up (a server that is not this data dir's): say why, not just "lost"
            bus = self.link.bus
            why = bus.warnings[-1] if bus is not None and bus.warnings else "the bus is lost"
            self.notify(plain(why)[:300], severity="error", timeout=30, markup=False)

    def on_info_updated(self, event: InfoUpdated) -> None:
        self.info = self.room.info = event.info  # the room's watcher takes the RAM reading and redraws the guards
        self.needs_you.check()
        self._follow_beat()

    def _follow_beat(self) -> None:
        """At rest, the tick after the conductor's next beat comes right after it (its result and the header's
        new countdown show then, not up to ``idle_tick_s`` later)."""
        cond = usable(self.info.get("conductor"))
        nxt = cond.get("next_beat_s") if cond else None
        if self._tick_timer is None or not isinstance(nxt, int | float):
            return
        delay = max(TUNING.tick_s, float(nxt) + 0.5)  # never faster than the active tick
        if time.monotonic() + delay < self._tick_due - TUNING.tick_s:
            self._schedule_tick(delay)

    def on_info_moved(self, _: InfoMoved) -> None:
        self.activity()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown) and not event.is_forwarded:
            self.activity()  # someone is here: the info follows every second again, from now
        await super().on_event(event)

    # ------------------------------------------------------------------ the timers
    def _resume_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.resume()

    def activity(self) -> None:
        """Something happened (an event, a key, output, a bus or RAM change): the info tick runs every second
        for ``active_s`` from now, and at once if it was resting."""
        self._last_activity = time.monotonic()
        if self._tick_timer is not None and self._tick_due - self._last_activity > TUNING.tick_s:
            # resting: tick now, but not twice within a quarter second (a burst of keys)
            # never 0: a Textual timer of interval 0 dies on a ZeroDivisionError and no tick would follow
            self._schedule_tick(max(0.01, self._last_tick + 0.25 - self._last_activity))

    def active(self) -> bool:
        """Whether anything moves: the info tick runs every ``tick_s``, else every ``idle_tick_s``."""
        if not self.ready or self.link.bus_state != "connected" or self.scheduler.busy():
            return True
        if time.monotonic() - self._last_activity < TUNING.active_s:
            return True
        return bool(self.link.state.live_workers())

    def _schedule_tick(self, delay: float) -> None:
        delay = max(0.01, delay)  # a Textual timer of 0 s divides by zero
        if self._tick_timer is not None:
            self._tick_timer.stop()
        self._tick_due = time.monotonic() + delay
        self._tick_timer = self.set_timer(delay, self._tick, name="info")

    def _tick(self) -> None:
        if not self.is_running:
            return
        now = time.monotonic()
        steps = max(1, round((now - self._last_tick) / TUNING.tick_s))  # the seconds this tick stands for
        self._last_tick = now
        if self.ready:
            self.poll_info()
        if not self.scheduler.tick(self.link.state.version, steps):
            self.room.show_header()  # busy and nothing moved: only the header's countdown moves this second
        self._prune_rings()
        self._schedule_tick(TUNING.tick_s if self.active() else TUNING.idle_tick_s)

    def _flush_output(self) -> None:
        """The one timer: state views when something moved, then the worker cards with new output."""
        if not self.is_running:  # shutting down: the panels are being removed, a late tick must not draw
            return
        frame = self.scheduler.flush()
        if frame is None:
            if self._flush_timer is not None:
                self._flush_timer.pause()  # idle: no 20 wake-ups a second; the scheduler's wake resumes it
            return
        if frame.state:
            self.refresh_state()
        if frame.workers:
            shown = self.room.workers_panel.refresh_output(frame.workers)
            if self._probe is not None:
                for wid in shown:
                    self._probe.flushed(wid)
                self.call_after_refresh(self._probe.rendered)

    def _prune_rings(self) -> None:
        if len(self.rings) <= PRUNE_RINGS:
            return
        now = self.clock()
        cards = self.room.workers_panel.cards
        for wid in list(self.rings):
            w = self.link.state.workers.get(wid)
            if wid not in cards and (w is None or (w.state in FINAL_STATES and now - w.at > 600)):
                del self.rings[wid]

    # ------------------------------------------------------------------ drawing (the control room draws)
    def refresh_all(self) -> None:
        self.refresh_state()
        self.room.show_guards()

    def refresh_state(self) -> None:
        self.room.refresh_state()

    # ------------------------------------------------------------------ keys
    def control(self, verb: str, args: dict[str, Any], done: str | None = None) -> None:
        """A control request from outside a screen (the needs-you watch's "seen"): in a worker, in its turn;
        ``done`` is the toast when the engine accepts it, None for no toast either way."""
        if done is None:
            self.controls.send_quietly(verb, args)
        else:
            self.controls.send(verb, args, done)

    def shown_key(self, binding_id: str) -> str:
        """The key a binding answers to here (the config's remap, else its default)."""
        return shown_key(binding_id, self.keymap)

    def action_timeline(self) -> None:
        """The log's past on the timeline ``swarm-tui replay`` uses, at the live end and paused; ``t`` or escape
        comes back. The live state keeps following the log meanwhile: no event is lost. Read in a worker: the
        keys stay live while the log answers, and a bus that does not answer is a toast, not the app's end."""
        bus = self.link.bus
        if not self.ready or bus is None or bus.nc is None:
            self.notify("the timeline opens once the log is read", severity="warning", timeout=4, markup=False)
            return
        if self.link.bus_state != "connected":
            self.notify("the timeline opens once the bus is back", severity="warning", timeout=4, markup=False)
            return
        self.run_worker(self._open_timeline(bus), group="timeline", exclusive=True, exit_on_error=False)

    async def _open_timeline(self, bus: Bus) -> None:
        try:
            timeline = await self._read_timeline(bus)
        except Exception as err:  # noqa: BLE001 - the bus went away meanwhile (a timeout, the connection closed)
            log.warning("opening the timeline failed: %s", err)
            why = plain(str(err) or type(err).__name__)[:200]
            self.notify(f"the timeline could not read the log: {why}", severity="error", timeout=8, markup=False)
            return
        from swarm_tui.tui.replay_room import live_timeline

        self.push_screen(live_timeline(self, timeline, cfg=self.cfg, keymap=self.keymap, attention=self.needs_you))

    async def _read_timeline(self, bus: Bus) -> Timeline:
        from swarm_tui.engine.history.buslog import BusLog
        from swarm_tui.engine.history.checkpoint import log_checkpoints
        from swarm_tui.engine.history.timeline import Timeline
        from swarm_tui.engine.history.when import Point
        from swarm_tui.engine.paths import data_dir

        source, scale = BusLog(bus), self.cfg.swarm.max_scale
        timeline = Timeline(
            source,
            max_scale=scale,
            checkpoints=await log_checkpoints(source, max_scale=scale, data=data_dir(self.cfg.paths.data_dir)),
        )
        await timeline.open(Point("seq", 1 << 62))  # the live end
        return timeline

    def action_help(self) -> None:
        self.push_screen(HelpScreen(help_rows(self.keymap), help_notes(int(self.refresh_s * 1000))))

    # ------------------------------------------------------------------ the way out
    async def action_quit(self) -> None:
        live = len(self.link.state.live_workers())
        if live and self.link.kind == "embedded engine":

            async def done(yes: bool | None) -> None:
                if yes:
                    await self.shutdown()

            self.push_screen(
                ConfirmScreen(
                    f"{plural(live, 'worker')} running in this process: quitting stops "
                    f"{'it' if live == 1 else 'them'} (the partial output is kept). Quit?"
                ),
                done,
            )
            return
        await self.shutdown()

    async def shutdown(self, code: int = 0) -> None:
        """The clean way out: the engine's single stop path, then leave the screen."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self.room.header_bar.update(Text(" stopping the engine… ", style="bold reverse"))
        try:
            await within(self.link.stop(), 15)
            log.info("the engine stopped; leaving the screen")
        except Exception:  # the screen still closes and the terminal is given back
            log.exception("stopping the engine failed")
        if self._probe is not None:
            self._probe.write()
        self.exit(code)

    def terminal_lost(self) -> None:
        """The pty closed, the ssh link dropped (the driver calls this on the loop) or SIGTERM/SIGHUP came: the
        clean stop."""
        self.run_worker(self.shutdown(0), name="shutdown", group="shutdown", exit_on_error=False)

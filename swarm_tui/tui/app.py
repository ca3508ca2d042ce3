"""The control room: the App wires a Link (an engine in-process or elsewhere) to the panels.

Engine happenings arrive as plain callbacks from the link and become Textual messages (coalesced) or, for the
high-rate worker output, appends to bounded rings that ONE app-wide timer flushes to the screen every
``ui.refresh_ms``. Every action goes to the engine as a control request over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from swarm_tui.engine.bus.wire import FINAL_STATES, Chunk, WorkerEvent
from swarm_tui.engine.projection import DecisionView
from swarm_tui.textsafe import plain
from swarm_tui.tui.benchprobe import LatencyProbe
from swarm_tui.tui.commands import SwarmCommands
from swarm_tui.tui.link import Link
from swarm_tui.tui.messages import BusStateChanged, InfoUpdated, LinkReady, StateChanged
from swarm_tui.tui.model import OutputRing, fmt_usd, num
from swarm_tui.tui.screens import ConfirmScreen, HelpScreen, InputScreen, TextScreen
from swarm_tui.tui.widgets import (
    DecisionDetail,
    HeaderBar,
    RamPanel,
    SpendPanel,
    WorkerCard,
    decision_full_text,
    decision_rows,
    sync_table,
    task_rows,
)

log = logging.getLogger(__name__)

LINGER_S = 30.0  # a finished worker's card stays this long
MAX_CARDS = 60
STATE_REFRESH_S = 0.25  # tables and cards are rebuilt at most this often
MOUNT_BATCH = 10  # new worker cards mounted per frame
BUSY_CARDS = 10  # with this many cards streaming, the tables' ages move every BUSY_TABLE_TICKS seconds
BUSY_STATE_REFRESH_S = 0.5
BUSY_TABLE_TICKS = 5  # (a state change still refreshes them at once): their repaint delayed the cards
COMPACT_WIDTH = 110
COMPACT_HEIGHT = 30
TABS = ("decisions", "workers", "tasks", "guards")


class SwarmApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "swarm-tui"
    COMMANDS = App.COMMANDS | {SwarmCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("a", "approve", "Approve", id="approve", tooltip="approve the selected (or newest pending) decision"),
        Binding("r", "reject", "Reject", id="reject", tooltip="reject the selected (or newest pending) decision"),
        Binding("e", "edit_workers", "Edit", id="edit", tooltip="edit the worker count of the selected decision"),
        Binding("plus", "scale(1)", "Scale+", id="scale_up", key_display="+", tooltip="one more concurrent worker"),
        Binding(
            "minus", "scale(-1)", "Scale-", id="scale_down", key_display="-", tooltip="one fewer concurrent worker"
        ),
        Binding("c", "cancel_worker", "Cancel", id="cancel", tooltip="cancel the selected worker"),
        Binding(
            "C",
            "cancel_all",
            "Cancel all",
            id="cancel_all",
            key_display="C",
            tooltip="cancel every worker (asks first)",
        ),
        Binding("p", "pause", "Pause", id="pause", tooltip="pause or resume the heartbeat"),
        Binding("n", "new_task", "New task", id="new_task", tooltip="publish a new task"),
        Binding(
            "enter",
            "expand",
            "Expand",
            id="expand",
            tooltip="details: raw model answer, whole worker output, task results",
        ),
        Binding(
            "slash", "filter", "Filter", id="filter", key_display="/", tooltip="filter tasks, decisions and workers"
        ),
        Binding("question_mark", "help", "Help", id="help", key_display="?", tooltip="this screen"),
        Binding("q", "quit", "Quit", id="quit", tooltip="quit (asks while workers run here)"),
        Binding("1", "show_tab('decisions')", "Decisions", id="tab_decisions", show=False),
        Binding("2", "show_tab('workers')", "Workers", id="tab_workers", show=False),
        Binding("3", "show_tab('tasks')", "Tasks", id="tab_tasks", show=False),
        Binding("4", "show_tab('guards')", "RAM/Spend", id="tab_guards", show=False),
    ]

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
        super().__init__(driver_class=_real_terminal_driver() if handle_signals else None)
        self.link = link
        self.cfg = link.cfg
        self.refresh_s = (refresh_ms or self.cfg["ui.refresh_ms"]) / 1000.0
        self.clock = clock
        self.deterministic = deterministic
        self.handle_signals = handle_signals
        self.rings: dict[str, OutputRing] = rings if rings is not None else {}
        self.ram_history: deque[float] = deque(ram_history or [], maxlen=600)
        self.info: dict[str, Any] = link.info()
        self.filter_text = ""
        self.engine_error = ""
        self.ready = False
        self.compact = False
        self.active_tab = "decisions"
        self._cards: dict[str, WorkerCard] = {}
        self._dirty_workers: set[str] = set()
        self._state_dirty = True
        self._last_state_refresh = 0.0
        self._last_worker = ""
        self._seen_decisions: set[str] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._shutting_down = False
        self.flushes = 0
        self._probe = LatencyProbe.from_env()  # bench only (SWARM_BENCH_LATENCY_FILE), else None
        self._flush_timer: Timer | None = None  # paused while nothing is dirty (idle CPU), see _wake
        self._flush_paused = False
        self._new_workers = False
        self._ticks = 0
        self._streaming = 0  # cards with new output at the last flush
        self._state_version = -1  # the state version the tables show
        if self.cfg.keys:
            self.set_keymap(dict(self.cfg.keys))

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Tabs(
            *(
                Tab(label, id=f"tab-{name}")
                for name, label in zip(TABS, ("1 Decisions", "2 Workers", "3 Tasks", "4 RAM·Spend"), strict=True)
            ),
            id="tabs",
        )
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="tasks-panel", classes="panel"):
                    yield DataTable(id="tasks", cursor_type="row", zebra_stripes=False)
                with VerticalScroll(id="workers-panel", classes="panel"):
                    yield Static(
                        Text("no live workers: approve a decision to start some", style="dim"), id="workers-empty"
                    )
                    yield Grid(id="workers-grid")
            with Vertical(id="right"):
                with Vertical(id="decisions-panel", classes="panel"):
                    yield DataTable(id="decisions", cursor_type="row")
                    yield DecisionDetail(id="decision-detail")
                with Vertical(id="guards"):
                    yield RamPanel(id="ram", classes="panel")
                    yield SpendPanel(id="spend", classes="panel")
        yield Input(id="filter", placeholder="filter tasks, decisions and workers · enter keeps it · escape clears")
        yield Footer()

    def on_mount(self) -> None:
        tasks = self.query_one("#tasks", DataTable)
        tasks.add_columns("id", "age", "pri", "state", "text")
        decisions = self.query_one("#decisions", DataTable)
        decisions.add_columns("", "id", "plan", "est. cost")
        self.query_one("#tasks-panel").border_title = "Tasks"
        self.query_one("#workers-panel").border_title = "Workers"
        self.query_one("#decisions-panel").border_title = "Decisions"
        self.query_one("#ram").border_title = "RAM"
        self.query_one("#spend").border_title = "Spend"
        self.query_one("#filter").display = False
        self._apply_layout(self.size.width, self.size.height)
        self.link.on_event = self._on_link_event
        self.link.on_chunk = self._on_link_chunk
        self.link.on_bus_state = self._on_link_bus_state
        if self.handle_signals:
            self._install_signal_handlers()
        self.refresh_all()
        self.call_after_refresh(self.refresh_all)  # again once the panels have their sizes
        if self.deterministic:
            self.ready = True
        else:
            self._flush_timer = self.set_interval(self.refresh_s, self._flush_output, name="flush")
            self.set_interval(1.0, self._tick, name="info")
            # the first full frame first, then the engine (its start-up shares this loop: ~0.5 s with NATS)
            self._start_when_drawn()
        self.query_one("#decisions", DataTable).focus()

    def on_resize(self, event: Any) -> None:
        self._apply_layout(event.size.width, event.size.height)
        self.call_after_refresh(self.refresh_state)  # column widths follow the new size

    def _apply_layout(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        self.compact = compact
        self.set_class(compact, "-compact")
        self.query_one("#tabs").display = compact
        self.query_one(Footer).compact = compact
        self._show_panels()
        cols = max(1, (width * 2 // 3 if not compact else width) // 40)
        self.query_one("#workers-grid", Grid).styles.grid_size_columns = cols

    def _show_panels(self) -> None:
        visible = {
            "decisions": {"right", "decisions-panel"},
            "workers": {"left", "workers-panel"},
            "tasks": {"left", "tasks-panel"},
            "guards": {"right", "guards"},
        }[self.active_tab]
        for ident in ("left", "right", "tasks-panel", "workers-panel", "decisions-panel", "guards"):
            self.query_one(f"#{ident}").display = (not self.compact) or ident in visible

    def action_show_tab(self, name: str) -> None:
        if name not in TABS:
            return
        self.active_tab = name
        if self.compact:
            tabs = self.query_one("#tabs", Tabs)
            if tabs.active != f"tab-{name}":
                tabs.active = f"tab-{name}"
        self._show_panels()
        target = {"decisions": "#decisions", "tasks": "#tasks"}.get(name)
        if target:
            self.query_one(target).focus()
        elif name == "workers" and self._cards:
            next(iter(self._cards.values())).focus()

    @on(Tabs.TabActivated, "#tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        name = (event.tab.id or "tab-decisions").removeprefix("tab-")
        if name != self.active_tab:
            self.action_show_tab(name)

    # ------------------------------------------------------------------ the link
    def _start_when_drawn(self, tries: int = 0) -> None:
        """Start the engine once the first full frame is out.

        The footer's keys arrive a few frames after mount (Textual recomposes the footer after the screen's
        bindings settle); starting the engine before that held the whole frame back by the engine's start-up
        (~0.3 s of imports, embedded nats-server, JetStream setup and log replay on this loop). So: wait for
        the footer's keys, one more refresh, and a short gap for the driver's writer thread.
        """
        if not self.query_one(Footer).children and tries < 25:
            self.set_timer(0.02, lambda: self._start_when_drawn(tries + 1))
            return
        self.call_after_refresh(lambda: self.set_timer(0.02, self.start_link))

    @work(group="engine", exit_on_error=False, description="engine start (connect, replay the log, components)")
    async def start_link(self) -> None:
        await self.link.start()
        self.post_message(LinkReady())

    @work(group="info", exclusive=True, exit_on_error=False, description="engine info")
    async def poll_info(self) -> None:
        info = await self.link.refresh_info()
        self.post_message(InfoUpdated(dict(info)))

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
            self.engine_error = plain(str(err) or type(err).__name__)[:200]
            self._refresh_header()
        self.notify(text, title="error", severity="error", timeout=12)

    def _on_link_event(self, subject: str, ev: Any, seq: int) -> None:
        self._state_dirty = True
        if isinstance(ev, WorkerEvent) and ev.worker_id not in self._cards and ev.state not in FINAL_STATES:
            self._new_workers = True  # its card is mounted at once, not at the next (throttled) state refresh
        self._wake()
        self.post_message(StateChanged())

    def _wake(self) -> None:
        """Something is dirty: make sure the flush timer runs (it pauses itself when a tick finds nothing)."""
        if self._flush_paused and self._flush_timer is not None:
            self._flush_paused = False
            self._flush_timer.resume()

    def _on_link_chunk(self, chunk: Chunk) -> None:
        ring = self.rings.get(chunk.worker_id)
        if ring is None:
            if len(self.rings) > 2000:
                return  # a flood of unknown worker ids: ignore rather than grow without bound
            ring = self.rings[chunk.worker_id] = OutputRing()
        if ring.append(chunk.text, chunk.tokens, chunk.seq, chunk.reasoning):
            if not self._dirty_workers:
                self._wake()
            self._dirty_workers.add(chunk.worker_id)
            if self._probe is not None:
                self._probe.chunk(chunk)

    def _on_link_bus_state(self, state: str) -> None:
        self.post_message(BusStateChanged(state))

    def on_link_ready(self, _: LinkReady) -> None:
        self.ready = True
        self.engine_error = ""
        self._state_dirty = True
        self.refresh_all()
        self.poll_info()

    def on_state_changed(self, _: StateChanged) -> None:
        if self._state_refresh_due():
            self._new_workers = False
            self.refresh_state()
        elif self._new_workers:
            self._new_workers = False
            self._sync_workers()

    def on_bus_state_changed(self, event: BusStateChanged) -> None:
        self._refresh_header()
        if event.state == "reconnecting":
            self.notify("the bus connection was lost; reconnecting…", severity="warning", timeout=5)

    def on_info_updated(self, event: InfoUpdated) -> None:
        self.info = event.info
        ram = self.info.get("ram") or {}
        hist = ram.get("history") if isinstance(ram, dict) else None
        vals = _history_values(hist)
        if vals:
            self.ram_history = deque(vals, maxlen=600)
        elif num(ram, "available_mb") is not None:
            self.ram_history.append(float(ram["available_mb"]))
        self._refresh_guards()
        self._refresh_header()

    def _tick(self) -> None:
        if not self.is_running:
            return
        if self.ready:
            self.poll_info()
        self._ticks += 1
        if (
            self._streaming < BUSY_CARDS
            or self._ticks % BUSY_TABLE_TICKS == 0
            or self.link.state.version != self._state_version
        ):
            self._state_dirty = True  # ages and countdowns move
            self._wake()
        else:  # many cards streaming and no event since: only the header's countdown moves this second
            self._refresh_header()
        self._prune_rings()

    def _flush_output(self) -> None:
        """The one timer: state views when something moved, then the worker cards with new output."""
        if not self.is_running:  # shutting down: the panels are being removed, a late tick must not query them
            return
        self.flushes += 1
        if not self._dirty_workers and not self._state_dirty:
            if self._flush_timer is not None:
                self._flush_paused = True
                self._streaming = 0
                self._flush_timer.pause()  # idle: no 20 wake-ups a second; _wake resumes it
            return
        if self._state_dirty and self._state_refresh_due():
            self.refresh_state()
        if self._dirty_workers:
            dirty, self._dirty_workers = self._dirty_workers, set()
            self._streaming = len(dirty)
            for wid in dirty:
                card = self._cards.get(wid)
                if card is not None:
                    card.refresh()
                    if self._probe is not None:
                        self._probe.flushed(wid)
            if self._probe is not None:
                self.call_after_refresh(self._probe.rendered)

    def _state_refresh_due(self) -> bool:
        """Tables and cards at most every 0.25 s; every 0.5 s while many cards stream (a burst of results
        re-sorted and rebuilt the task table several times in a row, each time delaying the cards' next frame)."""
        every = STATE_REFRESH_S if self._streaming < BUSY_CARDS else BUSY_STATE_REFRESH_S
        return time.monotonic() - self._last_state_refresh >= every

    def _prune_rings(self) -> None:
        if len(self.rings) <= 200:
            return
        now = self.clock()
        for wid in list(self.rings):
            w = self.link.state.workers.get(wid)
            if wid not in self._cards and (w is None or (w.state in FINAL_STATES and now - w.at > 600)):
                del self.rings[wid]

    # ------------------------------------------------------------------ rendering
    def refresh_all(self) -> None:
        self.refresh_state()
        self._refresh_guards()

    def refresh_state(self) -> None:
        if not self.is_running:  # a call_after_refresh that lands during shutdown
            return
        self._state_dirty = False
        self._last_state_refresh = time.monotonic()
        state = self.link.state
        self._state_version = state.version
        now = self.clock()
        ttable = self.query_one("#tasks", DataTable)
        sync_table(ttable, task_rows(state, now, self.filter_text, width=max(16, ttable.size.width - 50)))
        dtable = self.query_one("#decisions", DataTable)
        sync_table(dtable, decision_rows(state, self.filter_text, width=max(10, dtable.size.width - 38)))
        fresh = [d for d in state.decisions if d not in self._seen_decisions]
        self._seen_decisions.update(fresh)
        new_pending = [d for d in fresh if state.decisions[d].status == "pending" and d in dtable.rows]
        if new_pending and self.ready:  # a new decision waits: put the cursor on it, one key approves it
            dtable.move_cursor(row=dtable.get_row_index(new_pending[-1]), animate=False)
        self.query_one("#decision-detail", DecisionDetail).show(self.selected_decision(), now)
        self._sync_workers()
        self._refresh_header()
        self._refresh_titles()

    def _refresh_header(self) -> None:
        self.query_one("#header", HeaderBar).show(
            bus_state=self.link.bus_state,
            bus_kind=self.link.bus_kind,
            link_kind=self.link.kind,
            info=self.info,
            state=self.link.state,
            demo=self.link.demo,
            approval=self.cfg["approval.mode"],
            now=self.clock(),
            engine_error=self.engine_error if not self.ready else "",
            compact=self.compact,
        )

    def _spend_info(self) -> dict[str, Any] | None:
        spend = self.info.get("spend")
        if isinstance(spend, dict) and spend:
            return spend
        if not self.ready:  # the engine is starting (engine.spend imports nats-py: not before the first frame)
            return None
        with contextlib.suppress(Exception):
            from swarm_tui.engine.guards.spend import offline_spend_summary

            out: dict[str, Any] = offline_spend_summary(self.cfg, self.link.state)
            out["price_source"] = "the event log (no spend guard reporting)"
            return out
        return None

    def _refresh_guards(self) -> None:
        ram_w = self.query_one("#ram", RamPanel)
        ram = self.info.get("ram") if isinstance(self.info.get("ram"), dict) else None
        ram_w.show(ram, list(self.ram_history))
        ram_w.set_class(bool(ram and _ram_low(ram)), "-alert")
        spend_w = self.query_one("#spend", SpendPanel)
        spend = self._spend_info()
        spend_w.show(spend)
        spend_w.set_class(_spend_frac(spend) >= 0.9, "-alert")
        self._refresh_titles()

    def _refresh_titles(self) -> None:
        state = self.link.state
        pending = len(state.pending_decisions())
        live = len(state.live_workers())
        counts: dict[str, int] = {}
        for t in state.tasks.values():
            counts[t.state] = counts.get(t.state, 0) + 1
        _set_title(
            self.query_one("#tasks-panel"),
            (
                f"Tasks {len(state.tasks)} · {counts.get('running', 0)} running · {counts.get('pending', 0)} pending"
                f" · {counts.get('done', 0)} done"
            ),
        )
        _set_title(
            self.query_one("#decisions-panel"),
            f"Decisions · {pending} waiting for approval" if pending else "Decisions",
        )
        _set_title(
            self.query_one("#workers-panel"),
            (
                f"Workers {live} live · scale {state.scale if state.scale is not None else '-'}"
                + (f" · filter “{plain(self.filter_text)}”" if self.filter_text else "")
            ),
        )
        if self.compact:
            ram = self.info.get("ram") if isinstance(self.info.get("ram"), dict) else None
            labels = {
                "decisions": f"1 Decisions{f' ({pending}!)' if pending else ''}",
                "workers": f"2 Workers {live}",
                "tasks": f"3 Tasks {len(state.tasks)}",
                "guards": "4 RAM·Spend"
                + (" LOW" if ram and _ram_low(ram) else "")
                + (" $!" if _spend_frac(self._spend_info()) >= 0.9 else ""),
            }
            for name, label in labels.items():
                tab = self.query_one(f"#tab-{name}", Tab)
                if tab.label_text != label:
                    tab.label = label

    def _sync_workers(self) -> None:
        state = self.link.state
        now = self.clock()
        flt = self.filter_text.lower()
        shown = []
        for w in state.workers.values():
            if w.state in FINAL_STATES and now - w.at > LINGER_S:
                continue
            if flt and not any(flt in x.lower() for x in (w.worker_id, w.model, w.task_id, w.state, w.role)):
                continue
            shown.append(w)
        shown.sort(key=lambda w: (w.state in FINAL_STATES, w.worker_id))
        hidden = max(0, len(shown) - MAX_CARDS)
        shown = shown[:MAX_CARDS]
        want = {w.worker_id for w in shown}
        for wid in list(self._cards):
            if wid not in want:
                self._cards.pop(wid).remove()
        new: list[WorkerCard] = []
        more = False
        batch = MOUNT_BATCH if not self.deterministic else len(shown)
        for w in shown:
            tv = state.tasks.get(w.task_id)
            task_text = tv.task.text if tv is not None else w.task_id
            card = self._cards.get(w.worker_id)
            if card is None:
                if len(new) >= batch:
                    more = True  # the rest in the next frames: one layout of 50 new cards took ~90 ms
                    continue
                ring = self.rings.setdefault(w.worker_id, OutputRing())
                card = WorkerCard(w.worker_id, ring, w, task_text)
                card.set_class(w.state in FINAL_STATES, "-final")
                self._cards[w.worker_id] = card
                new.append(card)
            else:
                card.set_event(w, task_text)
        if new:
            self.query_one("#workers-grid", Grid).mount_all(new)
        if more:
            self.call_after_refresh(self._sync_workers)
        empty = self.query_one("#workers-empty", Static)
        show_empty = not shown or hidden > 0
        if empty.display != show_empty:
            empty.display = show_empty
        note = ""
        if hidden:
            note = f"{hidden} more workers not shown (use / to filter)"
        elif not shown:
            note = "no live workers: approve a decision to start some" if self.ready else "starting the engine…"
        if note and note != getattr(empty, "_note", None):  # Static.update re-lays out the whole screen
            empty._note = note  # type: ignore[attr-defined]
            empty.update(Text(note, style="dim"))

    # ------------------------------------------------------------------ selection
    def selected_decision(self) -> DecisionView | None:
        table = self.query_one("#decisions", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no cursor yet
            return None
        return self.link.state.decisions.get(str(key))

    def _target_decision(self) -> DecisionView | None:
        dv = self.selected_decision()
        if dv is not None and dv.status == "pending":
            return dv
        pending = sorted(self.link.state.pending_decisions(), key=lambda d: d.decision.created_at, reverse=True)
        return pending[0] if pending else None

    def selected_worker(self) -> str | None:
        if isinstance(self.focused, WorkerCard):
            return self.focused.worker_id
        if self._last_worker in self._cards:
            return self._last_worker
        return None

    def on_descendant_focus(self, event: Any) -> None:
        widget = event.widget
        if isinstance(widget, WorkerCard):
            self._last_worker = widget.worker_id
            self._expand_card(widget, True)

    def on_descendant_blur(self, event: Any) -> None:
        if isinstance(event.widget, WorkerCard):
            self._expand_card(event.widget, False)

    def _expand_card(self, card: WorkerCard, on: bool) -> None:
        grid = self.query_one("#workers-grid", Grid)
        if on:
            card.styles.column_span = grid.styles.grid_size_columns or 1
            panel_h = self.query_one("#workers-panel").content_size.height
            card.styles.height = max(9, panel_h - 1)
            card.scroll_visible(animate=False)
        else:
            card.styles.column_span = 1
            card.styles.height = None

    @on(DataTable.RowHighlighted, "#decisions")
    def _decision_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.query_one("#decision-detail", DecisionDetail).show(self.selected_decision(), self.clock())

    @on(DataTable.RowSelected, "#decisions")
    def _decision_selected(self, _: DataTable.RowSelected) -> None:
        self.action_expand()

    @on(DataTable.RowSelected, "#tasks")
    def _task_selected(self, _: DataTable.RowSelected) -> None:
        self.action_expand()

    # ------------------------------------------------------------------ actions
    async def _control(self, verb: str, args: dict[str, Any], done: str) -> bool:
        try:
            reply = await self.link.control(verb, args)
        except Exception as exc:  # noqa: BLE001 - the bus may be down: say so, stay up
            log.warning("control %s failed: %s", verb, exc)
            self.notify(f"{verb} failed: {plain(str(exc))[:200]}", severity="error")
            return False
        if reply is None:
            self.notify(f"{verb}: no engine answers on the bus", severity="error")
            return False
        if not reply.ok:
            self.notify(plain(reply.error)[:300], title=verb, severity="warning")
            return False
        self.notify(done, timeout=3)
        self._state_dirty = True
        return True

    async def action_approve(self) -> None:
        dv = self._target_decision()
        if dv is None:
            self.notify("no decision is waiting for approval", severity="warning")
            return
        await self._control("approve", {"id": dv.id}, f"approved {dv.id} ({len(dv.plan)} workers)")

    async def action_reject(self) -> None:
        dv = self._target_decision()
        if dv is None:
            self.notify("no decision is waiting for approval", severity="warning")
            return
        await self._control("reject", {"id": dv.id}, f"rejected {dv.id}")

    def action_edit_workers(self) -> None:
        dv = self._target_decision()
        if dv is None:
            self.notify("no decision is waiting for approval", severity="warning")
            return
        max_scale = self.cfg["swarm.max_scale"]

        def check(v: str) -> str:
            return "" if v.isdigit() and 0 <= int(v) <= max_scale else f"a whole number 0..{max_scale}"

        async def done(value: str | None) -> None:
            if value is not None:
                await self._control("edit", {"id": dv.id, "workers": int(value)}, f"{dv.id} now has {value} workers")

        self.push_screen(
            InputScreen(f"Workers for decision {dv.id} (now {len(dv.plan)})", value=str(len(dv.plan)), check=check),
            done,
        )

    async def action_scale(self, delta: int) -> None:
        current = self.link.state.scale if self.link.state.scale is not None else self.cfg["swarm.scale"]
        await self._control(
            "scale", {"delta": int(delta), "current": current}, f"scale {'up' if delta > 0 else 'down'}"
        )

    async def action_cancel_worker(self) -> None:
        wid = self.selected_worker()
        if wid is None:
            self.notify("select a worker first (tab to a worker card)", severity="warning")
            return
        await self._control("cancel", {"worker": wid}, f"cancelling {wid}")

    def action_cancel_all(self) -> None:
        live = len(self.link.state.live_workers())

        async def done(yes: bool | None) -> None:
            if yes:
                await self._control("cancel", {"all": True}, f"cancelling all {live} workers")

        self.push_screen(ConfirmScreen(f"Cancel all {live} live workers? Their partial output is kept."), done)

    async def action_pause(self) -> None:
        cond = self.info.get("conductor") or {}
        paused = bool(cond.get("paused", self.link.state.paused)) or self.link.state.paused
        if paused:
            await self._control("resume", {}, "heartbeat resumed")
        else:
            await self._control("pause", {}, "heartbeat paused")

    def action_new_task(self) -> None:
        async def done(text: str | None) -> None:
            if not text:
                return
            try:
                task_id = await self.link.submit_task(text)
            except Exception as exc:  # noqa: BLE001
                self.notify(f"could not publish the task: {plain(str(exc))[:200]}", severity="error")
                return
            self.notify(f"task {task_id} published", timeout=3)

        self.push_screen(InputScreen("New task", placeholder="what should the swarm do?"), done)

    def action_expand(self) -> None:
        focused = self.focused
        if isinstance(focused, WorkerCard):
            ring = focused.ring
            body = (
                Text(ring.text())
                if ring.size
                else Text(ring.reasoning or "(no output yet)", style="dim italic" if ring.reasoning else "")
            )
            note = f"{focused.worker_id}: the last {ring.size} characters on screen"
            if ring.dropped:
                note += f" ({ring.dropped} earlier ones are in the result: swarm-tui result {focused.ev.task_id})"
            self.push_screen(TextScreen(note, body))
            return
        if focused is not None and focused.id == "tasks":
            table = self.query_one("#tasks", DataTable)
            if table.row_count:
                key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
                tv = self.link.state.tasks.get(key)
                if tv is not None:
                    t = Text()
                    t.append(f"{tv.id} · priority {tv.task.priority} · {tv.state}", style="bold")
                    if tv.reason:
                        t.append(f" · {plain(tv.reason)}")
                    t.append(f" · spent {fmt_usd(tv.spend_usd)}\n\n")
                    t.append(plain(tv.task.text, keep_newlines=True))
                    for r in self.link.state.task_results(tv.id):
                        why = f" · {plain(r.reason)[:200]}" if r.reason else ""
                        t.append(
                            f"\n\n--- {plain(r.role) or 'worker'} step {r.step} · {plain(r.model)} · {r.state}{why}\n",
                            style="bold",
                        )
                        t.append(plain(r.text, keep_newlines=True))
                    self.push_screen(TextScreen(f"task {tv.id}", t))
            return
        dv = self.selected_decision()
        if dv is None:
            self.notify("nothing selected to expand", severity="warning")
            return
        self.push_screen(TextScreen(f"decision {dv.id}", decision_full_text(dv)))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_state()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        if not event.value.strip():
            box.display = False
        self.query_one("#decisions" if not self.compact or self.active_tab != "tasks" else "#tasks").focus()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.refresh_state()
            self.query_one("#decisions", DataTable).focus()

    def action_help(self) -> None:
        rows = []
        keymap = dict(getattr(self, "_keymap", {}) or {})
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            key = keymap.get(b.id or "", b.key_display or b.key)
            rows.append((key, b.tooltip or f"show {b.description}", b.id or ""))
        notes = [
            'Remap any key in the config file\'s [keys] table, e.g.  approve = "y"  (ids on the right).',
            "ctrl+p opens the command palette with the same actions. tab moves between panels;",
            "focusing a worker card expands it; enter shows its whole on-screen output.",
            "Model output is shown as plain text: markup and escape sequences are made inert.",
            f"Screen refresh of streaming output: every {int(self.refresh_s * 1000)} ms "
            "(--refresh-ms or ui.refresh_ms; raise it on slow ssh links). NO_COLOR is honoured.",
        ]
        self.push_screen(HelpScreen(rows, notes))

    async def action_quit(self) -> None:
        live = len(self.link.state.live_workers())
        if live and self.link.kind == "embedded engine":

            async def done(yes: bool | None) -> None:
                if yes:
                    await self.shutdown()

            self.push_screen(
                ConfirmScreen(
                    f"{live} workers are running in this process. Quitting stops them "
                    "(their partial output is kept). Quit?"
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
        self.query_one("#header", HeaderBar).update(Text(" stopping the engine… ", style="bold reverse"))
        try:
            await asyncio.wait_for(self.link.stop(), 15)
            log.info("the engine stopped; leaving the screen")
        except Exception:  # noqa: BLE001
            log.exception("stopping the engine failed")
        if self._probe is not None:
            self._probe.write()
        self.exit(code)

    def terminal_lost(self) -> None:
        """The pty closed or the ssh link dropped (called by the driver on the loop): the clean stop."""
        self._tasks.add(asyncio.ensure_future(self.shutdown(0)))

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGHUP lead to the same clean stop as `q` (the terminal is restored by Textual on exit).

        Plain ``signal.signal`` handlers, not ``loop.add_signal_handler``: the loop's wakeup fd can be taken
        over by other code, and then loop-level handlers never run (seen here).
        """
        loop = asyncio.get_running_loop()

        def handler(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping", signum)
            loop.call_soon_threadsafe(lambda: self._tasks.add(asyncio.ensure_future(self.shutdown(0))))

        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)

    def _fatal_error(self) -> None:
        """A crash: log it and show a traceback WITHOUT local variables (they could hold a key)."""
        import sys

        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        log.error("the app crashed", exc_info=sys.exc_info())
        self.bell()
        tb = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(Segments(self.console.render(tb, self.console.options)))
        self._close_messages_no_wait()


def _real_terminal_driver() -> Any:
    """On Linux, a driver that notices when the terminal goes away (see driver.py); else Textual's choice."""
    import sys

    if sys.platform.startswith("linux"):
        from swarm_tui.tui.driver import SafeLinuxDriver

        return SafeLinuxDriver
    return None


def _set_title(widget: Any, title: str) -> None:
    """A panel's border title, set only when it changed (every assignment repaints the whole panel)."""
    if widget.border_title != title:
        widget.border_title = title


def _ram_low(ram: dict[str, Any]) -> bool:
    if ram.get("low"):
        return True
    avail, head = num(ram, "available_mb"), num(ram, "headroom_mb")
    return avail is not None and head is not None and avail < head


def _spend_frac(spend: dict[str, Any] | None) -> float:
    ceiling = num(spend, "ceiling_usd")
    if not ceiling:
        return 0.0
    return ((num(spend, "today_usd") or 0.0) + (num(spend, "reserved_usd") or 0.0)) / ceiling


def _history_values(hist: Any) -> list[float]:
    """Available MB from a RAM history: [[t, mb], ...], [{"available_mb": mb}, ...] or [mb, ...]."""
    if not isinstance(hist, list):
        return []
    out: list[float] = []
    for h in hist:
        if isinstance(h, list | tuple) and len(h) >= 2 and isinstance(h[1], int | float):
            out.append(float(h[1]))
        elif isinstance(h, dict) and isinstance(h.get("available_mb"), int | float):
            out.append(float(h["available_mb"]))
        elif isinstance(h, int | float) and not isinstance(h, bool):
            out.append(float(h))
    return out

"""The control room: the main screen's panels, their layout on wide and narrow terminals, the filter box.

It is given its parts when made (the link, the rings, the clock, the render scheduler, the keymap, the
needs-you watch, the control client) and draws from them and from what the App sets as it learns it (``info``,
``ready``, ``engine_error``); it decides nothing about *when* (that is the render scheduler's job). Its keys
and what they do are ``room_actions.py``'s. Wide terminals show every panel; narrow ones (``-compact``) one tab
at a time.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.events import Key
from textual.geometry import Size
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static, Tab, Tabs

from swarm_tui.engine.info import AnySpend, EngineInfo, RamSummary, usable
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.projection.figures import task_counts, tasks_title
from swarm_tui.textsafe import plain
from swarm_tui.tui.commands import HELP_ACTION, shown_key
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.link import Link, ReplayLink
from swarm_tui.tui.messages import RoomReady
from swarm_tui.tui.model import OutputRing
from swarm_tui.tui.render_scheduler import RenderScheduler
from swarm_tui.tui.screens.room_actions import RoomActions, RoomAttention
from swarm_tui.tui.widgets.decision_detail import DecisionDetail
from swarm_tui.tui.widgets.decision_table import DecisionTable, table_height
from swarm_tui.tui.widgets.header_bar import HeaderBar, HeaderView
from swarm_tui.tui.widgets.key_bar import KeyBar
from swarm_tui.tui.widgets.ram_panel import RamPanel, RamReading
from swarm_tui.tui.widgets.spend_panel import SpendPanel
from swarm_tui.tui.widgets.table_fit import decision_rows, no_match, room_of, sync_table, task_rows, widths_of
from swarm_tui.tui.widgets.workers_panel import PoolFacts, WorkersPanel, lane_words

COMPACT_WIDTH = 110  # narrower or lower than this: one panel at a time, chosen with tabs (keys 1-4)
COMPACT_HEIGHT = 30
TABS = ("decisions", "workers", "tasks", "guards")
TAB_LABELS = ("1 Decisions", "2 Workers", "3 Tasks", "4 RAM·Spend")
# the containers each tab shows on a narrow terminal
TAB_PANELS = {
    "decisions": {"right", "decisions-panel"},
    "workers": {"left", "workers-panel"},
    "tasks": {"left", "tasks-panel"},
    "guards": {"right", "guards"},
}


class ControlRoom(RoomActions):
    """The App's default screen. The widgets are made here, so the App reaches them as attributes (no query on
    the hot paths); their ids stay for app.tcss and the tests."""

    AUTO_FOCUS = "#decisions"  # focused before the first frame (the first focusable, Tasks, then lost it: a repaint)

    # set by the App as it learns them; watchers redraw what shows them (``var``: no repaint of the whole screen)
    info: var[EngineInfo] = var(EngineInfo, init=False, always_update=True)  # every poll adds a RAM reading
    ready: var[bool] = var(False, init=False)  # the engine runs and the log is replayed
    engine_error: var[str] = var("", init=False)  # why the engine did not start (the header says it)
    decision_table: DecisionTable  # the room's actions see a DataTable; here, one that knows who moved it

    def __init__(
        self,
        link: Link,
        *,
        info: EngineInfo,
        rings: dict[str, OutputRing],
        clock: Callable[[], float],
        scheduler: RenderScheduler,
        keymap: dict[str, str],
        attention: RoomAttention,
        controls: ControlClient,
        deterministic: bool = False,
        ram_history: list[float] | None = None,
        screen_id: str = "_default",
    ) -> None:
        super().__init__(id=screen_id)  # the App's default screen (App.query_one looks here); else a replay's
        self.link = link
        self.set_reactive(ControlRoom.info, info)
        self.rings = rings
        self.clock = clock  # wall time, for ages and countdowns (a fixed instant in the scenes)
        self.scheduler = scheduler
        self.keymap = keymap
        self.attention = attention
        self.controls = controls
        self.deterministic = deterministic  # scenes and snapshots: every card at once
        self.ram_history: deque[float] = deque(ram_history or [], maxlen=600)
        self.compact = False
        self.active_tab = "decisions"
        self.filter_text = ""
        self._seen_decisions: set[str] = set()
        self.header_bar = HeaderBar(id="header")
        self.task_table: DataTable[Any] = DataTable(id="tasks", cursor_type="row", zebra_stripes=False)
        self.tasks_note = Static(id="tasks-note")  # the filter matches no task
        self.tasks_note_text = ""
        self.decision_table = DecisionTable(id="decisions")
        self.decision_lines = 0  # the Decisions table's height now (widgets/decision_table.py: table_height)
        self.detail_view = DecisionDetail(id="decision-detail", keymap=keymap, clock=clock)
        self.workers_panel = WorkersPanel(scheduler.tuning, id="workers-panel", classes="panel")
        self.ram_panel = RamPanel(id="ram", classes="panel")
        self.spend_panel = SpendPanel(id="spend", classes="panel")
        self.filter_box = Input(
            id="filter", placeholder="filter tasks, decisions and workers · enter keeps it · escape clears"
        )
        self.footer = KeyBar(keep=(HELP_ACTION,))

    def watch_info(self, info: EngineInfo) -> None:
        """The engine's new info (the App's poll): a RAM reading, the guards' panels and the header."""
        self.take_ram_reading(info)
        self.workers_panel.facts = PoolFacts.of(info, self.link.cfg.swarm.ack_wait_s)
        self.show_guards()
        self.show_header()

    def watch_engine_error(self) -> None:
        self.show_header()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield self.header_bar
        yield Tabs(*(Tab(label, id=f"tab-{n}") for n, label in zip(TABS, TAB_LABELS, strict=True)), id="tabs")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                with Vertical(id="tasks-panel", classes="panel"):
                    yield self.task_table
                    yield self.tasks_note
                yield self.workers_panel
            with Vertical(id="right"):
                with Vertical(id="decisions-panel", classes="panel"):
                    yield self.decision_table
                    with VerticalScroll(id="decision-scroll", can_focus=False):  # a long detail scrolls
                        yield self.detail_view
                with Vertical(id="guards"):
                    yield self.ram_panel
                    yield self.spend_panel
        yield self.filter_box
        yield self.footer

    def on_mount(self) -> None:
        self.task_table.add_columns("id", "age", "pri", "state", "text")
        self.decision_table.add_columns("", "id", "plan", "est. cost")
        self.query_one("#tasks-panel").border_title = "Tasks"
        self.workers_panel.border_title = "Workers"
        self.query_one("#decisions-panel").border_title = "Decisions"
        self.ram_panel.border_title = "RAM"
        self.spend_panel.border_title = "Spend"
        self.filter_box.display = False
        self.tasks_note.display = False
        self.apply_layout(self.app.size.width, self.app.size.height)
        self.show_state()  # the first frame shows what the App's first refresh would: not redrawn a frame later
        self.show_guards()
        self.post_message(RoomReady())  # the App starts the timers and the engine once the panels exist

    def terminal_resized(self, size: Size) -> None:
        """The terminal's new size, from the App's Resize. Not the screen's own Resize events: a screen hears of
        one terminal resize several times (and in a headless run they alternate between two sizes for good, so a
        layout per event never ended)."""
        if not self.is_mounted:  # the first size can come before the panels: on_mount lays them out
            return
        self.apply_layout(size.width, size.height)
        self.call_after_refresh(self.refresh_state)  # column widths follow the new size

    def apply_layout(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        self.compact = compact
        self.set_class(compact, "-compact")
        self.query_one("#tabs").display = compact
        self.footer.compact = compact
        self._show_panels()
        self.workers_panel.set_columns(max(1, (width * 2 // 3 if not compact else width) // 40))

    def _show_panels(self) -> None:
        visible = TAB_PANELS[self.active_tab]
        for ident in ("left", "right", "tasks-panel", "workers-panel", "decisions-panel", "guards"):
            self.query_one(f"#{ident}").display = (not self.compact) or ident in visible

    def action_show_tab(self, name: str) -> None:
        self.show_tab(name)

    def show_tab(self, name: str) -> None:
        if name not in TABS:
            return
        self.active_tab = name
        if self.compact:
            tabs = self.query_one("#tabs", Tabs)
            if tabs.active != f"tab-{name}":
                tabs.active = f"tab-{name}"
        self._show_panels()
        if name == "decisions":
            self.decision_table.focus()
        elif name == "tasks":
            self.task_table.focus()
        elif name == "workers":
            self.workers_panel.focus_first()
        if self.compact and self.is_mounted:  # a table sized while hidden is cut to nothing: fit it to its width
            self.call_after_refresh(self.refresh_state)

    @on(Tabs.TabActivated, "#tabs")
    def _tab_activated(self, event: Tabs.TabActivated) -> None:
        name = (event.tab.id or "tab-decisions").removeprefix("tab-")
        if name != self.active_tab:
            self.show_tab(name)

    # ------------------------------------------------------------------ the filter box
    def action_filter(self) -> None:
        self.open_filter()

    def open_filter(self) -> None:
        self.filter_box.display = True
        self.filter_box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_state()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.filter_box.display = False
        (self.task_table if self.compact and self.active_tab == "tasks" else self.decision_table).focus()

    def on_key(self, event: Key) -> None:
        """Escape clears the filter, also once enter kept it (the panels' "no ... matches" lines say so)."""
        if event.key == "escape" and (self.filter_box.has_focus or self.filter_text):
            event.stop()
            typing = self.filter_box.has_focus
            self.filter_box.value = ""
            self.filter_box.display = False
            self.filter_text = ""
            self.refresh_state()
            if typing:
                self.decision_table.focus()

    # ------------------------------------------------------------------ selection
    @on(DataTable.RowHighlighted, "#decisions")
    def _decision_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.detail_view.decision = self.selected_decision()

    # ------------------------------------------------------------------ drawing
    def refresh_state(self) -> None:
        """Rebuild the state views now (and tell the render scheduler they are fresh)."""
        if not self.app.is_running:  # a call_after_refresh that lands during shutdown
            return
        self.scheduler.state_shown(self.link.state.version)
        self.attention.check()
        self.show_state()

    def show_state(self) -> None:
        """Tables, the decision detail, the cards, the header and the panels' titles, from the state now."""
        state = self.link.state
        now = self.clock()
        ttable = self.task_table
        sync_table(
            ttable, task_rows(state, now, self.filter_text, width=room_of(ttable), floor=widths_of(ttable)), fit=4
        )
        self.show_tasks_note(not ttable.row_count)
        self.show_decisions()
        self.sync_workers()
        self.show_header()
        self.show_titles()
        self.footer.labels = {"pause": "Resume"} if state.paused else {}  # p says what it does now

    def show_tasks_note(self, empty: bool) -> None:
        note = no_match("task", self.filter_text) if empty and self.filter_text else ""
        if note and note != self.tasks_note_text:
            self.tasks_note_text = note
            self.tasks_note.update(Text(note, style="dim"))
        if self.tasks_note.display != bool(note):
            self.tasks_note.display = bool(note)

    def show_decisions(self) -> None:
        """The Decisions table (what waits first), its height, its cursor and the detail under it."""
        state, dtable = self.link.state, self.decision_table
        rows = decision_rows(state, self.filter_text, width=room_of(dtable), floor=widths_of(dtable))
        sync_table(dtable, rows, fit=2)
        waiting = sum(1 for key, _ in rows if state.decisions[key].status == "pending")
        fresh = [d for d in state.decisions if d not in self._seen_decisions]
        self._seen_decisions.update(fresh)
        if self.ready and any(state.decisions[d].status == "pending" and d in dtable.rows for d in fresh):
            dtable.chosen = False  # a new decision waits: the cursor goes to it, one key approves it
        if not dtable.chosen:
            dtable.follow(0 if waiting else None)  # the waiting ones come first, the newest on top
        lines = table_height(len(rows), waiting)
        if lines != self.decision_lines:
            self.decision_lines = lines
            dtable.styles.height = lines
        if self.filter_text and not rows:
            self.detail_view.empty = no_match("decision", self.filter_text)
        elif rows:
            self.detail_view.empty = "nothing waits for approval: ↑/↓ shows a past decision"
        else:
            self.detail_view.empty = ""  # the detail's own: no decision yet
        self.detail_view.decision = self.selected_decision()

    def sync_workers(self) -> None:
        if not self.is_running:  # a call_after_refresh that lands during shutdown
            return
        more = self.workers_panel.sync(
            self.link.state,
            self.rings,
            self.clock(),
            self.filter_text,
            ready=self.ready,
            batch=self.scheduler.mount_batch(self.deterministic),
        )
        if more:
            self.call_after_refresh(self.sync_workers)

    def show_header(self) -> None:
        link = self.link
        self.header_bar.view = HeaderView(
            bus_state=link.bus_state,
            bus_kind=link.bus_kind,
            link_kind=link.kind,
            info=self.info,
            state=link.state,
            demo=link.demo,
            approval=link.cfg.approval.mode,
            engine_error=self.engine_error if not self.ready else "",
            compact=self.compact,
            needs=tuple(self.attention.badge()),
            needs_key=shown_key("attention", self.keymap),
            configured_scale=self.link.cfg.swarm.scale,
            has_key=bool(link.cfg.openrouter.api_key or link.cfg.openrouter.management_key)
            or link.kind == "remote engine",  # its engine's key: its info
            local_roles=self._local_roles(),
            pause_key=shown_key("pause", self.keymap),
            replay=link.where if isinstance(link, ReplayLink) else "",
        )

    def _local_roles(self) -> bool:
        return any(is_local_chat(r.model) for r in self.link.cfg.roles.values())

    def spend_info(self) -> AnySpend | None:
        spend = usable(self.info.get("spend"))
        if spend:
            return spend
        if not self.ready:  # the engine is starting (engine.spend imports nats-py: not before the first frame)
            return None
        with contextlib.suppress(Exception):  # the log's figures are a best effort: without them, no panel figures
            from swarm_tui.engine.guards.spend_status import offline_spend_summary

            out = offline_spend_summary(self.link.cfg, self.link.state)
            out["price_source"] = "the event log (no spend guard reporting)"
            return out
        return None

    def take_ram_reading(self, info: EngineInfo) -> None:
        """The RAM history from new engine info: the RAM guard's own history when it sends one, else one more
        reading of the available MB."""
        ram = usable(info.get("ram"))
        vals = _history_values(ram.get("history") if ram is not None and "history" in ram else None)
        if vals:
            self.ram_history = deque(vals, maxlen=600)
        elif ram is not None and isinstance(ram.get("available_mb"), int | float):
            self.ram_history.append(float(ram["available_mb"]))

    def show_guards(self) -> None:
        ram = usable(self.info.get("ram"))
        self.ram_panel.reading = RamReading(ram, tuple(self.ram_history))
        self.ram_panel.set_class(bool(ram and ram_low(ram)), "-alert")
        spend = self.spend_info()
        self.spend_panel.local_only = self._local_roles() and not self.link.cfg.openrouter.api_key
        self.spend_panel.spend = spend
        self.spend_panel.set_class(spend_frac(spend) >= 0.9, "-alert")
        self.show_titles()

    def show_titles(self) -> None:
        state = self.link.state
        pending = len(state.pending_decisions())
        live = len(state.live_workers())
        _set_title(self.query_one("#tasks-panel"), tasks_title(task_counts(t.state for t in state.tasks.values())))
        _set_title(
            self.query_one("#decisions-panel"),
            f"Decisions · {pending} waiting for approval" if pending else "Decisions",
        )
        _set_title(
            self.workers_panel,
            (
                f"Workers {live} live · scale {state.scale_figure(self.link.cfg.swarm.scale).value}"
                + (f" · {lane}" if (lane := lane_words(self.info)) else "")
                + (f" · filter “{plain(self.filter_text)}”" if self.filter_text else "")
            ),
        )
        if self.compact:
            ram = usable(self.info.get("ram"))
            labels = {
                "decisions": f"1 Decisions{f' ({pending}!)' if pending else ''}",
                "workers": f"2 Workers {live}",
                "tasks": f"3 Tasks {len(state.tasks)}",
                "guards": "4 RAM·Spend"
                + (" LOW" if ram and ram_low(ram) else "")
                + (" $!" if spend_frac(self.spend_info()) >= 0.9 else ""),
            }
            for name, label in labels.items():
                tab = self.query_one(f"#tab-{name}", Tab)
                if tab.label_text != label:
                    tab.label = label


def _set_title(widget: Widget, title: str) -> None:
    """A panel's border title, set only when it changed (every assignment repaints the whole panel). As
    ``Content``: a str border title is parsed as markup, and the Workers title quotes the filter as typed."""
    if widget.border_title != Content(title).markup:  # the getter gives the title back as markup
        widget.border_title = Content(title)


def ram_low(ram: RamSummary) -> bool:
    """Available RAM under the headroom (the panel's border turns red)."""
    if ram.get("low"):
        return True
    avail, head = ram.get("available_mb"), ram.get("headroom_mb")
    return avail is not None and head is not None and avail < head


def spend_frac(spend: AnySpend | None) -> float:
    """Spent and reserved today as a fraction of the ceiling (0.9 and up: the Spend panel's alert)."""
    ceiling = spend.get("ceiling_usd") if spend else None
    if not spend or not ceiling:
        return 0.0
    return ((spend.get("today_usd") or 0.0) + (spend.get("reserved_usd") or 0.0)) / ceiling


def _history_values(hist: object) -> list[float]:
    """Available MB from the RAM guard's history (``RamInfo["history"]``: ``[[t, mb], ...]``). It may come from
    an engine elsewhere (``--attach``), so an entry of another shape is skipped, not trusted."""
    if not isinstance(hist, list):
        return []
    return [float(h[1]) for h in hist if isinstance(h, list) and len(h) == 2 and isinstance(h[1], int | float)]

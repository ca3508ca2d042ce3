"""What the control room's keys and the palette do there: its selection, and the actions on it.

An action reads the room's selection and asks the engine through the ``ControlClient`` (a worker of the App:
the key returns at once, the request follows in order), or opens a dialog whose answer does. The layout and the
drawing are ``control_room.py``'s; ``ControlRoom`` is this screen with its panels.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Protocol

from textual import on
from textual.screen import Screen
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from swarm_tui.engine.info import AnySpend, Need
from swarm_tui.engine.projection.state import DecisionView, SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.attention.watch import Places
from swarm_tui.tui.commands import ROOM_BINDINGS
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.details import decision_full_text, worker_detail
from swarm_tui.tui.link import Link
from swarm_tui.tui.model import fmt_usd, plural
from swarm_tui.tui.screens.confirm import ConfirmScreen
from swarm_tui.tui.screens.prompt import InputScreen
from swarm_tui.tui.screens.text import TextScreen
from swarm_tui.tui.widgets.worker_card import WorkerCard
from swarm_tui.tui.widgets.workers_panel import BLOCKED_CHARS, SCALE_ZERO, WorkersPanel


class RoomAttention(Protocol):
    """What the room needs of the needs-you watch: the header's badge, a look now, and the ``!`` key."""

    def badge(self) -> list[Need]:
        """The kinds nobody has seen, newest first."""

    def check(self) -> None:
        """One look: alert what just started to need you."""

    def go(self, places: Places) -> None:
        """To the newest thing that needs you, everything shown marked seen."""


class RoomActions(Screen[None]):
    """The control room's selection and actions; its parts and panels are set by ``ControlRoom``."""

    BINDINGS = ROOM_BINDINGS
    palette_home: ClassVar[bool] = True  # a palette entry a dialog above lacks runs on the nearest room (commands)

    link: Link
    controls: ControlClient
    keymap: dict[str, str]
    attention: RoomAttention
    decision_table: DataTable[Any]
    task_table: DataTable[Any]
    workers_panel: WorkersPanel

    # ------------------------------------------------------------------ selection
    def selected_decision(self) -> DecisionView | None:
        table = self.decision_table
        if not table.row_count or not table.show_cursor:  # hidden: nothing waits and nobody chose a row
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # no cursor yet
            return None
        return self.link.state.decisions.get(str(key))

    def selected_task(self) -> str | None:
        table = self.task_table
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def target_decision(self) -> DecisionView | None:
        """What approve/reject/edit act on: the selected decision if it waits, else the newest one waiting."""
        dv = self.selected_decision()
        if dv is not None and dv.status == "pending":
            return dv
        pending = self.link.state.pending_decisions()
        return max(pending, key=lambda d: d.decision.created_at) if pending else None

    def _select_row(self, table: DataTable[Any], key: str) -> None:
        with contextlib.suppress(RowDoesNotExist):  # the row may be filtered out: then the cursor stays
            table.move_cursor(row=table.get_row_index(key))
            table.focus()

    def show_tab(self, name: str) -> None:
        """Show one of the room's tabs (the control room lays them out)."""
        raise NotImplementedError

    def spend_info(self) -> AnySpend | None:
        """The Spend panel's figures (the control room reads them from the engine's info, or the log)."""
        raise NotImplementedError

    def start_blocked(self) -> str:
        """Why an approved decision's workers would not start now ("" when nothing known stops them)."""
        spend = self.spend_info()
        ceiling, today = (spend.get("ceiling_usd"), spend.get("today_usd") or 0.0) if spend else (None, 0.0)
        if ceiling and today >= ceiling:
            return (
                f"over the ceiling ({fmt_usd(today, 2)} spent of {fmt_usd(ceiling, 2)} today): "
                "no cloud job starts until `swarm-tui budget USD` raises it"
            )
        if self.workers_panel.facts.blocked:  # from the engine's info: cleaned and cut for a toast
            return plain(self.workers_panel.facts.blocked[:BLOCKED_CHARS])[:BLOCKED_CHARS]
        if self.link.state.scale_figure(self.link.cfg.swarm.scale).value == 0:
            return SCALE_ZERO
        return ""

    def select_newest_pending(self) -> None:
        """The newest decision that waits for approval, under the cursor (``!`` goes there)."""
        pending = self.link.state.pending_decisions()
        if pending:
            self._select_row(self.decision_table, max(pending, key=lambda d: d.decision.created_at).id)

    def select_newest_failed(self) -> None:
        """The task of the newest failed job, under the cursor of the Tasks table."""
        failed = [r for r in self.link.state.results.values() if r.state == "failed"]
        if failed:
            self._select_row(self.task_table, max(failed, key=lambda r: r.ended_at).task_id)

    def _task_for_results(self) -> str | None:
        """The task copy, save, compare and promote work on here: the Tasks table's selection."""
        task_id = self.selected_task()
        if task_id is None or task_id not in self.link.state.tasks:
            self.app.notify(
                "select a task first (the Tasks panel), or open its results with enter",
                severity="warning",
                markup=False,
            )
            return None
        return task_id

    @on(DataTable.RowSelected, "#decisions")
    def _decision_selected(self, _: DataTable.RowSelected) -> None:
        self.action_expand()

    @on(DataTable.RowSelected, "#tasks")
    def _task_selected(self, _: DataTable.RowSelected) -> None:
        self.action_expand()

    # ------------------------------------------------------------------ decisions
    def _no_pending(self) -> None:
        self.app.notify("no decision is waiting for approval", severity="warning", markup=False)

    def action_approve(self) -> None:
        dv = self.target_decision()
        if dv is None:
            return self._no_pending()
        why = self.start_blocked()
        if why:  # said at once, and on the cards for as long as it holds
            self.app.notify(f"{dv.id} will not start now: {why}", severity="warning", timeout=10, markup=False)
        self.controls.send("approve", {"id": dv.id}, f"approved {dv.id} ({plural(len(dv.plan), 'worker')})")

    def action_reject(self) -> None:
        dv = self.target_decision()
        if dv is None:
            return self._no_pending()
        self.controls.send("reject", {"id": dv.id}, f"rejected {dv.id}")

    def action_edit_workers(self) -> None:
        dv = self.target_decision()
        if dv is None:
            return self._no_pending()
        max_scale = self.link.cfg.swarm.max_scale

        def check(v: str) -> str | None:  # said in the dialog; None: accepted
            return None if v.isdigit() and 0 <= int(v) <= max_scale else f"a whole number 0..{max_scale}"

        def done(value: str | None) -> None:
            if value is not None:
                self.controls.send(
                    "edit", {"id": dv.id, "workers": int(value)}, f"{dv.id} now has {plural(int(value), 'worker')}"
                )

        self.app.push_screen(
            InputScreen(f"Workers for decision {dv.id} (now {len(dv.plan)})", value=str(len(dv.plan)), check=check),
            done,
        )

    # ------------------------------------------------------------------ workers and the heartbeat
    def action_scale(self, delta: int) -> None:
        state = self.link.state
        current = state.scale_figure(self.link.cfg.swarm.scale).value
        # no toast when it is done: the header and the Workers title show the new value (a toast per key flooded
        # the screen without saying it); a refusal still says why
        self.controls.send("scale", {"delta": int(delta), "current": current}, "")

    def action_cancel_worker(self) -> None:
        # the focus on top: a palette entry chosen over a dialog acts on the dialog's focus, not a card behind it
        wid = self.workers_panel.selected_worker(self.app.focused)
        if wid is None:
            self.app.notify("select a worker first (tab to a worker card)", severity="warning", markup=False)
            return
        self.controls.send("cancel", {"worker": wid}, f"cancelling {wid}")

    def action_cancel_all(self) -> None:
        live = len(self.link.state.live_workers())

        def done(yes: bool | None) -> None:
            if yes:
                self.controls.send("cancel", {"all": True}, f"cancelling {plural(live, 'live worker')}")

        self.app.push_screen(ConfirmScreen(f"Cancel {plural(live, 'live worker')}? The partial output is kept."), done)

    def action_pause(self) -> None:
        if self.link.state.paused:  # from the event log (the conductor's info has no flag of its own)
            self.controls.send("resume", {}, "heartbeat resumed")
        else:
            self.controls.send("pause", {}, "heartbeat paused")

    def action_new_task(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self.controls.submit_task(text)

        def too_large(text: str) -> str | None:  # said in the dialog, the text kept for editing
            from swarm_tui.engine.bus.wire import task_text_problem

            return task_text_problem(text)

        self.app.push_screen(InputScreen("New task", placeholder="what should the swarm do?", check=too_large), done)

    def action_attention(self) -> None:
        self.attention.go(self)

    # ------------------------------------------------------------------ looking closer
    def action_expand(self) -> None:
        focused = self.app.focused  # see action_cancel_worker
        if isinstance(focused, WorkerCard):
            self.app.push_screen(TextScreen(*worker_detail(focused)))
            return
        if focused is not None and focused is self.task_table:
            task_id = self.selected_task()
            if task_id is not None and task_id in self.link.state.tasks:
                from swarm_tui.tui.exports import export_dir  # Markdown: ~50 ms of imports, not at start
                from swarm_tui.tui.screens.results import ResultsScreen

                state, cfg = self.link.state, self.link.cfg
                self.app.push_screen(ResultsScreen(state, task_id, export_dir(cfg), self.keymap, self.controls))
            return
        dv = self.selected_decision()
        if dv is None:
            self.app.notify("nothing selected to expand", severity="warning", markup=False)
            return
        self.app.push_screen(TextScreen(f"decision {dv.id}", decision_full_text(dv)))

    def action_history(self) -> None:
        """The past tasks, read off the state this room shows now (a replay's room, the live app's timeline too,
        shows the state at its position: then they are the past's)."""
        from swarm_tui.tui.exports import export_dir
        from swarm_tui.tui.screens.history import HistoryScreen

        def state_now() -> SwarmState:
            return self.link.state

        self.app.push_screen(HistoryScreen(state_now, export_dir(self.link.cfg), self.keymap, self.controls))

    def action_spend(self) -> None:
        """Where the money went, read off the state this room shows now (a replay's and the live app's timeline's:
        the past's at its position)."""
        from swarm_tui.tui.screens.spend import SpendScreen

        def look() -> tuple[SwarmState, AnySpend | None, float]:
            state = self.link.state
            return state, self.spend_info(), state.clock()

        self.app.push_screen(SpendScreen(look))

    # ------------------------------------------------------------------ the selected task's answers (the palette)
    def action_copy_answer(self) -> None:
        """The selected task's newest answer."""
        from swarm_tui.tui.exports import copy_answer

        task_id = self._task_for_results()
        if task_id is None:
            return
        results = self.link.state.task_results(task_id)
        if not results:
            self.app.notify(f"task {task_id} has no answer yet", severity="warning", markup=False)
            return
        copy_answer(self.app, len(results), results[-1])

    def action_save_results(self) -> None:
        from swarm_tui.tui.exports import export_dir, save_document
        from swarm_tui.tui.results_doc import results_markdown

        task_id = self._task_for_results()
        if task_id is None:
            return
        document = results_markdown(self.link.state, task_id) or ""
        save_document(self.app, task_id, document, export_dir(self.link.cfg))

    def action_compare(self) -> None:
        """Two answers of the selected task side by side."""
        from swarm_tui.tui.screens.compare import open_compare

        task_id = self._task_for_results()
        if task_id is not None:
            open_compare(self.app, self.controls, self.link.state, task_id, self.keymap)

    def action_promote(self) -> None:
        """The selected task's newest done answer."""
        from swarm_tui.tui.promotion import promote_newest

        task_id = self._task_for_results()
        if task_id is not None:
            promote_newest(self.app, self.controls, self.link.state, task_id)

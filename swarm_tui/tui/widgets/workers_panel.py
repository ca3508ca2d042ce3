"""The workers panel: one card per live (or recently finished) worker, in a grid that scrolls.

It owns the cards: which are shown (live ones, finished ones for ``linger_s``, at most ``max_cards``, the
filter), their order, mounting them a batch per frame, removing them, and the expansion of the focused card.
It reads nothing by itself: ``sync`` is handed the state, the rings and the time, and ``facts`` what the engine
said of its pool (why it takes no job, when it started), which the cards say where a worker has no reason of its
own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, VerticalScroll
from textual.events import DescendantBlur, DescendantFocus
from textual.reactive import var
from textual.widgets import Static

from swarm_tui.engine.bus.numbers import finite
from swarm_tui.engine.info import EngineInfo, usable
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import FINAL_STATES
from swarm_tui.textsafe import plain
from swarm_tui.tui.model import OutputRing, plural
from swarm_tui.tui.render_scheduler import TUNING, RenderTuning
from swarm_tui.tui.widgets.table_fit import no_match
from swarm_tui.tui.widgets.worker_card import RECOVERING, WorkerCard

if TYPE_CHECKING:  # pydantic: imported with the engine, after the first frame
    from swarm_tui.engine.bus.wire import WorkerEvent

EMPTY = "no live workers: approve a decision to start some"
STARTING = "starting the engine…"
SCALE_ZERO = "scale 0: no worker will start (+ to raise)"
BLOCKED_CHARS = 300  # the pool's reason, cleaned and cut: said on cards and in a toast
HELD_STATES = ("running", "retrying", "waiting", "over_budget")  # a job some pool holds (unacked) in these


@dataclass(frozen=True)
class PoolFacts:
    """What the engine's info says that a card without a reason of its own needs."""

    blocked: str = ""  # why the pool takes no job (or no cloud job): said on queued cards
    local_only: bool = False  # no key: ``blocked`` holds only cloud cards (local ones run)
    host: str = ""  # the engine's host and start: a worker of this host last heard of before the start had
    started_at: float | None = None  # its process stopped (kill -9, a crash): its job waits for redelivery
    ack_wait_s: float = 0.0
    scale: int | None = None  # the pool's scale (0: it starts nothing)

    @classmethod
    def of(cls, info: EngineInfo, ack_wait_s: float) -> PoolFacts:
        # an attached app's info is whatever answered: nothing here is trusted to be of its type
        pool, eng = usable(info.get("pool")), usable(info.get("engine"))
        started = eng.get("started_at") if eng else None
        return cls(
            blocked=plain(str(pool.get("blocked") or "")[:BLOCKED_CHARS])[:BLOCKED_CHARS] if pool else "",
            local_only=bool(pool and pool.get("local_only") is True),
            host=str(eng.get("host") or "")[:256] if eng else "",
            started_at=finite(started),
            ack_wait_s=ack_wait_s,
            scale=pool.get("scale") if pool else None,
        )

    def note(self, w: WorkerEvent) -> str:
        """What to say on a card whose event has no reason: recovering after a restart, or why nothing starts."""
        if (
            w.state in HELD_STATES
            and self.started_at is not None
            and w.at < self.started_at
            and self.host
            and w.host == self.host
        ):
            return f"{RECOVERING}: waiting for redelivery (ack wait {self.ack_wait_s:g}s)"
        if w.state == "queued" and self.blocked and not (self.local_only and is_local_chat(w.model)):
            return f"waits: {self.blocked}"
        if w.state == "queued" and self.scale == 0:
            return SCALE_ZERO
        return ""


def lane_words(info: EngineInfo) -> str:
    """The local lane for the Workers title: which model holds it (the heart's or an ant's) and who waits."""
    lane = usable(info.get("lane"))
    holder = plain(str(lane.get("holder") or "")[:160])[:40] if lane else ""
    if not lane or not holder:
        return ""
    who = "the heart" if holder == "conductor" else holder
    model = plain(str(lane.get("model") or "")[:160])[:40]
    waiting = lane.get("waiting")
    n = len(waiting) if isinstance(waiting, list) else 0
    held = f"lane: {model} ({who})" if model else f"lane: {who}"
    return held + (f", {n} waiting" if n else "")


class WorkersPanel(VerticalScroll):
    # The line under the grid (no workers, or how many are not shown). Only a non-empty note replaces it: while
    # it is hidden it keeps its last text. A change re-lays out the whole screen, so only a change updates it.
    note: var[str] = var("", init=False)
    # what the engine said of its pool (the room sets it with each info): the cards' notes
    facts: var[PoolFacts] = var(PoolFacts, init=False)

    def __init__(self, tuning: RenderTuning = TUNING, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tuning = tuning
        self.cards: dict[str, WorkerCard] = {}
        self.last_worker = ""  # the card focused last (``c`` cancels it while the focus is elsewhere)
        self._empty = Static(Text(EMPTY, style="dim"), id="workers-empty")
        self._grid = Grid(id="workers-grid")

    def compose(self) -> ComposeResult:
        yield self._empty
        yield self._grid

    def watch_note(self, note: str) -> None:
        self._empty.update(Text(note, style="dim"))

    def watch_facts(self, facts: PoolFacts) -> None:
        for card in self.cards.values():
            card.set_event(card.ev, card.task_text, facts.note(card.ev))

    def set_columns(self, cols: int) -> None:
        self._grid.styles.grid_size_columns = cols

    # ---- the cards
    def sync(
        self,
        state: SwarmState,
        rings: dict[str, OutputRing],
        now: float,
        flt: str,
        *,
        ready: bool,
        batch: int | None,
    ) -> bool:
        """Bring the cards to the state. Returns True when more new cards wait for the next frame."""
        every = self._shown_workers(state, now, flt.lower())
        hidden = max(0, len(every) - self.tuning.max_cards)
        shown = every[: self.tuning.max_cards]
        want = {w.worker_id for w in shown}
        gone = [self.cards.pop(wid) for wid in list(self.cards) if wid not in want]
        if gone:
            # In one removal, not one per card: Textual then moves the focus off a removed card to a widget that
            # stays. Card by card it could land on a sibling removed next, and with the focus on a detached
            # widget no key reached the App any more (all cards lingering out together while one had focus).
            self._grid.remove_children(gone)
        new: list[WorkerCard] = []
        more = False
        for w in shown:
            tv = state.tasks.get(w.task_id)
            task_text = tv.task.text if tv is not None else w.task_id
            card = self.cards.get(w.worker_id)
            if card is None:
                if batch is not None and len(new) >= batch:
                    more = True  # the rest in the next frames
                    continue
                card = WorkerCard(
                    w.worker_id, rings.setdefault(w.worker_id, OutputRing()), w, task_text, self.facts.note(w)
                )
                card.set_class(w.state in FINAL_STATES, "-final")
                self.cards[w.worker_id] = card
                new.append(card)
            else:
                card.set_event(w, task_text, self.facts.note(w))
        if new:
            self._grid.mount_all(new)
        self._keep_order([w.worker_id for w in shown])
        show_empty = not shown or hidden > 0
        if self._empty.display != show_empty:
            self._empty.display = show_empty
        if hidden:
            self.note = f"{plural(hidden, 'more worker')} not shown (use / to filter)"
        elif not shown:
            if not ready:
                self.note = STARTING
            else:
                self.note = no_match("worker", flt) if flt else SCALE_ZERO if state.scale == 0 else EMPTY
        return more

    def _keep_order(self, order: list[str]) -> None:
        """The grid's cards in the order shown: live ones first. A new card is mounted last, after the finished
        ones (out of sight in a long grid), and a card that finishes stays where it was: both are moved."""
        rank = {wid: i for i, wid in enumerate(order)}
        now = [c.worker_id for c in self._grid.children if isinstance(c, WorkerCard)]
        if now != sorted(now, key=lambda wid: rank.get(wid, len(rank))):
            self._grid.sort_children(
                key=lambda c: rank.get(c.worker_id, len(rank)) if isinstance(c, WorkerCard) else len(rank)
            )

    def shown(self, state: SwarmState, now: float, flt: str) -> list[WorkerEvent]:
        """The workers ``sync`` gives a card, in their order (a replay fills only their rings)."""
        return self._shown_workers(state, now, flt.lower())[: self.tuning.max_cards]

    def _shown_workers(self, state: SwarmState, now: float, flt: str) -> list[WorkerEvent]:
        shown = []
        for w in state.workers.values():
            if w.state in FINAL_STATES and now - w.at > self.tuning.linger_s:
                continue
            if flt and not any(flt in x.lower() for x in (w.worker_id, w.model, w.task_id, w.state, w.role)):
                continue
            shown.append(w)
        shown.sort(key=lambda w: (w.state in FINAL_STATES, w.worker_id))
        return shown

    def refresh_output(self, worker_ids: frozenset[str]) -> list[str]:
        """Repaint the cards with new output; returns the workers whose card exists (the bench probes them)."""
        done = []
        for wid in worker_ids:
            card = self.cards.get(wid)
            if card is not None:
                card.refresh()
                done.append(wid)
        return done

    # ---- focus: the focused card is expanded to the panel's width and height
    def selected_worker(self, focused: Any) -> str | None:
        """The worker to act on: the focused card, else the card focused last (while it is still shown)."""
        if isinstance(focused, WorkerCard):
            return focused.worker_id
        if self.last_worker in self.cards:
            return self.last_worker
        return None

    def focus_first(self) -> None:
        if self.cards:
            next(iter(self.cards.values())).focus()

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, WorkerCard):
            self.last_worker = event.widget.worker_id
            self._expand(event.widget, True)

    def on_descendant_blur(self, event: DescendantBlur) -> None:
        if isinstance(event.widget, WorkerCard):
            self._expand(event.widget, False)

    def _expand(self, card: WorkerCard, on: bool) -> None:
        card.set_expanded(on)
        if on:
            card.styles.column_span = self._grid.styles.grid_size_columns or 1
            card.styles.height = max(9, self.content_size.height - 1)
            card.scroll_visible(animate=False)
        else:
            card.styles.column_span = 1
            card.styles.height = None

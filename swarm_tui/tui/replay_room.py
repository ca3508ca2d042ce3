"""The control room on the log's past (``swarm-tui replay``): every panel shows the state at the timeline's
position, the keys move the position, and nothing is published.

The replay's keys are priority bindings of this screen (the tables' own left and right would take them first);
while the filter box has the focus they stand aside and the keys type. An action that would publish (approve,
reject, edit, scale, cancel, pause, a new task, promote) says "replay is read-only" and sends nothing; the link
refuses as well (``ReplayLink``). Worker output is not stored: a card shows its result's text once the result is
folded, and says so while the worker runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.events import Key

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.history.timeline import GAP_REAL_S, JUMP_S, Timeline
from swarm_tui.engine.info import AnySpend
from swarm_tui.textsafe import plain
from swarm_tui.tui.commands import HELP_ACTION, ROOM_BINDINGS, shown_key
from swarm_tui.tui.control_client import ControlClient
from swarm_tui.tui.link import READ_ONLY, ReplayLink
from swarm_tui.tui.model import OutputRing
from swarm_tui.tui.render_scheduler import TUNING, RenderScheduler
from swarm_tui.tui.screens.control_room import ControlRoom
from swarm_tui.tui.screens.room_actions import RoomAttention
from swarm_tui.tui.widgets.spend_panel import NOT_RECORDED
from swarm_tui.tui.widgets.timeline_bar import TimelineBar, TimelineView

PLAY_TICK_S = 0.1
FOLLOW_S = 2.0  # the live app's timeline reads the log's bounds again this often (its line's "of M")
NOT_STORED = "(output streams live and is not stored: the result's text shows here when it ends)"
REPLAY_ACTIONS = frozenset({"play", "step", "jump", "speed", "replay_quit", "timeline"})
MOVES = frozenset({"play", "step", "jump"})  # the keys that move the position
# the key bar's order: moving the position first, then the way back to live, the room's lists, help, quit
BAR_ORDER = ("play", "step(-1)", "step(1)", "jump(-1)", "jump(1)", "speed(1)", "speed(-1)", "timeline", "history")
# the room's keys that would publish: still bound here (each says "replay is read-only"), kept off the key bar so it
# shows what works in a replay (same ids: a key remapped in [keys] stays remapped)
PUBLISHING = frozenset({"approve", "reject", "edit", "cancel", "cancel_all", "pause", "new_task"})


def live_timeline(
    app: App[Any], timeline: Timeline, *, cfg: Config, keymap: dict[str, str], attention: RoomAttention
) -> ReplayRoom:
    """The replay's room over the live app, on its own link, rings, render scheduler and control client (whose
    link refuses everything: a promote from a task's results there publishes nothing either)."""
    link = ReplayLink(cfg, timeline, start_at=None, where="the log's past (t: back to live)")
    return ReplayRoom(
        link,
        info={},  # the engine's info is the present's: the past's panels read the log (spend) or say none
        rings={},
        clock=timeline.clock,
        scheduler=RenderScheduler(TUNING, on_wake=lambda: None),
        keymap=keymap,
        attention=attention,
        controls=ControlClient(app, link, accepted=lambda: None),
        back=True,
        screen_id="timeline",
    )


class ReplayRoom(ControlRoom):
    BINDINGS = [
        *(replace(b, show=False) for b in ROOM_BINDINGS if isinstance(b, Binding) and b.id in PUBLISHING),
        Binding("space", "play", "Play", priority=True),
        Binding("left", "step(-1)", "Back", key_display="←", priority=True),
        Binding("right", "step(1)", "Step", key_display="→", priority=True),
        Binding("left_square_bracket", "jump(-1)", "-1 min", key_display="[", priority=True),
        Binding("right_square_bracket", "jump(1)", "+1 min", key_display="]", priority=True),
        Binding("plus", "speed(1)", "Faster", key_display="+", priority=True),
        Binding("minus", "speed(-1)", "Slower", key_display="-", priority=True),
        Binding("q", "replay_quit", "Quit", priority=True),
        Binding("t", "timeline", "Live", priority=True),
    ]

    link: ReplayLink

    def __init__(self, link: ReplayLink, *, back: bool = False, **kw: Any) -> None:
        super().__init__(link, **kw)
        self.back = back  # opened from the live app: t or escape goes back to it
        self.timeline = link.timeline
        self.timeline_bar = TimelineBar(id="timeline")
        # a pending decision of the past: nothing to approve here (the live app's decision is the one to act on)
        expand = shown_key("expand", self.keymap)
        self.detail_view.hint = f"\nwaiting at this point of the log · replay is read-only · {expand} details"
        self.footer.order = BAR_ORDER  # the replay's own keys first; play, back to live, help and quit always
        self.footer.keep = ("play", "timeline", HELP_ACTION, "replay_quit")
        self._moving = asyncio.Lock()  # one move of the position at a time (a key while playing)
        self._ring_marks: dict[str, str] = {}  # worker -> the result job its ring shows ("": not stored)
        self._last_play = 0.0

    def compose(self) -> Any:
        yield from super().compose()
        yield self.timeline_bar

    def on_mount(self) -> None:
        self._play_timer = self.set_interval(PLAY_TICK_S, self._play_tick, pause=True, name="replay")
        if self.back:  # opened on a log already read: no link to start; the log grows meanwhile
            self.set_interval(FOLLOW_S, self._follow_log, name="follow")
            self.ready = True
            self.call_after_refresh(self.refresh_state)

    def on_key(self, event: Key) -> None:
        if event.key == "escape" and self.back and not (self.filter_box.has_focus or self.filter_text):
            event.stop()
            self.action_timeline()

    def action_timeline(self) -> None:
        if not self.back:
            self.app.notify("this replay has no live app to go back to: q quits", timeout=4, markup=False)
            return
        self._play_timer.stop()
        while self.app.screen is not self and len(self.app.screen_stack) > 1:  # the palette over a dialog here
            self.app.pop_screen()
        self.dismiss()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in REPLAY_ACTIONS and self.filter_box.has_focus:
            return False  # the key types into the filter
        if action in MOVES and not self.ready:
            return False  # the opening still folds to the position: a move now would race it (its own read-ahead)
        if action == "timeline" and not self.back:
            return False  # `swarm-tui replay` has no live app to go back to: t is off the key bar
        return True

    def spend_info(self) -> AnySpend | None:
        """The fold's spend at the position; what only a running engine knows (the key's limit, the prices it
        read) is said to be not in the log."""
        out = super().spend_info()
        if out is not None:
            out = {**out, "key_status": NOT_RECORDED, "price_source": "the event log (replayed)"}  # type: ignore[assignment]
        return out

    # ------------------------------------------------------------------ the keys
    async def action_play(self) -> None:
        if not self.timeline.playing and not await self._read_log(self.timeline.refresh_bounds):
            return  # a live log grows: play reaches what arrived since the last look
        if self.timeline.toggle():
            self._last_play = time.monotonic()
            self._play_timer.resume()
        else:
            self._play_timer.pause()
            if self.timeline.at_end:
                self.app.notify("at the end of the log", timeout=3, markup=False)
        self.show_timeline()

    async def action_step(self, delta: int) -> None:
        self._play_timer.pause()
        await self._read_log(lambda: self.timeline.step(delta))
        self.moved()

    async def action_jump(self, minutes: int) -> None:
        await self._read_log(lambda: self.timeline.jump(minutes * JUMP_S))
        self.moved()

    async def _read_log(self, read: Callable[[], Awaitable[object]], *, quiet: bool = False) -> bool:
        """One read of the log at a time (a key while playing waits its turn). A read that fails (the bus gone:
        a request's timeout, the connection closed) pauses and says so once, the position where the read left
        it; it never ends the app. False when it failed."""
        async with self._moving:
            self.link.thaw()
            try:
                await read()
            except Exception as err:  # noqa: BLE001 - the bus may be down: say so, stay up
                self.timeline.pause()
                self._play_timer.pause()
                if not quiet:
                    why = plain(str(err) or type(err).__name__)[:200]
                    self.app.notify(f"the log could not be read: {why}", severity="error", timeout=6, markup=False)
                return False
        return True

    async def _follow_log(self) -> None:
        """The live app's timeline: the log grows behind it, the line's "of M" follows (quiet when the bus is
        down: the header says so)."""
        if self._moving.locked() or self.app.screen is not self:
            return
        last = self.timeline.bounds.last_seq
        if await self._read_log(self.timeline.refresh_bounds, quiet=True) and self.timeline.bounds.last_seq != last:
            self.show_timeline()

    def action_speed(self, delta: int) -> None:
        if delta > 0:
            self.timeline.faster()
        else:
            self.timeline.slower()
        self.show_timeline()

    async def action_replay_quit(self) -> None:
        self._play_timer.pause()
        await self.app.run_action("app.quit")

    async def _play_tick(self) -> None:
        if self._moving.locked():
            return
        now = time.monotonic()
        real, self._last_play = now - self._last_play, now
        moved = False

        async def tick() -> None:
            nonlocal moved
            moved = await self.timeline.tick(min(real, 1.0))

        await self._read_log(tick)
        if not self.timeline.playing:
            self._play_timer.pause()
        if moved or not self.timeline.playing:
            self.moved()

    # ------------------------------------------------------------------ read-only
    def read_only(self) -> None:
        self.app.notify(READ_ONLY, severity="warning", timeout=3, markup=False)

    def action_approve(self) -> None:
        self.read_only()

    def action_reject(self) -> None:
        self.read_only()

    def action_edit_workers(self) -> None:
        self.read_only()

    def action_scale(self, delta: int) -> None:
        self.read_only()

    def action_cancel_worker(self) -> None:
        self.read_only()

    def action_cancel_all(self) -> None:
        self.read_only()

    def action_pause(self) -> None:
        self.read_only()

    def action_new_task(self) -> None:
        self.read_only()

    def action_promote(self) -> None:
        self.read_only()

    def action_attention(self) -> None:  # going there marks it seen: a "seen" event
        self.read_only()

    # ------------------------------------------------------------------ drawing
    def moved(self) -> None:
        """The position moved: the panels show the state there."""
        self.link.moved()
        self.refresh_state()

    def refresh_state(self) -> None:
        if not self.app.is_running:
            return
        self.link.moved()
        super().refresh_state()
        self.show_guards()  # the Spend panel's figures are the fold's at the position, not the first frame's
        self.show_timeline()

    def show_timeline(self) -> None:
        tl = self.timeline
        self.footer.labels = {"play": "Pause"} if tl.playing else {}  # space says what it does now
        self.timeline_bar.view = TimelineView(
            tl.now, tl.seq, tl.bounds.last_seq, tl.speed, tl.playing, tl.fraction(), GAP_REAL_S
        )

    def sync_workers(self) -> None:
        """The cards, each shown one's ring filled from the log first (whatever path redraws them)."""
        if self.is_running:
            self._replay_output()
        super().sync_workers()

    def _replay_output(self) -> None:
        """Each shown worker's card: its stored result's text once the result is folded, else that it is not
        stored. Only the cards the panel shows have a ring (a long log's position has ~13,000 workers, their rings
        filled at each redraw took 0.36 s of the replay's opening); a worker's ring is made again when it shows."""
        state = self.link.state
        shown = self.workers_panel.shown(state, self.clock(), self.filter_text)
        want = {w.worker_id for w in shown}
        for wid in [w for w in self.rings if w not in want]:
            del self.rings[wid]
            self._ring_marks.pop(wid, None)
        changed = []
        for w in shown:
            wid = w.worker_id
            r = state.results.get(w.job_id)  # the job's first stored result: this worker's if it stored it
            if r is not None and r.worker_id != wid:
                r = None
            mark = r.job_id if r is not None else ""
            if self._ring_marks.get(wid) == mark and wid in self.rings:
                continue
            ring = self.rings.setdefault(wid, OutputRing())
            ring.parts.clear()
            ring.size = ring.dropped = ring.tokens = 0
            if r is None:
                ring.append(NOT_STORED)
            else:
                ring.append(r.text or f"({r.state}{': ' + r.reason if r.reason else ''}; no text stored)")
            self._ring_marks[wid] = mark
            changed.append(wid)
        if changed:
            self.workers_panel.refresh_output(frozenset(changed))

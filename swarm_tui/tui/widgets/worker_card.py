"""A worker card: one live worker's state line, why it waits or failed, its task and the latest lines of its output."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from swarm_tui.engine.projection.figures import worker_tokens
from swarm_tui.engine.states import FINAL_STATES
from swarm_tui.tui.model import OutputRing, fmt_usd, one_line, short_id, short_model, wrap_words
from swarm_tui.tui.style import spaced, state_style

if TYPE_CHECKING:  # pydantic: imported with the engine, after the first frame
    from swarm_tui.engine.bus.wire import WorkerEvent

RECOVERING = "recovering after a restart"  # the panel's note for a held job whose process stopped
ALIVE_S = 30.0  # output heard this recently: someone works the job (another process on this host, say)
REASON_LINES = 2  # lines of the reason on a card that is not expanded (the expanded card shows it whole)


def card_reason(ev: WorkerEvent, note: str) -> str:
    """Why the worker is where it is, or "" when there is nothing to say: its event's reason (a wait, a retry, a
    failure, a cancel) or, when it has none, what the panel knows (``note``: the pool takes no job, recovering)."""
    if ev.state == "running":  # a running worker's event has no reason; the note may say it is recovering
        return note
    return ev.reason or note


class WorkerCard(Widget, can_focus=True):
    """One live worker: a header line, why it waits or failed, and the latest lines of its output (a ring)."""

    DEFAULT_CSS = """
    WorkerCard { height: 7; border: round $panel-lighten-2; padding: 0 1; text-wrap: nowrap; }
    WorkerCard:focus { border: round $accent; }
    WorkerCard.-final { border: round $panel; color: $text-muted; }
    """

    def __init__(self, worker_id: str, ring: OutputRing, ev: WorkerEvent, task_text: str, note: str = "") -> None:
        super().__init__(id="w_" + worker_id, classes="worker-card")
        self.worker_id = worker_id
        self.ring = ring
        self.ev = ev
        self.task_text = task_text
        self.note = note  # said when the worker's own event has no reason (see card_reason)
        self.expanded = False  # focused: the panel gives it its width and height, the reason is shown whole
        self.border_title = short_id(worker_id, 22)

    @property
    def reason(self) -> str:
        note = self.note
        if note.startswith(RECOVERING) and time.time() - self.ring.heard_at < ALIVE_S:
            note = ""  # its output streams: it is not waiting for a redelivery
        return card_reason(self.ev, note)

    def set_event(self, ev: WorkerEvent, task_text: str, note: str = "") -> None:
        if ev is not self.ev or task_text != self.task_text or note != self.note:
            self.ev, self.task_text, self.note = ev, task_text, note
            self.set_class(ev.state in FINAL_STATES, "-final")
            self.refresh()

    def set_expanded(self, on: bool) -> None:
        if on != self.expanded:
            self.expanded = on
            self.refresh()

    def render(self) -> Group:
        ev = self.ev
        width = max(10, self.content_size.width)
        height = max(1, self.content_size.height)
        tokens = worker_tokens(ev.tokens, self.ring.tokens)
        words = [
            (ev.state, state_style(ev.state)),
            (f"{tokens} tok {fmt_usd(ev.cost_usd)}", "dim"),
            (one_line(short_model(ev.model), 40), "bold"),
        ]
        if ev.role:
            words.append((one_line(ev.role, 12), "dim"))
        lines = [spaced(words)]
        reason = self.reason
        if reason:  # on its own lines, on word boundaries: a status line has no room left for it
            pieces = wrap_words(one_line(reason, 1000), width)
            room = max(1, height - 2) if self.expanded else REASON_LINES
            if len(pieces) > room:
                pieces = pieces[: room - 1] + [" ".join(pieces[room - 1 :])]  # the last line ends in "…"
            style = "bold red" if ev.state == "failed" else "dim" if ev.state == "cancelled" else "yellow"
            lines += [Text(piece, style=style) for piece in pieces]
        lines.append(Text(one_line(self.task_text, width + 1), style="italic dim"))
        room = height - len(lines)
        if self.ring.reasoning and not self.ring.size:  # the model thinks before it answers: dimmed
            lines += [Text(line, style="dim italic") for line in self.ring.reasoning_lines(width, room)]
        else:
            lines += [Text(line) for line in self.ring.tail_lines(width, room)]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
            line.no_wrap = True
        return Group(*lines)  # a Group keeps the output's indentation as it is

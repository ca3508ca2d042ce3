"""A worker card: one live worker's state line, its task and the latest lines of its output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.widget import Widget

from swarm_tui.engine.projection.figures import worker_tokens
from swarm_tui.engine.states import FINAL_STATES
from swarm_tui.tui.model import OutputRing, fmt_usd, one_line, short_id, short_model
from swarm_tui.tui.style import spaced, state_style

if TYPE_CHECKING:  # pydantic: imported with the engine, after the first frame
    from swarm_tui.engine.bus.wire import WorkerEvent


class WorkerCard(Widget, can_focus=True):
    """One live worker: a header line and the latest lines of its output (a bounded ring)."""

    DEFAULT_CSS = """
    WorkerCard { height: 7; border: round $panel-lighten-2; padding: 0 1; text-wrap: nowrap; }
    WorkerCard:focus { border: round $accent; }
    WorkerCard.-final { border: round $panel; color: $text-muted; }
    """

    def __init__(self, worker_id: str, ring: OutputRing, ev: WorkerEvent, task_text: str) -> None:
        super().__init__(id="w_" + worker_id, classes="worker-card")
        self.worker_id = worker_id
        self.ring = ring
        self.ev = ev
        self.task_text = task_text
        self.border_title = short_id(worker_id, 22)

    def set_event(self, ev: WorkerEvent, task_text: str) -> None:
        if ev is not self.ev or task_text != self.task_text:
            self.ev, self.task_text = ev, task_text
            self.set_class(ev.state in FINAL_STATES, "-final")
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
        if ev.reason and ev.state != "running":
            words.append((one_line(ev.reason, 60), "yellow"))
        lines = [spaced(words), Text(one_line(self.task_text, width + 1), style="italic dim")]
        if self.ring.reasoning and not self.ring.size:  # the model thinks before it answers: dimmed
            lines += [Text(line, style="dim italic") for line in self.ring.reasoning_lines(width, height - 2)]
        else:
            lines += [Text(line) for line in self.ring.tail_lines(width, height - 2)]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
            line.no_wrap = True
        return Group(*lines)  # a Group keeps the output's indentation as it is

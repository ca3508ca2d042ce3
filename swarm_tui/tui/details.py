"""The long texts ``enter`` opens (a worker's whole on-screen output, a task with its results), made inert.

The decision's counterpart is ``widgets.decision_full_text``.
"""

from __future__ import annotations

from rich.text import Text

from swarm_tui.engine.projection import SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.model import fmt_usd
from swarm_tui.tui.widgets import WorkerCard


def worker_detail(card: WorkerCard) -> tuple[str, Text]:
    """(title, body): the ring's text, or its reasoning (dimmed) while the model has not answered yet."""
    ring = card.ring
    body = (
        Text(ring.text())
        if ring.size
        else Text(ring.reasoning or "(no output yet)", style="dim italic" if ring.reasoning else "")
    )
    note = f"{card.worker_id}: the last {ring.size} characters on screen"
    if ring.dropped:
        note += f" ({ring.dropped} earlier ones are in the result: swarm-tui result {card.ev.task_id})"
    return note, body


def task_detail(state: SwarmState, task_id: str) -> Text | None:
    """The task's text and every result it has, in order; None for an unknown task."""
    tv = state.tasks.get(task_id)
    if tv is None:
        return None
    t = Text()
    t.append(f"{tv.id} · priority {tv.task.priority} · {tv.state}", style="bold")
    if tv.reason:
        t.append(f" · {plain(tv.reason)}")
    t.append(f" · spent {fmt_usd(tv.spend_usd)}\n\n")
    t.append(plain(tv.task.text, keep_newlines=True))
    for r in state.task_results(tv.id):
        why = f" · {plain(r.reason)[:200]}" if r.reason else ""
        t.append(
            f"\n\n--- {plain(r.role) or 'worker'} step {r.step} · {plain(r.model)} · {r.state}{why}\n",
            style="bold",
        )
        t.append(plain(r.text, keep_newlines=True))
    return t

"""The long text ``enter`` opens on a worker card (its whole on-screen output), made inert.

The decision's counterpart is ``widgets.decision_full_text``; a task's results have their own screen
(``results_screen.py``).
"""

from __future__ import annotations

from rich.text import Text

from swarm_tui.tui.widgets.panels import WorkerCard


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

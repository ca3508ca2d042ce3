"""The long texts ``enter`` opens: a worker card's whole on-screen output and a decision in full, made inert.

A task's results have their own screen (``screens/results.py``).
"""

from __future__ import annotations

from rich.text import Text

from swarm_tui.engine.projection.state import DecisionView
from swarm_tui.textsafe import plain
from swarm_tui.tui.model import one_line
from swarm_tui.tui.widgets.worker_card import WorkerCard


def worker_detail(card: WorkerCard) -> tuple[str, Text]:
    """(title, body): why it waits or failed (the card's reason, whole), then the ring's text, or its reasoning
    (dimmed) while the model has not answered yet."""
    ring = card.ring
    body = Text()
    if card.reason:
        body.append(
            f"{card.ev.state}: {plain(card.reason)}\n\n", style="bold red" if card.ev.state == "failed" else "yellow"
        )
    if ring.size:
        body.append(ring.text())
    else:
        body.append(ring.reasoning or "(no output yet)", style="dim italic" if ring.reasoning else "")
    note = f"{card.worker_id}: the last {ring.size} characters on screen"
    if ring.dropped:
        note += f" ({ring.dropped} earlier ones are in the result: swarm-tui result {card.ev.task_id})"
    return note, body


def decision_full_text(dv: DecisionView) -> Text:
    """The whole decision ``enter`` opens: every step and clamp, the reasons and the model's raw answer."""
    d = dv.decision
    t = Text()
    t.append(f"decision {dv.id} ({dv.status})\n", style="bold")
    t.append(f"source {one_line(d.source, 80)}, round {d.round}, tasks {', '.join(d.task_ids)}\n")
    for p in dv.plan:
        t.append(
            f"  step {p.step} {one_line(p.role, 32)}: {one_line(p.model, 80)} "
            f"(max {p.max_tokens} tokens) for {p.task_id}\n"
        )
    for c in d.clamps:
        t.append(
            f"clamp {one_line(c.what, 64)}: {one_line(str(c.before), 40)} → {one_line(str(c.after), 40)}: "
            f"{one_line(c.reason, 500)}\n",
            style="yellow",
        )
    for m in d.merge:
        t.append(f"merge {m.kept} {one_line(m.what, 32)}", style="bold")
        t.append(f"{' ' + one_line(m.task_id, 64) if m.task_id else ''}: {one_line(m.reason, 300)}\n")
    for e in d.examples:
        t.append(f"learned from: {one_line(e, 300)}\n", style="dim")
    if d.error:
        t.append(f"model advice not used: {one_line(d.error, 2000)}\n", style="yellow")
    if d.warning:
        t.append(f"model call: {one_line(d.warning, 500)}\n", style="yellow")
    if d.reason:
        t.append(f"why: {one_line(d.reason, 2000)}\n")
    t.append("\nthe model's raw answer:\n", style="bold")
    t.append(plain(d.raw, keep_newlines=True) if d.raw else "(none: the rules decided alone)")
    return t

"""A person's history with the heartbeat, as the events the log holds: a task, a decision, an edit, a final word."""

from __future__ import annotations

from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task
from swarm_tui.engine.projection.state import SwarmState

NOW = 1_900_000_000.0
RESEARCH_MODEL = "openrouter/google/gemini-2.5-flash-lite"


def decided(
    state: SwarmState,
    i: int,
    text: str,
    roles: list[str],
    per_step: int,
    *,
    edit: int | None = None,
    final: str = "approved",
    by: str = "tui",
    prefix: str = "learn",
) -> str:
    """Decision ``i`` for a new task: ``per_step`` workers of each of ``roles``, edited to ``edit`` workers (when
    given) and then ``final`` (approved, rejected, ...; "" leaves it pending), all ``by`` one hand."""
    tid, did = f"t-{prefix}{i:04d}", f"d-{prefix}{i:04d}"
    at = NOW + 10 * i
    state.apply(Task(id=tid, text=text, created_at=at))
    plan = [
        PlanItem(task_id=tid, role=r, model=RESEARCH_MODEL, max_tokens=800, step=s)
        for s, r in enumerate(roles)
        for _ in range(per_step)
    ]
    state.apply(Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=at, expires_at=at + 900))
    if edit is not None:
        state.apply(Approval(decision_id=did, action="edited", workers=edit, by=by, at=at + 1))
    if final:
        state.apply(Approval(decision_id=did, action=final, by=by, at=at + 2))  # type: ignore[arg-type]
    return did

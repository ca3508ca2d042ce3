"""The learning scenarios' past: the person's words on earlier decisions, applied as real events to a SwarmState.

Each past decision is what the event log would hold: a ``Task``, a rules ``Decision`` for it (``proposed``
research workers), the person's ``Approval(action="edited", workers=...)`` in the TUI, then
``Approval(action="approved")``. The heartbeat's learn API (swarm_tui/engine/heartbeat/learn.py) reads the
lessons, the prompt examples and the learned per-role worker count from that state, as the conductor does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task
from swarm_tui.engine.heartbeat.learn import Lesson, Preference, examples, lessons, preferences
from swarm_tui.engine.projection.state import SwarmState

from .heartbeat_scenarios import ROLES, History

PAST_TASKS = (
    "Find the three most cited papers on vector databases.",
    "Look up when the Rust language reached version 1.0 and who led it.",
    "Gather the opening hours of the British Museum and the Louvre.",
)
T0 = 1_790_000_000.0  # a fixed past moment (2026-09): the events' times, a minute apart


def history_state(h: History) -> SwarmState:
    """A state holding ``h.n`` research decisions of ``h.proposed`` workers, each edited to ``h.edited_to`` and
    approved by the person in the TUI, in this order (the last one newest)."""
    state = SwarmState(session_start=T0, clock=lambda: T0 + 3600)
    spec = ROLES["research"]
    for i in range(h.n):
        at = T0 + 60 * i
        tid, did = f"t-past-{i:02d}", f"d-past-{i:02d}"
        state.apply(Task(id=tid, text=PAST_TASKS[i % len(PAST_TASKS)], created_at=at))
        plan = [PlanItem(task_id=tid, role=spec.name, model=spec.model, max_tokens=spec.max_tokens)] * h.proposed
        state.apply(
            Decision(
                id=did,
                task_ids=[tid],
                plan=plan,
                source="rules",
                reason="new tasks: rules",
                created_at=at + 1,
                expires_at=at + 600,
            )
        )
        state.apply(Approval(decision_id=did, action="edited", workers=h.edited_to, by="tui", at=at + 10))
        state.apply(Approval(decision_id=did, action="approved", by="tui", at=at + 11))
    return state


@dataclass
class Learned:
    lessons: list[Lesson]
    examples: list[str]
    prefs: dict[str, Preference]


NOTHING = Learned([], [], {})


def learned(h: History | None) -> Learned:
    """What the heartbeat learns from the person's history (nothing without one)."""
    if h is None:
        return NOTHING
    ls = lessons(history_state(h))
    return Learned(ls, examples(ls), preferences(ls))


def prefs_words(prefs: Mapping[str, Preference]) -> str:
    return "; ".join(f"{r}: {p.count} per step" for r, p in sorted(prefs.items())) or "none"

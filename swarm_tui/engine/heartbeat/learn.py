"""What the heartbeat learns from its user: the person's recent words on its decisions, as lessons.

Pure functions over the projected state, no I/O. A lesson is one decision a person approved (as proposed or
edited) or rejected: what was proposed, what the person did. Lessons become a few one-line examples in the local
model's prompt (``examples``) and, when the person keeps settling on the same worker count for a role, a
preference the merge follows (``preferences``). ``[heartbeat] learn = false`` turns both off.

Only a person's word counts: an approval ``by`` the policy (``auto``) or an expiry (``conductor``) is not a lesson.
The events come from the log, whose readers already refuse forged control verbs; a forged ``edited`` event could
still move a learned count, which stays inside the envelope and the clamp like any plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from swarm_tui.engine.bus.wire import PlanItem
from swarm_tui.engine.projection.state import DecisionView, SwarmState

MACHINE_WORDS = frozenset({"auto", "conductor"})  # approvals no person gave
LESSONS = 6  # the most recent lessons read
AGREE = 3  # a preference needs this many of the latest decisions for a role to agree
TEXT_CHARS = 80  # of a task's text in an example


@dataclass(frozen=True)
class Lesson:
    decision_id: str
    text: str  # the first task's text
    steps: tuple[str, ...]  # the roles of the proposed plan in step order (its first task's)
    final_steps: tuple[str, ...]  # the same after the person's edit
    proposed: int  # workers proposed
    final: int | None  # workers after the person's word (None: rejected)
    action: str  # "approved" (as proposed), "edited" (count changed), "rejected"
    at: float
    single: bool  # one task: its per-task worker count is the decision's

    @property
    def role(self) -> str:
        return self.steps[0] if self.steps else ""

    def per_step(self, n: int, steps: Sequence[str] | None = None) -> int:
        """Workers per step of a one-task plan of ``n`` workers (``steps``: the proposed plan's by default)."""
        return 0 if n <= 0 else max(1, n // max(1, len(self.steps if steps is None else steps)))


def _lesson(state: SwarmState, dv: DecisionView) -> Lesson | None:
    d = dv.decision
    if not d.plan or not d.task_ids:
        return None
    edited = dv.workers is not None and dv.workers != len(d.plan)
    if dv.status == "approved" and dv.by not in MACHINE_WORDS:
        action, final, at = ("edited" if edited else "approved"), len(dv.plan), dv.at
    elif dv.status == "rejected" and dv.by not in MACHINE_WORDS:
        action, final, at = "rejected", None, dv.at
    elif dv.status == "pending" and edited:  # an edit is the person's word before the approval comes
        action, final, at = "edited", len(dv.plan), d.created_at
    else:
        return None
    first = d.task_ids[0]
    tv = state.tasks.get(first)
    return Lesson(
        decision_id=d.id,
        text=tv.task.text if tv is not None else "",
        steps=_steps(d.plan, first),
        final_steps=_steps(dv.plan, first),
        proposed=len(d.plan),
        final=final,
        action=action,
        at=at,
        single=len(d.task_ids) == 1,
    )


def _steps(plan: Sequence[PlanItem], task_id: str) -> tuple[str, ...]:
    steps: dict[int, str] = {}
    for p in plan:
        if p.task_id == task_id:  # a role name is the bus's word: kept to a name's characters (one line)
            steps.setdefault(p.step, re.sub(r"[^\w.-]", "?", p.role)[:32])
    return tuple(steps[k] for k in sorted(steps))


def lessons(state: SwarmState, *, limit: int = LESSONS) -> list[Lesson]:
    """The person's words on the latest decisions, newest first (at most ``limit``)."""
    out = [x for dv in state.decisions.values() if (x := _lesson(state, dv)) is not None]
    out.sort(key=lambda x: x.at, reverse=True)
    return out[: max(0, limit)]


def _plan_words(x: Lesson, n: int, steps: Sequence[str]) -> str:
    if n <= 0:
        return "0 workers"
    chain = " then ".join(steps) or "workers"
    return f"{chain} x{x.per_step(n, steps)}" if x.single else f"{n} workers ({chain})"


def example(x: Lesson) -> str:
    """One line for the model's prompt: what the person did, the plan proposed, then the task's text as a JSON
    string (last and escaped: a text holding quotes or a made-up verdict cannot end the line's own words)."""
    text = " ".join(x.text.split())
    text = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."
    did = {
        "approved": "approved",
        "rejected": "rejected",
        "edited": f"edited to {_plan_words(x, x.final or 0, x.final_steps)}",
    }[x.action]
    return f"{did}; proposed {_plan_words(x, x.proposed, x.steps)}; task: {json.dumps(text, ensure_ascii=False)}"


def examples(ls: Sequence[Lesson]) -> list[str]:
    return [example(x) for x in ls]


@dataclass(frozen=True)
class Preference:
    """The per-task worker count (of each step) the person settles on for a role."""

    role: str
    count: int
    why: str


def preferences(ls: Sequence[Lesson]) -> dict[str, Preference]:
    """role -> the count the person's latest ``AGREE`` one-task decisions led by that role all ended at, when at
    least one of them was an edit (the person chose the count, not only accepted it). Rejections say nothing about
    a count; a decision of several tasks does not say which task a count was for."""
    by_role: dict[str, list[Lesson]] = {}
    for x in ls:  # newest first
        if x.single and x.final and x.role:  # a rejection (None) or an edit to 0 says nothing of a count
            by_role.setdefault(x.role, []).append(x)
    out: dict[str, Preference] = {}
    for role, xs in by_role.items():
        last = xs[:AGREE]
        counts = {x.per_step(x.final or 0, x.final_steps) for x in last}
        edits = sum(1 for x in last if x.action == "edited")
        if len(last) == AGREE and len(counts) == 1 and edits:
            n = counts.pop()
            out[role] = Preference(
                role,
                n,
                f"the user's last {AGREE} {role} decisions ended at {n} worker(s) per step ({edits} edited: "
                + ", ".join(x.decision_id for x in last if x.action == "edited")
                + ")",
            )
    return out

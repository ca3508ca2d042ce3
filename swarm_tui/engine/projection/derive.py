"""A task's state from its decisions and its jobs: the one state machine of the projection.

Pure: it reads what ``SwarmState`` holds through the small protocols below (the views live in ``state.py``,
which imports this module), so a test can fold any sequence of events and compare the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, assert_never

from swarm_tui.engine.bus.ids import job_id
from swarm_tui.engine.states import FINAL_STATES, DecisionStatus, ResultState, TaskState, WorkerState


class PlanStep(Protocol):
    @property
    def task_id(self) -> str: ...
    @property
    def step(self) -> int: ...


class DecisionLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> DecisionStatus: ...
    @property
    def reason(self) -> str: ...
    @property
    def plan(self) -> Sequence[PlanStep]: ...


class ResultLike(Protocol):
    @property
    def reason(self) -> str: ...
    @property
    def decision_id(self) -> str: ...
    @property
    def state(self) -> ResultState: ...


def derive_task(
    task_id: str,
    views: Sequence[DecisionLike],
    jobs: Mapping[str, WorkerState],
    results: Sequence[ResultLike],
) -> tuple[TaskState, str]:
    """The task's state and reason: ``views`` are its decisions in order, ``jobs`` its jobs' latest states,
    ``results`` its stored results in order."""
    if not views:
        return "pending", ""
    last = views[-1]
    approved = [v for v in views if v.status == "approved"]
    status = last.status
    match status:
        case "pending":
            return ("awaiting_followup", "") if approved else ("awaiting_approval", "")
        case "rejected" if not approved:
            return "rejected", last.reason or "decision rejected"
        case "expired" if not approved:
            return "pending", "decision expired"
        case "approved" | "rejected" | "expired":
            return _approved_work(task_id, approved, jobs, results)
        case _:
            assert_never(status)


def _approved_work(
    task_id: str,
    approved: Sequence[DecisionLike],
    jobs: Mapping[str, WorkerState],
    results: Sequence[ResultLike],
) -> tuple[TaskState, str]:
    """Approved work exists: the task runs until every expected job has a final state. The expected count comes
    from the approved plans, not from the jobs seen: a chained plan's later steps have no job (and no worker
    event) until the earlier steps' results are stored."""
    expected = {job_id(v.id, i) for v in approved for i, p in enumerate(v.plan) if p.task_id == task_id}
    if not expected:
        return "cancelled", "the approved plan has no worker for this task"
    if any(jobs.get(j) not in FINAL_STATES for j in expected) or any(s not in FINAL_STATES for s in jobs.values()):
        return "running", ""
    # the outcome is the latest approved decision's last step (the end of its chain); earlier rounds and
    # steps are context, their results stay readable
    latest = approved[-1]
    items = [(i, p) for i, p in enumerate(latest.plan) if p.task_id == task_id]
    if not items:
        latest = next(v for v in reversed(approved) if any(p.task_id == task_id for p in v.plan))
        items = [(i, p) for i, p in enumerate(latest.plan) if p.task_id == task_id]
    last_step = max(p.step for _, p in items)
    ends = [job_id(latest.id, i) for i, p in items if p.step == last_step]
    finals = [jobs[j] for j in ends]
    if any(s == "done" for s in finals):
        return "done", ""
    if all(s == "cancelled" for s in finals) and all(jobs[j] == "cancelled" for j in expected):
        return "cancelled", "all workers cancelled"
    reasons = {r.reason for r in results if r.reason and r.decision_id == latest.id and r.state != "done"}
    return "failed", "; ".join(sorted(reasons))[:300] or "no worker succeeded"

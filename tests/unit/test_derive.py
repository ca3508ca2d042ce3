"""derive_task, the task state machine, against a reference: the string-comparing fold it replaced, kept here
verbatim, over seeded random event sequences (decisions over one or two tasks, chained steps, every approval
action, every worker and result state). After every event, every task's state and reason must be the same."""

from __future__ import annotations

import random

from swarm_tui.engine.bus.ids import job_id, worker_id
from swarm_tui.engine.bus.wire import (
    Approval,
    Decision,
    Event,
    PlanItem,
    Result,
    Task,
    WorkerEvent,
)
from swarm_tui.engine.projection.state import SwarmState, TaskView
from swarm_tui.engine.states import FINAL_STATES, ApprovalAction, ResultState, WorkerState

NOW = 1_750_000_000.0
TASKS = ("t-a", "t-b")
WORKER_STATES: tuple[WorkerState, ...] = (
    "queued",
    "waiting",
    "over_budget",
    "running",
    "retrying",
    "done",
    "failed",
    "cancelled",
)
ACTIONS: tuple[ApprovalAction, ...] = ("approved", "rejected", "expired", "edited")
REASONS = ("", "HTTP 500", "the model refused", "timeout")


def reference(st: SwarmState, tv: TaskView) -> tuple[str, str]:
    """The fold as it compared bare strings (the projection's _derive_task before derive.py), unchanged."""
    views = [st.decisions[d] for d in tv.decisions if d in st.decisions]
    if not views:
        return "pending", ""
    last = views[-1]
    approved = [v for v in views if v.status == "approved"]
    state, reason = "", ""
    if last.status == "pending":
        state, reason = ("awaiting_approval", "") if not approved else ("awaiting_followup", "")
        if not approved:
            return state, reason
    elif last.status == "rejected":
        if not approved:
            return "rejected", last.reason or "decision rejected"
    elif last.status == "expired" and not approved:
        return "pending", "decision expired"
    if last.status == "pending":
        return state, reason
    expected = {job_id(v.id, i) for v in approved for i, p in enumerate(v.plan) if p.task_id == tv.id}
    if not expected:
        return "cancelled", "the approved plan has no worker for this task"
    if any(tv.jobs.get(j) not in FINAL_STATES for j in expected) or any(
        s not in FINAL_STATES for s in tv.jobs.values()
    ):
        return "running", ""
    latest = approved[-1]
    items = [(i, p) for i, p in enumerate(latest.plan) if p.task_id == tv.id]
    if not items:
        latest = next(v for v in reversed(approved) if any(p.task_id == tv.id for p in v.plan))
        items = [(i, p) for i, p in enumerate(latest.plan) if p.task_id == tv.id]
    last_step = max(p.step for _, p in items)
    ends = [job_id(latest.id, i) for i, p in items if p.step == last_step]
    finals = [tv.jobs[j] for j in ends]
    if any(s == "done" for s in finals):
        return "done", ""
    if all(s == "cancelled" for s in finals) and all(tv.jobs[j] == "cancelled" for j in expected):
        return "cancelled", "all workers cancelled"
    reasons = {
        st.results[j].reason
        for j in tv.results
        if j in st.results
        and st.results[j].reason
        and st.results[j].decision_id == latest.id
        and st.results[j].state != "done"
    }
    return "failed", "; ".join(sorted(reasons))[:300] or "no worker succeeded"


def a_decision(rng: random.Random, did: str) -> Decision:
    tids = rng.choice([["t-a"], ["t-b"], ["t-a", "t-b"]])
    n = rng.randint(0, 3)
    plan = [
        PlanItem(task_id=rng.choice(tids), role="research", model="m", max_tokens=10, step=rng.randint(0, 1))
        for _ in range(n)
    ]
    return Decision(id=did, task_ids=tids, plan=plan, source="rules", created_at=NOW, expires_at=NOW + 900)


def a_job_event(rng: random.Random, st: SwarmState) -> Event | None:
    """A worker or result event for one of the plan items of a decision seen so far."""
    items = [(dv.id, i, p.task_id) for dv in st.decisions.values() for i, p in enumerate(dv.plan)]
    if not items:
        return None
    did, i, tid = rng.choice(items)
    if rng.random() < 0.5:
        ws = rng.choice(WORKER_STATES)
        return WorkerEvent(
            worker_id=worker_id(did, i),
            job_id=job_id(did, i),
            decision_id=did,
            task_id=tid,
            model="m",
            state=ws,
            at=NOW,
        )
    rs: ResultState = rng.choice(FINAL_STATES)
    return Result(
        job_id=job_id(did, i),
        worker_id=worker_id(did, i),
        decision_id=did,
        task_id=tid,
        model="m",
        state=rs,
        text="answer",
        reason=rng.choice(REASONS),
        started_at=NOW,
        ended_at=NOW + 1,
    )


def an_event(rng: random.Random, st: SwarmState, n_decisions: int) -> Event | None:
    roll = rng.random()
    if roll < 0.1:
        return Task(id=rng.choice(TASKS), text="do it", created_at=NOW)
    if roll < 0.3:
        return a_decision(rng, f"d-{n_decisions}")
    if roll < 0.5 and st.decisions:
        did = rng.choice(list(st.decisions))
        workers = rng.choice([None, 1, 2, 4])
        reason = rng.choice(REASONS)
        return Approval(decision_id=did, action=rng.choice(ACTIONS), workers=workers, reason=reason, at=NOW + 1)
    return a_job_event(rng, st)


def test_derive_task_matches_the_string_fold_it_replaced() -> None:
    rng = random.Random(23)
    seen: set[tuple[str, str]] = set()
    for _ in range(400):
        st = SwarmState(session_start=NOW, clock=lambda: NOW + 60)
        n_decisions = 0
        for seq in range(1, 30):
            ev = an_event(rng, st, n_decisions)
            if ev is None:
                continue
            n_decisions += isinstance(ev, Decision)
            st.apply(ev, seq)
            for tv in st.tasks.values():
                got = (tv.state, tv.reason)
                assert got == reference(st, tv), (tv.id, [type(e).__name__ for e in [ev]])
                seen.add(got)
    states = {s for s, _ in seen}
    # the sequences reach every state a task can be in, so the comparison covers every branch
    assert states == {
        "pending",
        "awaiting_approval",
        "awaiting_followup",
        "running",
        "done",
        "failed",
        "cancelled",
        "rejected",
    }

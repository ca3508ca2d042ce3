"""Closing the loop: the heartbeat's review of finished tasks and the follow-up decisions it publishes.

A beat offers finished tasks with new results (each set of results once) to the local model, with a bounded
summary of them; it may propose a follow-up decision for the same task (``round`` one more than the task's
last), clamped like any plan plus the task's own limits (``budget.task_max_followups`` rounds,
``budget.task_max_usd`` total spend), and approved like any decision. A task at either limit is not offered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from swarm_tui.engine.bus.wire import Decision, new_id
from swarm_tui.engine.guards import tokens
from swarm_tui.engine.heartbeat.advice import Advice
from swarm_tui.engine.heartbeat.clamp import Clamped, item_cost
from swarm_tui.engine.heartbeat.envelope import Envelope, ReadyTask
from swarm_tui.engine.heartbeat.learn import Preference
from swarm_tui.engine.heartbeat.local_model import Advisor
from swarm_tui.engine.heartbeat.merge import merge_review, verdict
from swarm_tui.engine.heartbeat.prompt import ReviewTask
from swarm_tui.engine.heartbeat.settings import ConductorSettings
from swarm_tui.engine.projection.recorder import Recorder
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import ConductorState

REVIEWABLE = ("done", "failed")  # finished task states the heartbeat reviews (cancelled is a person's word)


class ReviewHost(Protocol):
    """What a review reads and updates of the conductor that runs it."""

    settings: ConductorSettings
    state: SwarmState
    advisor: Advisor | None
    record: Recorder
    demo: bool
    status: ConductorState
    reachable: bool | None
    last_warning: str
    last_decision: str
    decisions: int
    followups: int
    review_note: str
    reviewed: dict[str, int]  # task id -> how many results it had when it was last reviewed

    clock: Callable[[], float]

    def envelope(self, tasks: list[ReadyTask]) -> Envelope: ...

    def clamp_plan(self, env: Envelope, advice: Advice, rounds: dict[str, int] | None = None) -> Clamped: ...

    async def maybe_auto_approve(self, d: Decision) -> None: ...

    def learned(self) -> tuple[list[str], dict[str, Preference]]: ...

    def estimate(self, model: str, prompt_bytes: int, max_tokens: int) -> tuple[float, float]: ...


def reviewable(c: ReviewHost) -> list[ReviewTask]:
    """Finished tasks with results not reviewed yet and room left for a follow-up (the others are marked
    reviewed, with the limit they are at in ``review_note``)."""
    max_rounds = c.settings.budget.task_max_followups
    max_usd = c.settings.budget.task_max_usd
    out: list[tuple[int, float, ReviewTask]] = []
    for tv in c.state.tasks.values():
        if tv.state not in REVIEWABLE or not tv.results or c.reviewed.get(tv.id) == len(tv.results):
            continue
        nxt = c.state.task_round(tv.id) + 1
        if nxt > max_rounds:
            c.reviewed[tv.id] = len(tv.results)
            c.review_note = f"task {tv.id} is at its follow-up limit ({max_rounds} rounds): not offered"
            continue
        spent = c.state.task_spend(tv.id)
        if spent >= max_usd - 1e-12:
            c.reviewed[tv.id] = len(tv.results)
            c.review_note = (
                f"task {tv.id} has spent ${spent:.4f} of its ${max_usd:.4f} limit (budget.task_max_usd): no follow-up"
            )
            continue
        # the answer a person promoted comes last, where the model's window of recent results always has it
        rs = sorted(c.state.task_results(tv.id), key=lambda r: r.job_id == tv.promoted)
        results = [
            (
                f"{r.role or 'worker'}, the user's chosen answer" if r.job_id == tv.promoted else r.role or "worker",
                str(r.state),
                r.text or r.reason,
            )
            for r in rs
        ]
        out.append(
            (
                -tv.task.priority,
                tv.task.created_at,
                ReviewTask(tv.id, tv.task.text, results, nxt, max_rounds, spent, max_usd),
            )
        )
    out.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in out[: c.settings.heartbeat.max_tasks_per_beat]]


async def review(c: ReviewHost, trigger: str) -> list[Decision]:
    """Offer finished tasks' new results to the local model; publish the follow-ups it proposes (one
    decision per task, clamped, approved like any decision)."""
    items = reviewable(c)
    if not items:
        return []
    for t in items:
        c.reviewed[t.id] = len(c.state.tasks[t.id].results)
    if c.advisor is None:
        c.review_note = "the rules alone propose no follow-ups (they cannot judge results)"
        return []
    offered = [t for t in items if verdict(t.results) != "complete"]  # only these may get a follow-up (merge.py)
    if not offered:
        c.review_note = f"{len(items)} finished task(s) with results that look complete: no follow-up (the rules)"
        return []
    items = offered
    ctx = c.settings.swarm.context_max_chars
    prio = {t.id: c.state.tasks[t.id].task.priority for t in items}
    given = [tokens.given_bytes_bound((x[2] for x in t.results), ctx) for t in items]  # in its worst case
    env = c.envelope([ReadyTask(t.id, t.text, prio[t.id], n) for t, n in zip(items, given, strict=True)])
    if env.max_workers <= 0:
        c.review_note = f"no follow-up: the envelope allows 0 workers ({env.why_zero()})"
        return []
    examples, prefs = c.learned()
    c.status = "deciding"
    try:
        result = await c.advisor.review(env, items, examples=examples)
    finally:
        c.status = "paused" if c.state.paused else "idle"
    c.reachable = result.reachable
    c.last_warning = result.warning
    left_out = [t.id for t in items if result.offered and t.id not in result.offered]
    for tid in left_out:  # the window held fewer tasks: the rest are offered at a later beat
        c.reviewed.pop(tid, None)
    if result.advice is None:
        c.review_note = f"no follow-up review: {result.error}"
        return []
    if c.state.paused:
        return []
    env.tasks = [t for t in env.tasks if c.state.tasks[t.id].state in REVIEWABLE]
    rounds = {t.id: c.state.task_round(t.id) + 1 for t in env.tasks}
    # follow-ups only where the results look wrong (merge.py), then the clamp and each task's own limits
    merged = merge_review(env, result.advice, items, estimate=c.estimate, prefs=prefs)
    clamped = c.clamp_plan(env, merged.advice, rounds)
    if not clamped.items:
        why = "; ".join(c.reason for c in clamped.clamps[:3])
        kept = "; ".join(x.reason for x in merged.choices[:2])
        c.review_note = f"no follow-up for {len(items)} task(s)" + (f" (clamped: {why})" if why else "")
        c.review_note += f" ({kept})" if kept and not why else ""
        return []
    out = []
    now = c.clock()
    for tid in dict.fromkeys(p.task_id for p in clamped.items):
        idx = [i for i, p in enumerate(clamped.items) if p.task_id == tid]
        plan = [clamped.items[i] for i in idx]
        est_min = round(sum(clamped.costs[i][0] for i in idx), 8)
        est_max = round(sum(clamped.costs[i][1] for i in idx), 8)
        summary = (
            f"{trigger}: follow-up round {rounds[tid]} of {c.settings.budget.task_max_followups}"
            f" for task {tid}: {len(plan)} worker(s)"
        )
        if result.advice.reason:
            summary += f"; model: {result.advice.reason[:300]}"
        d = Decision(
            id=new_id("d"),
            task_ids=[tid],
            plan=plan,
            est_cost_min=est_min,
            est_cost_max=est_max,
            item_costs=[item_cost(clamped.costs[i]) for i in idx],
            source=result.source,
            clamps=clamped.clamps[:500],
            raw=result.raw,
            latency_ms=result.latency_ms,
            reason=summary[:2000],
            created_at=now,
            expires_at=now + c.settings.approval.expire_s,
            round=min(100, rounds[tid]),
            demo=c.demo,
            warning=result.warning[:500],
            merge=[x for x in merged.choices if x.task_id in ("", tid)][:200],
            examples=[e[:300] for e in result.examples_used][:8],
        )
        await c.record(d, msg_id=d.id)
        c.decisions += 1
        c.followups += 1
        c.last_decision = d.id
        out.append(d)
        await c.maybe_auto_approve(d)
    c.review_note = f"{len(out)} follow-up decision(s) for {len(items) - len(left_out)} reviewed task(s)" + (
        f"; {len(left_out)} more did not fit the model's window: reviewed at a later beat" if left_out else ""
    )
    return out

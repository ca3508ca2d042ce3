"""The properties a good heartbeat plan has, and the score of a plan against a scenario's properties.

Pure functions over a clamped plan (``PlanItem`` list) and its envelope: no model, no I/O, so the checks are
tested on hand-made plans (tests/unit/test_bench_heartbeat.py). Task indices are positions in the envelope's
task list (highest priority first; equal priorities keep the scenario's order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from swarm_tui.engine.bus.wire import PlanItem
from swarm_tui.engine.heartbeat.envelope import Envelope

Check = Callable[[list[PlanItem], Envelope], bool]
Property = tuple[str, Check]


def _tid(e: Envelope, i: int) -> str:
    return e.tasks[i].id if i < len(e.tasks) else ""


def _of(p: list[PlanItem], e: Envelope, i: int) -> list[PlanItem]:
    tid = _tid(e, i)
    return [x for x in p if x.task_id == tid]


def n_workers(lo: int, hi: int) -> Property:
    return (f"{lo}-{hi} workers" if lo != hi else f"{lo} worker(s)", lambda p, e: lo <= len(p) <= hi)


def uses(role: str) -> Property:
    return f"uses {role}", lambda p, e: any(x.role == role for x in p)


def avoids(role: str) -> Property:
    return f"no {role}", lambda p, e: all(x.role != role for x in p)


def every_task() -> Property:
    return "every task planned", lambda p, e: {x.task_id for x in p} == set(e.task_ids)


def chain(first: str, then: str) -> Property:
    def ok(p: list[PlanItem], e: Envelope) -> bool:
        a = [x.step for x in p if x.role == first]
        b = [x.step for x in p if x.role == then]
        return bool(a and b) and min(a) < min(b)

    return f"{first} before {then}", ok


def task_gets(i: int, role: str | None = None) -> Property:
    def ok(p: list[PlanItem], e: Envelope) -> bool:
        return any(role is None or x.role == role for x in _of(p, e, i))

    return f"task {i + 1} gets {role or 'a worker'}", ok


def task_count(i: int, lo: int, hi: int) -> Property:
    """Task ``i`` gets between ``lo`` and ``hi`` workers (all steps together)."""
    words = f"{lo}-{hi} workers" if lo != hi else f"{lo} worker(s)"
    return f"task {i + 1}: {words}", lambda p, e: lo <= len(_of(p, e, i)) <= hi


def task_steps(i: int, first: str, n: int = 2) -> Property:
    """Task ``i`` runs in at least ``n`` steps, its first step by ``first`` (a task that names two steps)."""

    def ok(p: list[PlanItem], e: Envelope) -> bool:
        mine = _of(p, e, i)
        steps = sorted({x.step for x in mine})
        return len(steps) >= n and all(x.role == first for x in mine if x.step == steps[0])

    return f"task {i + 1}: {first} then {n - 1} more step(s)", ok


def task_skipped(i: int) -> Property:
    return f"task {i + 1} has no follow-up", lambda p, e: not _of(p, e, i)


def one_per_task() -> Property:
    return "at most 1 worker per task", lambda p, e: all(sum(1 for y in p if y.task_id == x.task_id) <= 1 for x in p)


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class Score:
    met: int = 0
    total: int = 0
    failed: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    eval_tokens: int = 0
    error: str = ""  # the model's answer could not be used: the rules planned (the table marks it †)
    plan: str = ""
    examples: list[str] = field(default_factory=list)  # the learned examples the model's prompt carried
    called: bool = True  # False: no model call (a review whose results all look complete, as the conductor)


def plan_words(e: Envelope, items: list[PlanItem]) -> str:
    """``1:research@0, 1:analysis@1``: task number (envelope order), role, step."""
    pos = {t.id: n + 1 for n, t in enumerate(e.tasks)}
    return ", ".join(f"{pos.get(x.task_id, '?')}:{x.role}@{x.step}" for x in items) or "(none)"


def score(checks: list[Property], env: Envelope, items: list[PlanItem]) -> Score:
    out = Score(total=len(checks))
    for name, check in checks:
        if check(items, env):
            out.met += 1
        else:
            out.failed.append(name)
    out.plan = plan_words(env, items)
    return out

"""The clamp of a plan to the envelope, and the rules' own plan.

Pure functions and plain data, no I/O. Any plan (the local model's or the rules' own) goes through ``clamp``,
which drops or trims what does not fit and records a ``Clamp`` with the reason for each change. ``violations``
states the envelope as a checkable property: a clamped plan never has any.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm_tui.engine.bus.wire import Clamp, PlanItem
from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
from swarm_tui.engine.heartbeat.envelope import Envelope, Estimate, RoleSpec, prompt_bytes

# ---------------------------------------------------------------------------------------------- plans
CODE_WORDS = re.compile(
    r"\b(code|coding|function|bug|implement|script|python|rust|javascript|sql|refactor|"
    r"program|compile|regex|class|api)\b",
    re.I,
)
ANALYSIS_WORDS = re.compile(
    r"\b(analy[sz]e|analysis|compare|evaluate|assess|review|why|explain|pros|cons|"
    r"trade-?offs?)\b",
    re.I,
)


def rules_role(env: Envelope, text: str) -> str | None:
    """A sensible role for a task by its words, among the roles this beat allows (else the first allowed)."""
    if not env.roles:
        return None
    for pattern, name in ((CODE_WORDS, "code"), (ANALYSIS_WORDS, "analysis"), (None, "research")):
        if name in env.roles and (pattern is None or pattern.search(text)):
            return name
    return next(iter(env.roles))


def rules_advice(env: Envelope) -> Advice:
    """The rules' own plan: one worker per ready task, its role chosen from the task's words."""
    workers = []
    for t in env.tasks:
        role = rules_role(env, t.text)
        if role is not None:
            workers.append(AdviceWorker(task_id=t.id, role=role))
    return Advice(workers=workers, reason="rules: one worker per ready task")


@dataclass
class Clamped:
    items: list[PlanItem]
    clamps: list[Clamp]
    est_min: float
    est_max: float
    costs: list[tuple[float, float]] = field(default_factory=list)  # (likely, worst) of each item


def item_cost(cost: tuple[float, float]) -> tuple[float, float]:
    """One plan item's (likely, worst) as a decision records it (``Decision.item_costs``): what an edit of the
    decision's worker count is priced from (projection/figures.py). The worst case is rounded up: it stays a
    bound on what the item's job may be billed."""
    return round(cost[0], 8), math.ceil(cost[1] * 1e8) / 1e8


def chain_steps(items: list[PlanItem], clamps: list[Clamp]) -> list[PlanItem]:
    """Keep each task's steps a chain without gaps (0, 1, 2 ...): after a clamp dropped a step, or when a plan
    skipped numbers, the steps left are renumbered in order, so a later step never waits for a step that will
    not come. Items of the same step stay together (they run in parallel)."""
    by_task: dict[str, list[int]] = {}
    for p in items:
        by_task.setdefault(p.task_id, [])
        if p.step not in by_task[p.task_id]:
            by_task[p.task_id].append(p.step)
    out = []
    for p in items:
        order = sorted(by_task[p.task_id])
        new = order.index(p.step)
        if new != p.step:
            p = p.model_copy(update={"step": new})
        out.append(p)
    changed = {t: sorted(s) for t, s in by_task.items() if sorted(s) != list(range(len(s)))}
    for t, steps in list(changed.items())[:20]:
        why = f"task {t}: steps {steps} renumbered 0..{len(steps) - 1} so they run in order without a gap"
        _step_clamp(clamps, why, steps, list(range(len(steps))))
    return out


def _step_clamp(clamps: list[Clamp], reason: str, before: list[int], after: list[int]) -> None:
    if len(clamps) < 400:
        clamps.append(Clamp(what="step", reason=reason, before=before, after=after))


def limit_tasks(
    c: Clamped,
    *,
    spent: dict[str, float],
    max_usd: float,
    rounds: dict[str, int] | None = None,
    max_rounds: int | None = None,
) -> Clamped:
    """The per-task limits on a clamped plan: a task's spend so far plus the worst case of its new workers
    stays within ``max_usd`` (budget.task_max_usd), and a follow-up round beyond ``max_rounds``
    (budget.task_max_followups) gets no worker. What is cut is a Clamp with the reason."""
    clamps = list(c.clamps)
    items: list[PlanItem] = []
    costs: list[tuple[float, float]] = []
    worst_by_task: dict[str, float] = defaultdict(float)
    costs_in = c.costs if len(c.costs) == len(c.items) else [(0.0, 0.0)] * len(c.items)
    told: set[tuple[str, str]] = set()

    def note(what: str, task: str, reason: str, before: Any, after: Any) -> None:
        if (what, task) not in told and len(clamps) < 400:
            told.add((what, task))
            clamps.append(Clamp(what=what, reason=reason[:500], before=before, after=after))

    for p, (likely, worst) in zip(c.items, costs_in, strict=True):
        r = (rounds or {}).get(p.task_id, 0)
        if max_rounds is not None and r > max_rounds:
            note(
                "round",
                p.task_id,
                f"task {p.task_id}: follow-up round {r} is over the limit of {max_rounds} (budget.task_max_followups)",
                r,
                None,
            )
            continue
        had = spent.get(p.task_id, 0.0)
        if had + worst_by_task[p.task_id] + worst > max_usd + 1e-12:
            note(
                "task_budget",
                p.task_id,
                f"task {p.task_id}: spent ${had:.4f}; with this worker's worst case ${worst:.4f} it would pass "
                f"its limit of ${max_usd:.4f} (budget.task_max_usd)",
                round(had, 6),
                None,
            )
            continue
        worst_by_task[p.task_id] += worst
        items.append(p)
        costs.append((likely, worst))
    asked: dict[str, set[int]] = defaultdict(set)
    for p in c.items:
        asked[p.task_id].add(p.step)
    items, costs = whole_chains(asked, items, costs, clamps)  # a step cut by a task's limit holds back the later
    items = chain_steps(items, clamps)
    return Clamped(items, clamps, round(sum(x for x, _ in costs), 8), round(sum(w for _, w in costs), 8), costs)


def clamp(env: Envelope, advice: Advice, estimate: Estimate, all_roles: dict[str, RoleSpec]) -> Clamped:
    """Fit a plan into the envelope; every change is a Clamp with its reason."""
    clamps: list[Clamp] = []
    tasks = {t.id: t for t in env.tasks}
    items: list[PlanItem] = []
    costs: list[tuple[float, float]] = []
    per_task: Counter[str] = Counter()
    per_model: Counter[str] = Counter()
    spent_worst = 0.0
    spent_likely = 0.0

    def note(what: str, reason: str, before: Any, after: Any) -> None:
        if len(clamps) < 400:
            clamps.append(Clamp(what=what[:64], reason=reason[:500], before=_short(before), after=_short(after)))

    for i, w in enumerate(advice.workers):
        tag = f"workers[{i}]"
        if w.task_id not in tasks:
            note(f"{tag}.task_id", "not a ready task of this beat", w.task_id, None)
            continue
        if w.role not in env.roles:
            why = env.excluded.get(w.role) or ("not a configured role" if w.role not in all_roles else "")
            note(f"{tag}.role", why or "not allowed this beat", w.role, None)
            continue
        spec = env.roles[w.role]
        count = w.count
        if count < 1:
            note(f"{tag}.count", "no worker asked for", count, 0)
            continue
        step = w.step
        max_tokens = spec.max_tokens
        if w.max_tokens is not None and w.max_tokens < spec.max_tokens:
            max_tokens = w.max_tokens
        elif w.max_tokens is not None and w.max_tokens > spec.max_tokens:
            note(
                f"{tag}.max_tokens", f"role {spec.name} allows at most {spec.max_tokens}", w.max_tokens, spec.max_tokens
            )
        later = env.context_bytes if w.step > 0 else 0  # a later step is given the results before it
        likely, worst = estimate(spec.model, prompt_bytes(tasks[w.task_id], later), max_tokens)
        for n in range(count):
            why = ""
            if len(items) >= env.max_workers:
                why = "envelope: " + ("; ".join(env.limits.values()) or f"at most {env.max_workers} workers")
                what = "workers"
            elif per_task[w.task_id] >= env.max_per_task:
                why, what = f"at most {env.max_per_task} workers per task", f"{tag}.count"
            elif spec.model in env.model_caps and per_model[spec.model] >= env.model_caps[spec.model]:
                why, what = f"rate limit: at most {env.model_caps[spec.model]} new {spec.model}", f"{tag}.count"
            elif env.budget_usd is not None and spent_worst + worst > env.budget_usd + 1e-12:
                why = f"budget: worst case ${spent_worst + worst:.4f} would pass ${env.budget_usd:.4f}"
                what = "budget"
            if why:
                note(what, why, count, n)
                break
            items.append(
                PlanItem(task_id=w.task_id, role=spec.name, model=spec.model, max_tokens=max_tokens, step=step)
            )
            costs.append((likely, worst))
            per_task[w.task_id] += 1
            per_model[spec.model] += 1
            spent_worst += worst
            spent_likely += likely
    items, costs = whole_chains(asked_steps(env, advice), items, costs, clamps)
    items = chain_steps(items, clamps)
    return Clamped(items, clamps, round(sum(x for x, _ in costs), 8), round(sum(w for _, w in costs), 8), costs)


def asked_steps(env: Envelope, advice: Advice) -> dict[str, set[int]]:
    """task -> the steps a plan asked for that could run (a ready task, a role allowed, a worker or more)."""
    ready = set(env.task_ids)
    asked: dict[str, set[int]] = defaultdict(set)
    for w in advice.workers:
        if w.count >= 1 and w.task_id in ready and w.role in env.roles:
            asked[w.task_id].add(w.step)
    return asked


def whole_chains(
    asked: dict[str, set[int]], items: list[PlanItem], costs: list[tuple[float, float]], clamps: list[Clamp]
) -> tuple[list[PlanItem], list[tuple[float, float]]]:
    """A task's later steps run only after the steps before them: when the clamp dropped every worker of a step
    the plan asked for, the task's later steps are dropped too (a later step would run without the results it
    was planned to be given: an analysis alone on a code task whose code step did not fit). A step that was never
    a valid one (a role not allowed, a task not ready) holds nothing back: it could not have given results."""
    kept: dict[str, set[int]] = defaultdict(set)
    for p in items:
        kept[p.task_id].add(p.step)
    cut: dict[str, int] = {}  # task -> the first step asked for and not kept
    for task, steps in kept.items():
        missing = sorted(asked[task] - steps)
        if missing and missing[0] < max(steps):
            cut[task] = missing[0]
    if not cut:
        return items, costs
    out = [(p, c) for p, c in zip(items, costs, strict=True) if p.task_id not in cut or p.step < cut[p.task_id]]
    for task, step in list(cut.items())[:20]:
        why = f"task {task}: step {step} did not fit, so its later steps wait with it"
        _step_clamp(clamps, why, sorted(kept[task]), sorted(s for s in kept[task] if s < step))
    return [p for p, _ in out], [c for _, c in out]


def violations(env: Envelope, items: Sequence[PlanItem], est_max: float) -> list[str]:
    """Everything in a plan that is outside the envelope (empty for any clamped plan)."""
    out = []
    if len(items) > env.max_workers:
        out.append(f"{len(items)} workers > {env.max_workers}")
    ids = set(env.task_ids)
    per_task = Counter(p.task_id for p in items)
    per_model = Counter(p.model for p in items)
    for p in items:
        spec = env.roles.get(p.role)
        if p.task_id not in ids:
            out.append(f"task {p.task_id} not ready")
        if spec is None:
            out.append(f"role {p.role} not allowed")
        elif p.model != spec.model or p.max_tokens > spec.max_tokens:
            out.append(f"{p.role}: model/max_tokens outside the role")
    out += [f"task {t}: {n} > {env.max_per_task}" for t, n in per_task.items() if n > env.max_per_task]
    out += [
        f"model {m}: {n} > cap {env.model_caps[m]}"
        for m, n in per_model.items()
        if m in env.model_caps and n > env.model_caps[m]
    ]
    if env.budget_usd is not None and est_max > env.budget_usd + 1e-9:
        out.append(f"worst case {est_max} > budget {env.budget_usd}")
    return out


def _short(v: Any) -> Any:
    if isinstance(v, str) and len(v) > 80:
        return v[:80] + "..."
    return v

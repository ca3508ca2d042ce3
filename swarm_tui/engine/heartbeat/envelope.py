"""The rules: the envelope a beat may act within, the advice schema, and the clamp of a plan to the envelope.

Pure functions and plain data, no I/O. The conductor computes an ``Envelope`` from the guards (scale cap, budget
left, RAM headroom, rate-limit state) and the ready tasks; any plan (the local model's or the rules' own) goes
through ``clamp``, which drops or trims what does not fit and records a ``Clamp`` with the reason for each
change. ``violations`` states the envelope as a checkable property: a clamped plan never has any.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm_tui.engine.bus.wire import Clamp, PlanItem
from swarm_tui.engine.guards.tokens import utf8_len
from swarm_tui.engine.info import EnvelopeSummary
from swarm_tui.engine.models import is_local_chat

MAX_STEP = 20
PROMPT_OVERHEAD_BYTES = 400  # system text a worker sends besides the task itself (UTF-8 bytes)
Estimate = Callable[[str, int, int], tuple[float, float]]  # (model, prompt_bytes, max_tokens) -> (likely, worst)


# ---------------------------------------------------------------------------------------------- the advice
# What the local model answers is a *compact plan*: per task, its roles in step order and a worker count per
# step. The JSON schema below is sent as Ollama's ``format``; Ollama hands it to llama.cpp, whose
# ``common/json-schema-to-grammar`` turns it into a GBNF grammar that binds every generated token. The limits
# that shape it (llama.cpp's grammar parser and converter, measured against llama-cpp-python here):
#
# - The grammar parser refuses a repetition count at its ``MAX_REPETITION_THRESHOLD`` (2000), and a
#   ``maxLength``/``maxItems`` is expanded into that many repetitions: a 2000-character ``reason`` alone was
#   refused ("number of repetitions exceeds sane defaults"), every beat. Every bound here stays far below:
#   ``reason`` REASON_CHARS; ``tasks`` at most the tasks offered (heartbeat.max_tasks_per_beat, <= MAX_TASKS)
#   and at most the workers the beat may start; ``roles`` at most the roles allowed this beat, MAX_CHAIN and the
#   per-task worker limit.
# - The converter does not enforce integer ``minimum``/``maximum``: ``count`` is an ``enum`` of 1..the
#   per-task limit, and everything is clamped again after parsing anyway.
# - Every property is required, so the model writes one fixed shape with no optional key to decide on, and
#   nothing it need not say: no per-worker max_tokens (the role has one), no step numbers (the order of
#   ``roles`` is the order of steps).
# - ``reason`` comes last: measured with ``python -m bench.heartbeat`` on Gemma 3 270M, the plan first met
#   19 of 32 properties and the reason first 16 (one run each: a small model's answers are noisy).
# - Bounded arrays make the worst-case answer finite: ``worst_case_tokens`` sizes ``num_predict`` from it.
MAX_TASKS = 100  # the most tasks one beat may offer (heartbeat.max_tasks_per_beat allows 1..100)
MAX_CHAIN = 4  # the most roles one task may chain in one plan
MAX_COUNT = 20  # the most workers per step the schema can express (heartbeat.max_workers_per_task allows 1..20)
REASON_CHARS = 160  # one sentence


class AdviceWorker(BaseModel):
    """One worker (or ``count`` parallel workers) of a plan, as the clamp reads it."""

    model_config = ConfigDict(extra="ignore")
    task_id: str = Field(max_length=64, description="id of a ready task")
    role: str = Field(max_length=32, description="one of the configured roles")
    count: int = Field(default=1, ge=0, le=50, description="how many workers of this role for this task")
    step: int = Field(default=0, ge=0, le=MAX_STEP, description="roles of one task run in step order")
    max_tokens: int | None = Field(default=None, ge=1, le=200_000, description="at most the role's limit")


class Advice(BaseModel):
    """A plan: what the clamp takes, from the model's compact answer (``parse_advice``) or from the rules."""

    model_config = ConfigDict(extra="ignore")
    workers: list[AdviceWorker] = Field(max_length=400)
    reason: str = Field(default="", max_length=2000)


class PlanTask(BaseModel):
    """One task of the model's compact answer: its roles in step order, ``count`` workers at each step."""

    model_config = ConfigDict(extra="ignore")
    task_id: str = Field(max_length=64)
    roles: list[str] = Field(min_length=1, max_length=MAX_CHAIN)
    count: int = Field(ge=1, le=50)


class ModelPlan(BaseModel):
    """The model's answer, exactly the shape of ``advice_schema``."""

    model_config = ConfigDict(extra="ignore")
    reason: str = ""
    tasks: list[PlanTask] = Field(max_length=MAX_TASKS)

    def to_advice(self) -> Advice:
        workers = [
            AdviceWorker(task_id=t.task_id, role=r, count=t.count, step=i)
            for t in self.tasks
            for i, r in enumerate(t.roles)
        ]
        return Advice(workers=workers, reason=self.reason[:REASON_CHARS])


def advice_schema(
    roles: Sequence[str], task_ids: Sequence[str], *, max_per_task: int = 3, max_workers: int | None = None
) -> dict[str, Any]:
    """The grammar for one beat: the allowed roles and task ids as enums, every array bounded by what the beat
    can use (see the limits above): at most one entry per offered task and no more entries than workers the
    beat may start; a chain no longer than the roles allowed or the per-task worker limit; a count within it."""
    roles = list(roles)[:32] or ["none"]
    task_ids = list(task_ids)[:MAX_TASKS]
    per_task = max(1, min(MAX_COUNT, max_per_task))
    entries = max(1, min(len(task_ids), max_workers if max_workers is not None else len(task_ids)))
    task = {
        "type": "object",
        "properties": {
            "task_id": {"type": "string", "enum": task_ids},
            "roles": {
                "type": "array",
                "items": {"type": "string", "enum": roles},
                "minItems": 1,
                "maxItems": min(MAX_CHAIN, len(roles), per_task),
            },
            "count": {"type": "integer", "enum": list(range(1, per_task + 1))},
        },
        "required": ["task_id", "roles", "count"],
    }
    return {
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": task, "maxItems": entries},
            "reason": {"type": "string", "maxLength": REASON_CHARS},
        },
        "required": ["tasks", "reason"],
    }


def worst_case_tokens(schema: dict[str, Any]) -> int:
    """The most tokens an answer bound by ``schema`` can take: each character of ``reason`` a token (the grammar
    lets any character through), the enum literals and punctuation at two characters a token (generous: JSON
    and ids tokenize at 2.5-4), and one token of whitespace per element (the grammar allows a newline and
    indentation between any two). Not covered: a reason written in ``\\uXXXX`` escapes (~6 tokens a
    character) or runs of whitespace over a token; such an answer is cut at num_predict and recorded as cut."""
    props = schema["properties"]
    item = props["tasks"]["items"]["properties"]
    longest = max((len(json.dumps(t)) for t in item["task_id"]["enum"]), default=2)
    role = max(len(json.dumps(r)) for r in item["roles"]["items"]["enum"])
    chain = int(item["roles"]["maxItems"])
    count = max(len(str(c)) for c in item["count"]["enum"])
    n = int(props["tasks"]["maxItems"])
    item_chars = len('{"task_id": , "roles": [], "count": }') + longest + chain * (role + 2) + count
    item_elems = 8 + chain
    reason = int(props["reason"]["maxLength"])
    head = len('{"reason": "", "tasks": []}')
    return reason + math.ceil((head + n * item_chars) / 2) + 8 + n * item_elems


class AdviceError(ValueError):
    """The model's answer cannot be used; the message says why (one line)."""


def parse_advice(text: str) -> Advice:
    """The model's raw text (a compact plan) to an Advice, or AdviceError (invalid JSON or a schema
    mismatch)."""
    try:
        # strict=False: a raw control character (a newline) inside the reason string is let through; some
        # grammar converters allow one there, and it harms nothing in a one-sentence reason.
        obj = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        raise AdviceError(f"the model's answer is not valid JSON ({type(exc).__name__})") from None
    try:
        return ModelPlan.model_validate(obj).to_advice()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "answer"
        raise AdviceError(
            f"the model's answer does not match the schema: {loc}: {first.get('msg', 'invalid')}"[:300]
        ) from None


# ---------------------------------------------------------------------------------------------- the envelope
@dataclass(frozen=True)
class RoleSpec:
    name: str
    model: str
    max_tokens: int

    @property
    def local(self) -> bool:
        return is_local_chat(self.model)


@dataclass(frozen=True)
class ReadyTask:
    id: str
    text: str
    priority: int = 5
    context_bytes: int = 0  # earlier results a worker of this task is given (a follow-up): counted in its prompt


@dataclass
class Envelope:
    max_workers: int
    roles: dict[str, RoleSpec]  # the roles a plan may use this beat
    excluded: dict[str, str]  # role -> why it may not be used this beat
    model_caps: dict[str, int]  # model -> at most this many new workers (rate limits)
    tasks: list[ReadyTask]
    budget_usd: float | None  # worst-case cost the plan may reach; None: no spend limit known
    max_per_task: int
    limits: dict[str, str] = field(default_factory=dict)  # what bounds max_workers, in words
    bounds: dict[str, int] = field(default_factory=dict)  # the same limits as numbers
    notes: list[str] = field(default_factory=list)  # guards that are missing (no limit from them)
    context_bytes: int = 0  # the most bytes of earlier results a later step is given (counted in its worst case)

    @property
    def task_ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def why_zero(self) -> str:
        if self.max_workers > 0:
            return ""
        if not self.tasks:
            return "no ready tasks"
        if not self.roles:
            return "no role may be used: " + "; ".join(f"{r}: {w}" for r, w in self.excluded.items())
        return "; ".join(self.limits[k] for k, n in self.bounds.items() if n <= 0 and k in self.limits) or "no room"

    def summary(self) -> EnvelopeSummary:
        return {
            "max_workers": self.max_workers,
            "roles": sorted(self.roles),
            "excluded": dict(self.excluded),
            "model_caps": dict(self.model_caps),
            "tasks": len(self.tasks),
            "budget_usd": None if self.budget_usd is None else round(self.budget_usd, 6),
            "limits": dict(self.limits),
            "notes": list(self.notes),
        }


def compute_envelope(
    roles: Sequence[RoleSpec],
    tasks: Sequence[ReadyTask],
    *,
    scale: int,
    live_workers: int,
    max_per_task: int,
    estimate: Estimate,
    remaining_usd: float | None,
    per_decision_usd: float = 0.0,
    ram_ok: bool | None = None,
    rate_limits: dict[str, dict[str, Any]] | None = None,
    now: float = 0.0,
    cloud_blocked: str = "",
    unpriced: Callable[[str], str] | None = None,  # why a model's cost has no bound: its roles are left out
    context_bytes: int = 0,
) -> Envelope:
    """The rules: how many workers may start now, with which roles, for which tasks, under which budget."""
    allowed: dict[str, RoleSpec] = {}
    excluded: dict[str, str] = {}
    caps: dict[str, int] = {}
    notes: list[str] = []
    limits: dict[str, str] = {}
    bounds: dict[str, int] = {}
    if ram_ok is None:
        notes.append("no RAM guard: no limit from RAM headroom")
    if rate_limits is None:
        notes.append("no rate-limit state: no limit from rate limits")
    if remaining_usd is None:
        notes.append("no spend guard: no budget limit from it (costs use the fallback prices)")
    for r in roles:
        rl = (rate_limits or {}).get(r.model) or {}
        backoff = float(rl.get("backoff_until") or 0)
        if r.local and ram_ok is False:
            excluded[r.name] = "RAM headroom is low: local models may not start"
        elif not r.local and cloud_blocked:
            excluded[r.name] = f"cloud blocked: {cloud_blocked}"[:300]
        elif backoff > now:
            excluded[r.name] = f"{r.model} is rate limited for {backoff - now:.0f} s more"
        elif unpriced is not None and (why := unpriced(r.model)):
            excluded[r.name] = why[:300]
        else:
            allowed[r.name] = r
            lim = rl.get("limit")
            if isinstance(lim, int | float) and not isinstance(lim, bool) and lim >= 0:
                caps[r.model] = min(caps.get(r.model, 10**6), int(lim))
    room = max(0, scale - live_workers)
    limits["scale"] = f"scale {scale} with {live_workers} live workers leaves {room}"
    bounds["scale"] = room
    max_workers = room
    budget = remaining_usd
    if per_decision_usd > 0:
        budget = per_decision_usd if budget is None else min(budget, per_decision_usd)
    if budget is not None:
        budget = max(0.0, budget)
        worst = [estimate(r.model, _cheapest_prompt(tasks), r.max_tokens)[1] for r in allowed.values()]
        cheapest = min(worst) if worst else 0.0
        if cheapest > 0:
            n = int(math.floor(budget / cheapest + 1e-9))
            limits["budget"] = (
                f"budget: ${budget:.4f} left covers {n} worker(s) at the cheapest worst case ${cheapest:.4f}"
            )
            bounds["budget"] = n
            max_workers = min(max_workers, n)
    if allowed and caps and all(r.model in caps for r in allowed.values()):
        by_model = sum(caps[m] for m in {r.model for r in allowed.values()})
        if by_model < max_workers:
            limits["rate"] = f"rate limits allow {by_model} new worker(s)"
            bounds["rate"] = by_model
            max_workers = by_model
    if not allowed:
        max_workers = 0
    return Envelope(
        max_workers=max_workers,
        roles=allowed,
        excluded=excluded,
        model_caps=caps,
        tasks=list(tasks),
        budget_usd=budget,
        max_per_task=max(1, max_per_task),
        limits=limits,
        bounds=bounds,
        notes=notes,
        context_bytes=max(0, context_bytes),
    )


def _cheapest_prompt(tasks: Sequence[ReadyTask]) -> int:
    return PROMPT_OVERHEAD_BYTES + (min(utf8_len(t.text) for t in tasks) if tasks else 0)


def prompt_bytes(task: ReadyTask, context_bytes: int = 0) -> int:  # context_bytes: a later step's given results
    return PROMPT_OVERHEAD_BYTES + utf8_len(task.text) + max(task.context_bytes, context_bytes)


# ---------------------------------------------------------------------------------------------- plans
_CODE = re.compile(
    r"\b(code|coding|function|bug|implement|script|python|rust|javascript|sql|refactor|"
    r"program|compile|regex|class|api)\b",
    re.I,
)
_ANALYSIS = re.compile(
    r"\b(analy[sz]e|analysis|compare|evaluate|assess|review|why|explain|pros|cons|"
    r"trade-?offs?)\b",
    re.I,
)


def rules_role(env: Envelope, text: str) -> str | None:
    """A sensible role for a task by its words, among the roles this beat allows (else the first allowed)."""
    if not env.roles:
        return None
    for pattern, name in ((_CODE, "code"), (_ANALYSIS, "analysis"), (None, "research")):
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
        if len(clamps) < 400:
            clamps.append(
                Clamp(
                    what="step",
                    reason=f"task {t}: steps {steps} renumbered 0..{len(steps) - 1} so they run in order without a gap",
                    before=steps,
                    after=list(range(len(steps))),
                )
            )
    return out


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
    items = chain_steps(items, clamps)
    return Clamped(items, clamps, round(spent_likely, 8), round(spent_worst, 8), costs)


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

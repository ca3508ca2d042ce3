"""The envelope a beat may act within: the roles, tasks and limits the guards allow this beat.

Pure functions and plain data, no I/O. The conductor computes an ``Envelope`` from the guards (scale cap, budget
left, RAM headroom, rate-limit state) and the ready tasks; any plan goes through ``clamp`` (heartbeat/clamp.py)
to fit it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.tokens import utf8_len
from swarm_tui.engine.info import EnvelopeSummary
from swarm_tui.engine.models import is_local_chat

PROMPT_OVERHEAD_BYTES = 400  # system text a worker sends besides the task itself (UTF-8 bytes)
Estimate = Callable[[str, int, int], tuple[float, float]]  # (model, prompt_bytes, max_tokens) -> (likely, worst)


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

    def why_zero(self) -> Refusal | None:
        """Why the envelope allows no worker (None when it allows one)."""
        if self.max_workers > 0:
            return None
        if not self.tasks:
            return Refusal("no ready tasks")
        if not self.roles:
            return Refusal("no role may be used: " + "; ".join(f"{r}: {w}" for r, w in self.excluded.items()))
        bounds = "; ".join(self.limits[k] for k, n in self.bounds.items() if n <= 0 and k in self.limits)
        return Refusal(bounds or "no room")

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
    cloud_blocked: Refusal | None = None,
    unpriced: Callable[[str], Refusal | None] | None = None,  # why a model's cost has no bound: its roles are left out
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

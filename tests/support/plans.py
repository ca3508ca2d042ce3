"""A small world of roles and prices for the rules' tests (the envelope, the clamp, the loop)."""

from __future__ import annotations

from typing import Any

from swarm_tui.engine.heartbeat.envelope import ReadyTask, RoleSpec, compute_envelope

ROLES = [
    RoleSpec("research", "openrouter/a/cheap", 800),
    RoleSpec("analysis", "openrouter/b/mid", 1200),
    RoleSpec("code", "openrouter/c/coder", 1500),
    RoleSpec("local", "ollama_chat/gemma2:2b", 500),
]
ALL = {r.name: r for r in ROLES}
PRICE = {"openrouter/a/cheap": 1e-6, "openrouter/b/mid": 4e-6, "openrouter/c/coder": 3e-6}


def est(model: str, prompt_chars: int, max_tokens: int) -> tuple[float, float]:
    p = PRICE.get(model, 0.0)
    return p * (prompt_chars / 4 + max_tokens / 2), p * (prompt_chars / 3 + max_tokens)


def tasks(n: int) -> list[ReadyTask]:
    return [ReadyTask(f"t-{i}", f"task number {i}") for i in range(n)]


def env_of(n_tasks: int = 3, roles: list[RoleSpec] = ROLES, **kw: Any) -> Any:
    args: dict[str, Any] = dict(scale=10, live_workers=0, max_per_task=3, estimate=est, remaining_usd=None)
    args.update(kw)
    return compute_envelope(roles, tasks(n_tasks), **args)


def flat_envelope(tasks: list[ReadyTask], roles: list[RoleSpec] | None = None) -> Any:
    """An envelope of room enough (scale 10, a dollar left) and a flat price: for tests of the model's call."""
    roles = roles or [RoleSpec(r, f"openrouter/x/{r}", 1000) for r in ("research", "analysis", "code")]
    return compute_envelope(
        roles,
        tasks,
        scale=10,
        live_workers=0,
        max_per_task=3,
        estimate=lambda m, p, t: (0.001, 0.002),
        remaining_usd=1.0,
    )

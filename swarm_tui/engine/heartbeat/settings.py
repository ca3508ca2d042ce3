"""What the conductor is built from: the configuration sections it reads, the guards it asks, its clocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from swarm_tui.engine.config.load import Config, Role
from swarm_tui.engine.config.sections import (
    ApprovalSection,
    BudgetSection,
    HeartbeatSection,
    OllamaSection,
    OpenRouterSection,
    SwarmSection,
)
from swarm_tui.engine.guards.protocols import EnvelopeSpendP, LocalLaneP, RamGuardP, RateLimitsP


@dataclass(frozen=True)
class ConductorSettings:
    """``tick_s``: the longest sleep of the loop. It wakes when a beat is due (monotonic), when the first pending
    decision expires (wall clock), on its events, and at least every ``tick_s``: the bound on how late an expiry
    is after the wall clock jumped (a laptop waking)."""

    heartbeat: HeartbeatSection
    approval: ApprovalSection
    budget: BudgetSection  # per decision, per task
    openrouter: OpenRouterSection  # the fallback prices, when no spend guard prices a worker
    swarm: SwarmSection  # the scale, the context a later step is given
    ollama: OllamaSection  # the advisor's model
    roles: Mapping[str, Role]
    use_ollama: bool = True
    demo: bool = False
    tick_s: float = 5.0
    local_only: bool = False  # no OpenRouter key: the envelope offers local roles only (assemble.py decides)

    @classmethod
    def of(
        cls,
        cfg: Config,
        *,
        use_ollama: bool = True,
        demo: bool = False,
        tick_s: float = 5.0,
        local_only: bool = False,
    ) -> ConductorSettings:
        return cls(
            cfg.heartbeat,
            cfg.approval,
            cfg.budget,
            cfg.openrouter,
            cfg.swarm,
            cfg.ollama,
            cfg.roles,
            use_ollama=use_ollama,
            demo=demo,
            tick_s=tick_s,
            local_only=local_only,
        )


@dataclass(frozen=True)
class ConductorGuards:
    """The guards a beat's envelope is bounded by; a missing one sets no limit (the envelope notes it)."""

    spend: EnvelopeSpendP | None = None
    ram: RamGuardP | None = None
    rate_limits: RateLimitsP | None = None
    lane: LocalLaneP | None = None  # None: a lane of its own


@dataclass(frozen=True)
class Clocks:
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic

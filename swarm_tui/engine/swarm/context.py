"""What a job's run, its gates and the max-deliveries handler need from the pool that runs them.

The pool (``pool.py``) provides it; ``job.py``, ``job_call.py``, ``attempts.py``, ``gates.py`` and
``deliveries.py`` see only these protocols, so none of them imports the pool. ``PoolSettings`` are the options
the pool and its jobs read, taken from the config's sections once (a ``Config`` is immutable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.states import WorkerState
from swarm_tui.engine.swarm.run import Run

if TYPE_CHECKING:
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.config.load import Config, Role
    from swarm_tui.engine.config.sections import OpenRouterSection, SwarmSection
    from swarm_tui.engine.guards.local_lane import LocalLane
    from swarm_tui.engine.guards.protocols import RamGuardP, SpendGuardP
    from swarm_tui.engine.guards.reconcile import Reconciler
    from swarm_tui.engine.swarm.endpoint import Endpoint
    from swarm_tui.engine.swarm.limits import ModelLimit


@dataclass(frozen=True)
class PoolSettings:
    swarm: SwarmSection
    openrouter: OpenRouterSection
    roles: Mapping[str, Role]
    ollama_host: str
    secrets: tuple[str, ...] = field(repr=False)  # redacted from what a call reports; never in a repr

    @classmethod
    def of(cls, cfg: Config) -> PoolSettings:
        return cls(
            swarm=cfg.swarm,
            openrouter=cfg.openrouter,
            roles=cfg.roles,  # the config's own: a role added to it later is seen, as it always was
            ollama_host=cfg.ollama.host,
            secrets=tuple(cfg.secrets),
        )


class PoolContext(Protocol):
    """The pool as its jobs see it."""

    @property
    def bus(self) -> Bus: ...

    @property
    def settings(self) -> PoolSettings: ...

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def spend(self) -> SpendGuardP | None: ...

    @property
    def ram(self) -> RamGuardP | None: ...

    @property
    def lane(self) -> LocalLane: ...

    @property
    def reconciler(self) -> Reconciler | None: ...

    @property
    def host(self) -> str: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def counts(self) -> Counter[str]: ...

    def limit_of(self, model: str) -> ModelLimit: ...

    def cloud_blocked(self) -> Refusal | None: ...

    def mark_out_of_credit(self, reason: str) -> None: ...

    def key_refused(self) -> bool:
        """A call was refused 401: True when a new key is on its way (the provider cap): the job waits for it."""
        ...

    def on_rate_limited(self, model: str, retry_after: float | None) -> None: ...

    def on_success(self, model: str, started: float = 0.0) -> None: ...


class RunSteps(Protocol):
    """What the gates do to a run: report its state, let it wait, ack its message."""

    @property
    def ctx(self) -> PoolContext: ...

    async def event(self, run: Run, state: WorkerState, reason: str = "") -> None: ...

    async def pause(self, run: Run, seconds: float) -> None: ...

    async def ack(self, run: Run) -> None: ...

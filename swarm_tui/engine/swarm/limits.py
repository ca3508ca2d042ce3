"""Each model's concurrency as the pool learns it from the provider: AIMD, halved on a 429, +1 on success."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RECOVER_AFTER = 5  # successes of a limited model before its limit grows by one


@dataclass
class ModelLimit:
    """AIMD concurrency of one model (the pool's): halved on a 429, +1 after every ``recover_after`` successes."""

    limit: int | None = None
    backoff_until: float = 0.0
    ok: int = 0
    active: int = 0  # calls running
    reserving: int = 0  # jobs past the model's gate reserving their money: they count as calls


class ModelLimits(dict[str, ModelLimit]):
    """The pool's limits by model; a model never limited has no entry until it is asked for."""

    def __init__(self, clock: Callable[[], float], max_scale: int, recover_after: int = RECOVER_AFTER) -> None:
        super().__init__()
        self.clock = clock
        self.max_scale = max_scale  # a limit grown to this is no limit
        self.recover_after = recover_after

    def rate_limits(self) -> dict[str, dict[str, Any]]:
        return {
            m: {"limit": lim.limit, "backoff_until": lim.backoff_until}
            for m, lim in self.items()
            if lim.limit is not None or lim.backoff_until > self.clock()
        }

    def of(self, model: str) -> ModelLimit:
        return self.setdefault(model, ModelLimit())

    def on_rate_limited(self, model: str, retry_after: float | None) -> None:
        lim = self.of(model)
        lim.limit = max(1, (lim.limit or max(lim.active, 1)) // 2)
        lim.ok = 0
        lim.backoff_until = max(lim.backoff_until, self.clock() + min(120.0, retry_after or 1.0))

    def on_success(self, model: str) -> None:
        lim = self.get(model)
        if lim is None or lim.limit is None:
            return
        lim.ok += 1
        if lim.ok >= self.recover_after:
            lim.ok = 0
            lim.limit += 1
            if lim.limit >= self.max_scale:
                lim.limit = None

"""A pool from a config: its settings, its endpoint (OpenRouter unless one is given) and, when the endpoint
reconciles, the reconciler of its attempts. The engine (``assemble.py``), the standalone worker
(``cli/runner.py``) and the tests build their pools here."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.protocols import RamGuardP, SpendGuardP
from swarm_tui.engine.guards.reconcile import Reconciler
from swarm_tui.engine.swarm.context import PoolSettings
from swarm_tui.engine.swarm.endpoint import Endpoint, OpenRouterEndpoint
from swarm_tui.engine.swarm.pool import Pool


def build_pool(
    cfg: Config,
    bus: Bus,
    *,
    endpoint: Endpoint | None = None,
    spend: SpendGuardP | None = None,
    ram: RamGuardP | None = None,
    lane: LocalLane | None = None,
    clock: Callable[[], float] = time.time,
    host: str | None = None,
    concurrency: int | None = None,
    warm_on_start: bool = True,
    key: Callable[[], str] | None = None,
) -> Pool:
    ep: Endpoint = endpoint if endpoint is not None else OpenRouterEndpoint(cfg.openrouter, key)
    reconciler = (
        Reconciler(
            cfg.openrouter, bus, spend=spend, api_base=lambda: ep.api_base, api_key=lambda: ep.api_key, clock=clock
        )
        if ep.reconciles
        else None
    )
    return Pool(
        PoolSettings.of(cfg),
        bus,
        endpoint=ep,
        spend=spend,
        ram=ram,
        lane=lane,
        reconciler=reconciler,
        clock=clock,
        host=host,
        concurrency=concurrency,
        warm_on_start=warm_on_start,
    )

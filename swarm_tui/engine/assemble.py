"""Builds an engine with its components. The one place that knows which parts make up a running swarm."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine


def assemble(
    cfg: Config,
    bus: Bus,
    *,
    demo: bool = False,
    clock: Callable[[], float] = time.time,
    pool: bool = True,
    conductor: bool = True,
) -> Engine:
    engine = Engine(cfg, bus, clock=clock, demo=demo)
    from swarm_tui.engine.telemetry import seam as telemetry

    # traces, opt-in: nothing of OpenTelemetry imported otherwise (nor without the extra: a warning, no traces)
    if telemetry.wanted(cfg.otel.endpoint) and (tracing := telemetry.enable(cfg.otel.endpoint)).on:
        from swarm_tui.engine.telemetry.otel import Tracer

        assert isinstance(tracing, Tracer)
        tracing.state = engine.state
        engine.add(tracing)
    # Components are added here in start order (they stop in reverse order), each handed the parts it uses.
    # The guards come first: the pool and the conductor read them.
    from swarm_tui.engine.guards.demo_prices import DemoPrices
    from swarm_tui.engine.guards.local_lane import LocalLane
    from swarm_tui.engine.guards.memory import RamGuard
    from swarm_tui.engine.guards.prices import price_book
    from swarm_tui.engine.guards.protocols import PriceSourceP
    from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings

    prices: PriceSourceP = DemoPrices(cfg.demo) if demo else price_book(cfg, clock=clock)
    spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, prices, clock=clock))
    ram = engine.add(RamGuard(cfg.ram, cfg.ollama, clock=clock))
    lane = engine.add(LocalLane())  # one local lane per engine: the conductor and local workers share it
    key = None  # the workers' key: openrouter.api_key, unless a management key makes a capped one
    if cfg.openrouter.management_key and not demo:
        from swarm_tui.engine.guards.provider_cap import ProviderCap

        cap = engine.add(
            ProviderCap(
                cfg.openrouter,
                cfg.paths,
                ceiling=spend.ceiling,
                host=engine.host,
                on_key=spend.recheck_key,
                spent_today=lambda: float(spend.ledger()["spent"]),
                clock=clock,
            )
        )
        key = cap.worker_key
        spend.use_key(key, lambda: cap.info()["line"], cap.key_refused)
    # The swarm: the demo endpoint (before the pool that streams from it), the controller, the pool.
    from swarm_tui.engine.swarm.controller import Controller, ControllerSettings

    endpoint = None
    if demo:
        from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint

        endpoint = engine.add(DemoEndpoint(cfg.demo))
    engine.add(
        Controller(ControllerSettings.of(cfg, demo=demo), bus, engine.state, spend=spend, clock=clock, host=engine.host)
    )
    workers = None
    if pool:
        from swarm_tui.engine.swarm.build import build_pool

        workers = engine.add(
            build_pool(
                cfg,
                bus,
                endpoint=endpoint,
                spend=spend,
                ram=ram,
                lane=lane,
                clock=clock,
                host=engine.host,
                warm_on_start=False,
                key=key,
            )
        )
    if conductor:
        # keep this last: it starts after the guards and the pool it reads
        from swarm_tui.engine.heartbeat.conductor import Conductor
        from swarm_tui.engine.heartbeat.settings import Clocks, ConductorGuards, ConductorSettings

        engine.add(
            Conductor(
                # no OpenRouter key (and no demo): a fully local swarm, the heart plans local roles only
                ConductorSettings.of(
                    cfg,
                    demo=demo,
                    local_only=not demo and not (cfg.openrouter.api_key or cfg.openrouter.management_key),
                ),
                bus,
                engine.state,
                guards=ConductorGuards(spend=spend, ram=ram, rate_limits=workers, lane=lane),
                clocks=Clocks(wall=clock),
                record=engine.record,
            )
        )
    # the needs-you alerts last: they read the log and the spend guard, and run notify.command
    from swarm_tui.engine.attention.notifier import Notifier

    engine.add(
        Notifier(
            cfg.notify,
            bus,
            engine.state,
            spend=spend,
            clock=clock,
            host=engine.host,
            demo=demo,
            levels=cfg.budget.alerts,
        )
    )
    return engine

"""Long-running modes: the headless engine, a standalone worker, the full-screen app."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.lifecycle import Lifecycle, Part

log = logging.getLogger(__name__)


def refuse_engine_on_leaf(cfg: Config) -> None:
    """One engine per swarm: on a leaf (``nats.leaf_url``) it is the hub's, so none starts here."""
    from swarm_tui.engine.errors import UsageError

    if cfg.nats.leaf_url and not cfg.nats.url:
        raise UsageError(
            "nats.leaf_url is set: the engine runs on the hub, not on this leaf (run `swarm-tui` for its screen, "
            "or start the engine on the hub; docs/deploy.md)"
        )


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)


async def _headless(cfg: Config, demo: bool) -> int:
    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.bus.client import Bus

    refuse_engine_on_leaf(cfg)
    stop = asyncio.Event()
    _install_stop_signals(stop)
    bus = Bus(cfg)
    life = Lifecycle("headless")
    try:
        await life.start("bus", bus.connect, bus.close)
        engine = assemble(cfg, bus, demo=demo)
        # owed before it starts: the engine's stop undoes what its start got to (and bounds each of its parts)
        life.adopt("engine", engine.stop, timeout_s=None)
        await engine.start()
        print(f"swarm-tui engine running (bus: {bus.kind}{', DEMO' if demo else ''}); stop with Ctrl-C", flush=True)
        await stop.wait()
    finally:
        await life.stop()
    return 0


def run_headless(cfg: Config, *, demo: bool = False) -> int:
    return asyncio.run(_headless(cfg, demo))


async def _worker(cfg: Config, concurrency: int | None, demo: bool) -> int:
    """Bus + guards + pool (+ the demo endpoint), until SIGINT/SIGTERM/SIGHUP; several may share the queue."""
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.readiness import connect_worker
    from swarm_tui.engine.guards.demo_prices import DemoPrices
    from swarm_tui.engine.guards.memory import RamGuard
    from swarm_tui.engine.guards.prices import PriceBook
    from swarm_tui.engine.guards.protocols import PriceSourceP
    from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
    from swarm_tui.engine.swarm.build import build_pool

    stop = asyncio.Event()
    _install_stop_signals(stop)
    bus = Bus(cfg)
    life = Lifecycle("worker")  # the parts start in order; what started stops in reverse, then the bus
    try:
        # the streams are the engine's: a worker's login may not create or update them (contrib/nats/hub.conf)
        await life.start("bus", lambda: connect_worker(bus), bus.close)
        parts: list[Part] = []
        endpoint = None
        if demo:
            from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint

            endpoint = DemoEndpoint(cfg.demo)
            parts.append(endpoint)
        prices: PriceSourceP = DemoPrices(cfg.demo) if demo else PriceBook(cfg.openrouter, cfg.paths)
        spend = SpendGuard(SpendSettings.of(cfg), bus, None, prices)
        ram = RamGuard(cfg.ram, cfg.ollama)
        pool = build_pool(cfg, bus, endpoint=endpoint, spend=spend, ram=ram, concurrency=concurrency)
        parts += [spend, ram, pool]
        for part in parts:
            await life.start_part(part)
        blocked = pool.blocked()
        local_only = pool.key_missing()
        # a worker spends under the engine's ceiling, never its own config's (engine/guards/ceiling_kv.py)
        ceiling = f"ceiling ${spend.ceiling():.2f} a day" if spend.ceiling_known() else "no ceiling from an engine yet"
        print(
            f"swarm-tui worker running on {pool.host} (bus: {bus.kind}, capacity {pool.capacity}, {ceiling}"
            f"{', DEMO' if demo else ''}{'; takes no jobs: ' + blocked if blocked else ''}"
            f"{'; local jobs only: ' + local_only if local_only else ''}); stop with Ctrl-C",
            flush=True,
        )
        await stop.wait()
    finally:
        await life.stop()
    return 0


def run_worker(cfg: Config, *, concurrency: int | None = None, demo: bool = False) -> int:
    return asyncio.run(_worker(cfg, concurrency, demo))


def run_app(cfg: Config, *, demo: bool = False, attach: str | None = None, refresh_ms: Any = None) -> int:
    """The full-screen app: the engine in this process (or a link to one elsewhere with ``attach``)."""
    import os

    os.environ.setdefault("TEXTUAL_FPS", "240")  # read once when textual is imported (see docs/design)
    from swarm_tui.engine.errors import UsageError

    if refresh_ms is not None and not 20 <= int(refresh_ms) <= 5000:
        raise UsageError("--refresh-ms must be 20..5000")
    from swarm_tui.tui.app import SwarmApp
    from swarm_tui.tui.link import EmbeddedLink, Link, RemoteLink

    link: Link
    if attach or cfg.nats.leaf_url:  # a leaf's engine runs on the hub: this app is its screen
        link = RemoteLink(cfg, attach, demo=demo)
    else:
        link = EmbeddedLink(cfg, demo=demo)  # the engine (and nats-py) is built after the first frame
    app = SwarmApp(link, refresh_ms=refresh_ms, handle_signals=True)
    try:
        code = app.run()
    finally:
        # After a crash the loop is gone: at least stop an embedded NATS server we started.
        bus = link.bus
        if bus is not None and bus.lease is not None:
            bus.lease.stop()
    if app.return_code not in (None, 0):
        return int(app.return_code or 1)
    return int(code or 0)

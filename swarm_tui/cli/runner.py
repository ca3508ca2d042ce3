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
        await life.start("bus", lambda: bus.connect(log_limits=True), bus.close)
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
    from swarm_tui.engine.guards.prices import price_book
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
        prices: PriceSourceP = DemoPrices(cfg.demo) if demo else price_book(cfg)
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


def replay_speed(text: str | None) -> float:
    """``--speed``: how many times the log's own pace, 1..50 (the timeline's ``+``/``-`` go up and down its ladder)."""
    from swarm_tui.engine.errors import UsageError

    if text is None:
        return 1.0
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not 1 <= speed <= 50:  # also NaN
        raise UsageError(f"--speed {text[:20]!r}: give a number 1..50 (times the log's own pace)")
    return speed


async def _bus_bounds(cfg: Config) -> Any:
    """The bus log's extent (empty when the stream is not there yet), on a connection of its own."""
    from nats.js.errors import NotFoundError

    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.history.buslog import BusLog
    from swarm_tui.engine.history.source import Bounds

    bus = Bus(cfg)
    try:
        await bus.connect(setup=False)
        try:
            return await BusLog(bus).bounds()
        except NotFoundError:  # no engine ever created the event stream: nothing to replay
            return Bounds(0, 0, 0.0, 0.0, 0, 0)
    finally:
        await bus.close()


def run_replay(
    cfg: Config, *, start: str | None = None, speed: str | None = None, file: str | None = None, demo: bool = False
) -> int:
    """The full-screen app on the log's past, read-only: the bus's event log, or an exported file (no bus)."""
    import os
    import time
    from pathlib import Path

    from swarm_tui.engine.bus.lean_import import nats_without_websockets

    nats_without_websockets(cfg.nats.url)  # before anything imports nats: nothing of a replay talks HTTP
    from swarm_tui.engine.errors import SwarmError, UsageError
    from swarm_tui.engine.history.source import Bounds, LogSource
    from swarm_tui.engine.history.timeline import Timeline
    from swarm_tui.engine.history.when import parse_point

    pace = replay_speed(speed)
    point = parse_point(start, now=time.time(), what="--from") if start is not None else None
    bus: Any = None
    source: LogSource
    if file is not None:
        from swarm_tui.engine.history.filelog import read_log_file

        source = read_log_file(Path(file))
        bounds: Bounds = asyncio.run(source.bounds())
        where = f"file {Path(file).name}"
    else:
        from swarm_tui.engine.bus.client import Bus
        from swarm_tui.engine.history.buslog import BusLog

        bounds = asyncio.run(_bus_bounds(cfg))
        bus = Bus(cfg)
        source = BusLog(bus)
        where = "the bus's log" + (" (demo)" if demo else "")
    if bounds.empty:
        raise SwarmError(f"nothing to replay: {'the file holds no events' if file else 'the event log is empty'}")
    if point is not None and point.kind == "seq" and not bounds.first_seq <= point.seq <= bounds.last_seq:
        raise UsageError(f"--from {point.seq}: the log holds events {bounds.first_seq}..{bounds.last_seq}")
    os.environ.setdefault("TEXTUAL_FPS", "240")
    from swarm_tui.engine.history.checkpoint import CheckpointStore
    from swarm_tui.tui.link import ReplayLink
    from swarm_tui.tui.replay_app import ReplayApp

    # a file's checkpoints are kept in memory (a step back refolds at most their spacing); the bus log's are its
    # files in the data dir, set when the link has connected (ReplayLink.start)
    timeline = Timeline(
        source, max_scale=cfg.swarm.max_scale, checkpoints=CheckpointStore(max_scale=cfg.swarm.max_scale)
    )
    timeline.speed = pace
    link = ReplayLink(cfg, timeline, start_at=point, where=where, bus=bus)
    app = ReplayApp(link, handle_signals=True)
    try:
        code = app.run()
    finally:
        if bus is not None and bus.lease is not None:
            bus.lease.stop()
    if app.return_code not in (None, 0):
        return int(app.return_code or 1)
    return int(code or 0)

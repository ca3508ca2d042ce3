"""Long-running modes: the headless engine, a standalone worker, the full-screen app."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from .engine.bus import Bus
from .engine.config import Config

log = logging.getLogger(__name__)


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)


async def _headless(cfg: Config, demo: bool) -> int:
    from .engine.assemble import assemble

    stop = asyncio.Event()
    _install_stop_signals(stop)
    bus = Bus(cfg)
    await bus.connect()
    engine = assemble(cfg, bus, demo=demo)
    try:
        await engine.start()
        print(f"swarm-tui engine running (bus: {bus.kind}{', DEMO' if demo else ''}); stop with Ctrl-C",
              flush=True)
        await stop.wait()
    finally:
        await engine.stop()
    return 0


def run_headless(cfg: Config, *, demo: bool = False) -> int:
    return asyncio.run(_headless(cfg, demo))


def run_worker(cfg: Config, *, concurrency: int | None = None, demo: bool = False) -> int:
    from .engine.errors import SwarmError

    raise SwarmError("the standalone worker is not built yet")


def run_app(cfg: Config, *, demo: bool = False, attach: str | None = None, refresh_ms: Any = None) -> int:
    from . import cmds

    code = cmds.run(cmds.status(cfg, False))
    print("\n(the full-screen app is not built yet: use the commands above; see swarm-tui --help)")
    return code

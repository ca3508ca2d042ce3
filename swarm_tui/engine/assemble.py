"""Builds an engine with its components. The one place that knows which parts make up a running swarm."""

from __future__ import annotations

import time
from collections.abc import Callable

from .bus import Bus
from .config import Config
from .engine import Engine


def assemble(cfg: Config, bus: Bus, *, demo: bool = False, clock: Callable[[], float] = time.time,
             pool: bool = True, conductor: bool = True) -> Engine:
    engine = Engine(cfg, bus, clock=clock, demo=demo)
    # Components are added here in start order (they stop in reverse order).
    return engine

"""Fixtures of the TUI tests: an engine with no conductor or pool, and a second connection that watches."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine


@pytest.fixture
async def engine(cfg: Config) -> AsyncIterator[Engine]:
    bus = Bus(cfg)
    await bus.connect()
    eng = Engine(cfg, bus)  # no conductor or pool: the test publishes what they would
    yield eng
    await eng.stop()


@pytest.fixture
async def observer(cfg: Config) -> AsyncIterator[Bus]:
    b = Bus(cfg)
    await b.connect(setup=False)
    yield b
    await b.close()

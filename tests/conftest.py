"""Shared fixtures: a real nats-server from the wheel on a free loopback port with a temporary store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.config.load import Config
from tests.support.env import make_config

# the suite never sends traces to a developer's collector (an engine started in a test reads os.environ)
for _k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    os.environ.pop(_k, None)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(tmp_path / "nats-store", memory_mb=64, disk_mb=1024).run()
    yield srv
    srv.stop()


@pytest.fixture
def cfg(tmp_path: Path, nats_server: EmbeddedServer) -> Config:
    return make_config(tmp_path, nats_server.url)


@pytest.fixture
async def bus(cfg: Config) -> AsyncIterator[Bus]:
    b = Bus(cfg)
    await b.connect()
    yield b
    await b.close()

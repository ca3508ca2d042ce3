"""A replay imports no HTTP client: nats-py without aiohttp (``engine/bus/lean_import.py``), the Spend panel's
offline figures without the price fetcher's (~0.2-0.3 s of opening a replay each). Checked in a fresh
interpreter, as the module only acts before nats-py is imported."""

from __future__ import annotations

import subprocess
import sys

from tests.support.env import ROOT

PROBE = """
import sys
from swarm_tui.engine.bus.lean_import import nats_without_websockets
did = nats_without_websockets({url!r})
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.tui.replay_app import ReplayApp
from swarm_tui.engine.guards.spend_status import offline_spend_summary  # the replay's Spend panel
import nats.aio.transport as t
print(did, "aiohttp" in sys.modules, t.aiohttp is None)
import aiohttp  # still importable for whatever wants it later
print(aiohttp.__name__)
"""


def _probe(url: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(url=url)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-500:]
    return out.stdout.split("\n")


def test_a_nats_url_reads_the_log_without_importing_aiohttp() -> None:
    for url in ("", "nats://127.0.0.1:4222", "tls://a:1,nats://b:2"):
        assert _probe(url)[:2] == ["True False True", "aiohttp"], url


def test_a_websocket_server_keeps_the_websocket_transport() -> None:
    for url in ("ws://127.0.0.1:8080", "nats://a:1, WSS://b:443"):
        assert _probe(url)[0] == "False True False", url

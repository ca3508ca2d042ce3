"""nats-py without its websocket transport, for a command that only reads the log over nats:// (``replay``).

nats-py's transport module imports aiohttp for ``ws://`` servers whether or not one is used: ~0.2-0.3 s of the
replay's opening (its figure is 2 s on a 100,000-event log). Imported here with aiohttp hidden, the transport
module keeps ``aiohttp = None`` (its own fallback: only a websocket connection needs it and says so); aiohttp
itself stays importable for whatever else wants it later. A ``ws://`` or ``wss://`` server in the URL, or nats-py
or aiohttp already imported: nothing is changed.
"""

from __future__ import annotations

import sys


def nats_without_websockets(url: str) -> bool:
    """Import nats-py's transport without aiohttp when ``url`` (comma-separated servers) has no websocket one.
    True when it did."""
    if "nats.aio.transport" in sys.modules or "aiohttp" in sys.modules:
        return False
    if any(part.strip().lower().startswith(("ws://", "wss://")) for part in url.split(",")):
        return False
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # an import of it raises ImportError meanwhile
    try:
        import nats.aio.transport  # noqa: F401
    finally:
        del sys.modules["aiohttp"]
    return True

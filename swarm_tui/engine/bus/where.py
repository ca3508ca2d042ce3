"""Which bus to connect to, what kind it is, and why: never a server nobody configured.

``nats.url`` when set. Else the embedded server of the data dir: another swarm-tui process's (found through
``<data>/nats.json``), or one started now. A server that merely answers on ``127.0.0.1:4222`` is used only when
the user opted in (``nats.probe_default``): it may be another local user's, who would read every task and could
feed the engine forged events that spend on this user's key. ``doctor`` shows ``why``.

The embedded server (also when ``nats.url`` names it, as ``--attach`` or the CLI's look at the other store may)
comes with a ``Pin``: its token, and the check that the server reached is it (``pin.py``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from swarm_tui.engine.bus.embedded import EmbeddedLease, Leaf, port_open, read_identity
from swarm_tui.engine.bus.pin import Pin
from swarm_tui.engine.bus.reasons import safe_url
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import BusError
from swarm_tui.engine.paths import data_dir
from swarm_tui.engine.states import BusKind

# Where nats.probe_default looks for a server already running (one place, so a test can move it)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4222


@dataclass
class Where:
    url: str
    kind: BusKind  # "embedded" (we run it), "embedded-shared" (another process runs it), "remote"
    why: str
    lease: EmbeddedLease | None = None  # the embedded server this process started (ours to stop)
    pin: Pin | None = None  # an embedded server: its token and the check that we reached it


async def resolve(cfg: Config, *, leaf: bool) -> Where:
    n = cfg.nats
    store = data_dir(cfg.paths.data_dir)
    if n.url:
        mine = read_identity(store)
        if mine is not None and mine.url == n.url.strip():
            why = f"nats.url is the embedded server of {store}"
            return Where(mine.url, "embedded-shared", why, pin=Pin(mine, store))
        return Where(n.url, "remote", f"nats.url is {safe_url(n.url)}")
    lease = EmbeddedLease(store)
    own = f"nats.url is empty: the embedded server of {lease.data_dir}"
    shared = f"{own}, run by another swarm-tui process"
    found = lease.discover_identity()
    if found:
        return Where(found.url, "embedded-shared", shared, pin=Pin(found, store))
    if n.probe_default and not leaf and port_open(DEFAULT_HOST, DEFAULT_PORT, 0.2):
        why = f"nats.probe_default: a server answers on {DEFAULT_HOST}:{DEFAULT_PORT}"
        return Where(f"nats://{DEFAULT_HOST}:{DEFAULT_PORT}", "remote", why)
    deadline = time.monotonic() + 10
    while not lease.try_lock():  # another process is starting the embedded server right now
        await asyncio.sleep(0.05)
        found = lease.discover_identity()
        if found:
            return Where(found.url, "embedded-shared", shared, pin=Pin(found, store))
        if time.monotonic() > deadline:
            raise BusError(
                f"the embedded NATS server of {lease.data_dir} is locked by another process that does not answer"
            )
    link = Leaf(n.leaf_url, n.leaf_creds, n.leaf_tls_ca, n.leaf_domain) if leaf else None
    try:
        ident = await lease.start(n.embedded_memory_mb, n.embedded_disk_mb, leaf=link)
    except BaseException:  # re-raised: any way out (a cancel too) frees the lock first
        lease.stop()  # the server if it started, and the lock
        raise
    why = own + (f", a leaf of {safe_url(n.leaf_url)}" if leaf else "")
    return Where(ident.url, "embedded", why, lease, Pin(ident, store))

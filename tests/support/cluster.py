"""Real nats-server processes from the wheel, as a JetStream cluster or a hub with leaf nodes, on loopback.

The configs follow NATS's documentation:
- a JetStream cluster needs ``server_name``, a ``cluster`` block with a ``name``, a ``listen`` address and the
  ``routes`` to the others (https://docs.nats.io/running-a-nats-service/configuration/clustering/jetstream_clustering);
- a hub accepts leaf nodes with ``leafnodes { listen }``
  (https://docs.nats.io/running-a-nats-service/configuration/leafnodes/leafnode_conf).
Every port is chosen free on 127.0.0.1 up front, so a node restarted after a kill comes back on the same
addresses; its store directory is kept, so it rejoins with its data as a real restart would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

from swarm_tui.engine.bus.embedded import EmbeddedServer


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """``n`` JetStream servers routed to each other; ``url`` lists every client port."""

    def __init__(self, root: Path, n: int = 3, name: str = "swarm") -> None:
        self.root = Path(root)
        self.name = name
        self.client_ports = free_ports(n)
        self.route_ports = free_ports(n)
        self.nodes: list[EmbeddedServer] = []
        for i in range(n):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i)
            extra = (
                f"server_name: n{i + 1}\n"
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{self.route_ports[i]}\n  routes: [{routes}]\n}}\n"
            )
            self.nodes.append(
                EmbeddedServer(self.root / f"n{i + 1}", port=self.client_ports[i], memory_mb=64, extra_conf=extra)
            )

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client_ports)

    def node(self, name: str) -> EmbeddedServer:
        return self.nodes[int(name.lstrip("n")) - 1]

    def start(self) -> Cluster:
        for s in self.nodes:
            s.start()
        for s in self.nodes:
            s.wait_ready(20)
        return self

    async def jetstream_ready(self, timeout: float = 30.0) -> float:
        """Seconds until the cluster's JetStream answers (a meta leader is elected): ``$JS.API.INFO`` without
        an error, as https://docs.nats.io/reference/reference-protocols/nats_api_reference describes it."""
        import json

        import nats

        t0 = time.monotonic()
        nc = await nats.connect(self.url.split(","), connect_timeout=2)
        try:
            while True:
                with contextlib.suppress(Exception):
                    msg = await nc.request("$JS.API.INFO", b"", timeout=1)
                    if "error" not in json.loads(msg.data):
                        return time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError("the cluster's JetStream did not become ready")
                await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def restart(self, name: str) -> None:
        """SIGTERM (if it runs) and start again on the same ports and store."""
        s = self.node(name)
        s.stop()
        s.start()
        s.wait_ready(20)

    def stop(self) -> None:
        for s in self.nodes:
            with contextlib.suppress(Exception):
                s.stop()


class Hub:
    """One JetStream server (domain "hub") that accepts leaf nodes on ``leaf_port``: a leaf without JetStream
    reaches the hub's streams through the domain's API, ``$JS.hub.API``
    (https://docs.nats.io/running-a-nats-service/configuration/leafnodes/jetstream_leafnodes)."""

    def __init__(self, root: Path) -> None:
        self.leaf_port, port = free_ports(2)
        self.server = EmbeddedServer(
            Path(root) / "hub",
            port=port,
            # no_advertise: a leaf must not learn the hub's own address and go around the test's relay
            extra_conf=(
                f"server_name: hub\nleafnodes {{\n  listen: 127.0.0.1:{self.leaf_port}\n  no_advertise: true\n}}\n"
            ),
            domain="hub",  # leaf nodes reach its JetStream as $JS.hub.API (nats.leaf_domain)
        )

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Hub:
        self.server.run()
        return self

    def stop(self) -> None:
        self.server.stop()


class Cuttable:
    """A loopback TCP relay between a leaf and its hub that a test can cut (every connection reset) and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> Cuttable:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.open:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        self._pipes |= {w, uw}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(r, uw), pump(ur, w))
        self._pipes -= {w, uw}

    def cut(self) -> None:
        self.open = False
        for w in list(self._pipes):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._pipes.clear()

    def restore(self) -> None:
        self.open = True

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

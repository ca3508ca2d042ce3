"""Proof that a connection reached this data dir's embedded server, and what the Bus does when it did not.

The embedded server's loopback port is in ``/proc/net/tcp`` for every local user to read, and once the server
is gone (a crash, the OOM killer) anyone may listen there. So a client of the embedded server, before it says
anything (its CONNECT carries the token; after it come its subscriptions and every publish buffered while it
was away), checks that the server it reached is the one ``nats.json`` names:

- the INFO the server sent first carries this start's random ``server_name``
  (https://docs.nats.io/reference/reference-protocols/nats-protocol#info);
- where Linux tells (``/proc/net/tcp``'s ``uid`` column), the socket at the server's end of this very
  connection belongs to this user. INFO is sent before any login, so a stranger who connected once could copy
  the name; the socket's owner is the kernel's word.

nats-py calls a callable token while it builds CONNECT, after reading INFO and before writing anything
(``Client._connect_command``), at the first connect and after every reconnect: the check runs there. A refusal
raises ``nats.errors.Error``, which nats-py's connect and reconnect loops catch with nothing sent; the Bus then
drops what was buffered and closes ("lost", with the reason). The owner of a server that died starts it again
on the same port first (``revive``); when that port is taken, the bus is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from swarm_tui.engine.bus.embedded import EmbeddedLease, Identity, read_identity
from swarm_tui.engine.bus.nats_compat import close_transport, drop_pending, server_info, socket_writer
from swarm_tui.engine.errors import BusError, Refusal
from swarm_tui.engine.states import BusState

log = logging.getLogger(__name__)

_CLOSING: set[asyncio.Task[None]] = set()  # lost buses being closed (a task must be referenced to run)


class PinRefusal(NatsError):
    """The server on the embedded server's port is not it: nats-py's loops catch this type and send nothing
    (the bus raises ``errors.NotThisServer`` when its first connect ends so)."""


class PinnedBus(Protocol):
    """What ``lose`` and ``revive`` need of the bus."""

    state: BusState
    warnings: list[str]
    lease: EmbeddedLease | None

    @property
    def pin(self) -> Pin | None: ...

    @property
    def nc(self) -> NATS | None: ...

    async def set_state(self, state: BusState) -> None: ...


class Pin:
    """The embedded server a connection must reach, and nats-py's token callback that checks it."""

    def __init__(self, ident: Identity, data_dir: Path) -> None:
        self.ident = ident
        self.data_dir = Path(data_dir)
        self.nc: NATS | None = None
        self.refused: Refusal | None = None  # once refused, always: that server is not coming back on this port

    def token(self) -> str:
        why = self.refused or self.check()
        if why is not None:
            self.refused = why
            self.drop()
            raise PinRefusal(why)
        return self.ident.token

    def check(self) -> Refusal | None:
        """Why the server this connection reached is not ours (None when it is)."""
        info = server_info(self.nc)
        name = info.get("server_name")
        there = f"the server on {self.ident.hostport}"
        if name != self.ident.name:
            fresh = read_identity(self.data_dir)  # restarted by its owner: the same port, a new name and token
            if fresh is None or fresh.url != self.ident.url or fresh.name != name:
                return Refusal(
                    f"{there} is not the embedded NATS server of {self.data_dir} (not the name in nats.json)"
                )
            self.ident = fresh
        uid = accepting_uid(self.nc)
        if uid is not None and uid != os.getuid():
            who = f"uid {uid}" if uid >= 0 else "no socket this user can see"
            return Refusal(f"{there} is not the embedded NATS server of {self.data_dir}: it belongs to {who}")
        return None

    def drop(self) -> None:
        """What was buffered for our server goes nowhere else: forget it and hang up the socket."""
        nc = self.nc
        if nc is None:
            return
        drop_pending(nc)
        close_transport(nc)


def accepting_uid(nc: NATS | None) -> int | None:
    """The owner of the socket at the server's end of this connection (Linux's ``/proc/net/tcp``): -1 when no
    such socket is listed, None where it cannot be known (no /proc, an address that is not IPv4)."""
    writer = socket_writer(nc)
    if writer is None:
        return None
    ours, theirs = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
    try:
        want = (_proc_addr(theirs), _proc_addr(ours))
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except (OSError, TypeError, ValueError):
        return None
    for row in rows:
        f = row.split()
        if len(f) > 7 and (f[1], f[2]) == want:
            return int(f[7])
    return -1


def _proc_addr(addr: Any) -> str:
    """``("127.0.0.1", 4222)`` as /proc/net/tcp writes it: the address's 4 bytes as a host-order number."""
    host, port = addr[0], int(addr[1])
    return f"{struct.unpack('=I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def lose(bus: PinnedBus, why: str) -> None:
    """The bus is gone for good: say why (log, ``warnings``, state "lost"), send nothing more, close. Closing
    runs in a task of its own: the caller may be nats-py's reconnect task, which closing cancels."""
    if bus.state == "lost":
        return
    log.warning("NATS bus lost: %s", why)
    bus.warnings.append(why)
    bus.state = "lost"  # before the close: its "closed" callback must not hide why
    task = asyncio.create_task(_close_lost(bus), name="bus-close-lost")
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _close_lost(bus: PinnedBus) -> None:
    await bus.set_state("lost")
    pin = bus.pin
    if pin is not None:
        pin.drop()
    nc = pin.nc if pin is not None else bus.nc
    if nc is not None and not nc.is_closed:
        with contextlib.suppress(Exception):  # a connection already failing: closed is all we want of it
            await nc.close()
    if bus.lease is not None:  # our server is dead: free the data dir for the next swarm-tui process
        bus.lease.stop()
        bus.lease = None


async def revive(bus: PinnedBus) -> None:
    """Called when the connection drops: when the server this process runs exited on its own (a crash, the OOM
    killer), start it again on its port, where nats-py reconnects; when it cannot, the bus is lost."""
    lease, pin = bus.lease, bus.pin
    code = lease.server_exited() if lease is not None else None
    if lease is None or pin is None or code is None or bus.state == "lost":
        return
    where = pin.ident.hostport
    try:
        pin.ident = await lease.restart()
    except (BusError, OSError) as exc:
        lose(bus, f"the embedded NATS server on {where} exited (code {code}) and could not start again there: {exc}")
        return
    log.warning("the embedded NATS server of %s exited (code %s): started again on %s", lease.data_dir, code, where)

"""The connection to NATS: which server (``where``), the login, the exposure warning, the first connect and its
failures, the state the header and ``status`` show, and the one close. ``Bus`` (``client.py``) adds JetStream.

Everything here is plain asyncio and nats-py; nothing imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlparse

from nats.aio.client import Client as NATS
from nats.errors import NoServersError
from nats.js import JetStreamContext

from swarm_tui.engine.bus.embedded import EmbeddedLease
from swarm_tui.engine.bus.login import auth_options
from swarm_tui.engine.bus.pin import Pin, PinRefusal, lose, revive
from swarm_tui.engine.bus.reasons import is_auth, safe_url
from swarm_tui.engine.bus.reasons import reason as _reason
from swarm_tui.engine.bus.where import resolve
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import BusError, NotThisServer, Refused, Unreachable
from swarm_tui.engine.lifecycle import cancel_and_wait, within
from swarm_tui.engine.states import BusKind, BusState

log = logging.getLogger(__name__)

StateCallback = Callable[[BusState], Awaitable[None] | None]


class Connection:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.lease: EmbeddedLease | None = None
        self.pin: Pin | None = None  # the embedded server: its token, and the check that we reached it
        self.url = ""
        self.kind: BusKind | Literal[""] = ""  # "" until connect resolved which server
        self.why = ""  # why this bus (where.py): "nats.url is ...", "nats.probe_default: ...", the embedded one
        self.state: BusState = "disconnected"
        self.warnings: list[str] = []
        self.denied: list[str] = []  # permissions violations the server reported (contrib/nats/hub.conf)
        self._state_cbs: list[StateCallback] = []
        # the laptop as a leaf node: our embedded server links to a hub, whose JetStream (and engine) we use
        self.leaf = bool(cfg.nats.leaf_url) and not cfg.nats.url

    def on_state(self, cb: StateCallback) -> None:
        self._state_cbs.append(cb)

    async def set_state(self, state: BusState) -> None:
        self.state = state
        for cb in list(self._state_cbs):
            try:
                res = cb(state)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # logged: one subscriber's bug must not keep the others from the news
                log.exception("bus state callback failed")

    async def _resolve(self) -> str:
        w = await resolve(self.cfg, leaf=self.leaf)
        self.kind, self.why, self.lease, self.pin = w.kind, w.why, w.lease, w.pin
        return w.url

    def _check_exposure(self, url: str, authed: bool) -> None:
        hosts = [urlparse(u.strip()).hostname or "" for u in url.split(",")]
        for h in hosts:
            if h in ("localhost", ""):
                continue
            try:
                if ipaddress.ip_address(h).is_loopback:
                    continue
            except ValueError:
                pass
            if not authed:
                msg = (
                    f"the bus at {h} is reachable beyond loopback and no NATS authentication is configured: "
                    "anyone who can reach it can read tasks and control the swarm (see docs/security.md)"
                )
                self.warnings.append(msg)
                log.warning(msg)
            return

    async def open(self, connect_timeout: float) -> None:
        """Resolve the server, connect (stopping at the first refused login), and say "connected"."""
        opts = auth_options(self.cfg)
        try:
            url = await self._resolve()
        except OSError as exc:
            raise BusError(f"cannot start the embedded NATS server: {exc}") from None
        self.url = url
        if self.pin is not None:  # its token alone, asked for once the server proved to be it
            opts = {"token": self.pin.token}
        opts |= {"reconnect_time_wait": 0.25, "connect_timeout": connect_timeout}  # seconds (typed int, are float)
        self._check_exposure(url, bool({"token", "user", "user_credentials", "nkeys_seed"} & opts.keys()))

        async def disconnected() -> None:
            if self.state not in ("closed", "lost"):
                await self.set_state("reconnecting")
            await revive(self)  # our embedded server died: start it again before nats-py reconnects

        async def reconnected() -> None:
            await self.set_state("connected")

        # a refused login (or a server that is not ours) before the first connect completes
        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def error_cb(exc: Exception) -> None:
            if isinstance(exc, PinRefusal):  # nothing was sent to it
                if self.nc is None and not refused.done():
                    refused.set_result(exc)
                elif self.nc is not None:
                    lose(self, str(exc))
                return
            text = str(exc).lower()
            if "permissions violation" in text:  # the server dropped what this login may not do
                self._note_denied(str(exc))
                return
            if ("authorization" in text or "authentication" in text) and not refused.done():
                refused.set_result(exc)
            log.debug("nats: %s", type(exc).__name__)

        async def closed() -> None:
            if self.state != "lost":
                await self.set_state("closed")

        if not await _any_reachable(url, connect_timeout):
            await self.close()
            raise connect_error(url, "nothing answers there")
        nc = NATS()
        if self.pin is not None:
            self.pin.nc = nc
        connecting = asyncio.create_task(
            nc.connect(
                servers=[u.strip() for u in url.split(",")],
                name="swarm-tui",
                max_reconnect_attempts=-1,
                # a PING every 20 s, stale at the third unanswered one: a silent dead link is noticed 40-60 s after
                # it died (a closed one at once, by the read error); the server idles more than with 10 s / 3
                ping_interval=20,
                max_outstanding_pings=2,
                allow_reconnect=True,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error_cb,
                closed_cb=closed,
                **opts,
            ),
            name="nats-connect",
        )
        try:
            # nats-py retries a refused login forever when reconnects are unlimited: stop at the first refusal
            waiters: set[asyncio.Future[Any]] = {connecting, refused}
            await asyncio.wait(waiters, timeout=connect_timeout * 3, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                await cancel_and_wait([connecting])
                raise connect_error(url, refused.result() if refused.done() else "timed out")
            connecting.result()
            self.nc = nc
        except BusError:
            await self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - nats-py raises a refused login as a plain Exception
            await self.close()
            raise connect_error(url, exc) from None
        self.js = self.nc.jetstream(timeout=5)
        await self.set_state("connected")

    def _note_denied(self, text: str) -> None:
        """Each distinct refusal logged once (a worker's login runs into them only where its rights end)."""
        line = text.removeprefix("nats: ")[:200]
        if line not in self.denied and len(self.denied) < 50:
            self.denied.append(line)
            log.warning("NATS refused this login: %s", line)

    async def _await_hub(self, timeout: float) -> None:
        """A leaf's JetStream is the hub's: ready once ``$JS.API.INFO`` (mapped to the hub's domain) is answered."""
        end = time.monotonic() + timeout
        while True:
            try:
                assert self.nc is not None
                await self.nc.request("$JS.API.INFO", b"", timeout=0.5)
                return
            except Exception as exc:  # noqa: BLE001 - no responders until the leaf link is up
                if time.monotonic() > end:
                    await self.close()
                    hub = safe_url(self.cfg.nats.leaf_url)
                    raise Unreachable(
                        f"the hub {hub} does not answer over the leaf link ({_reason(exc)}): check nats.leaf_url "
                        f"and nats.leaf_creds, and that the hub runs JetStream with the domain "
                        f"{self.cfg.nats.leaf_domain!r} (nats.leaf_domain; docs/deploy.md)"
                    ) from None
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        """The one shutdown path of the bus: drain the connection, then stop the embedded server if ours."""
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await within(nc.drain(), 3)
            except Exception:  # noqa: BLE001 - a drain that fails or hangs: close at once, shutdown must end
                with contextlib.suppress(Exception):  # closing a connection the drain left broken: nothing to do
                    await nc.close()
        self.state = "closed"
        if self.lease is not None:
            self.lease.stop()
            self.lease = None


def connect_error(url: str, cause: BaseException | str) -> BusError:
    """A failed connect as the error a caller can tell apart, from nats-py's exception (or the pin's refusal, or
    what was seen: "timed out", "nothing answers there"); the line is ``cannot connect to NATS at <url>: <why>``."""
    at = f"cannot connect to NATS at {safe_url(url)}"
    if isinstance(cause, str):
        return Unreachable(f"{at}: {cause}")
    if isinstance(cause, PinRefusal):
        return NotThisServer(f"{at}: {cause}")
    why = _reason(cause)
    if is_auth(cause):
        return Refused(f"{at}: {why}")
    if isinstance(cause, TimeoutError | NoServersError | OSError):
        return Unreachable(f"{at}: {why}")
    return BusError(f"{at}: {why}")


async def _any_reachable(url: str, timeout: float) -> bool:
    """A quick TCP check: nats-py with unlimited reconnects would otherwise retry an absent server forever."""
    for u in url.split(","):
        p = urlparse(u.strip())
        default = 443 if p.scheme == "wss" else 80 if p.scheme == "ws" else 4222
        try:
            _r, w = await within(asyncio.open_connection(p.hostname or "127.0.0.1", p.port or default), timeout)
        except (TimeoutError, OSError):
            continue
        w.close()
        with contextlib.suppress(OSError):  # the probe's socket reset while closing: it answered, that is all
            await w.wait_closed()
        return True
    return False

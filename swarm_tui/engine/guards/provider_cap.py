"""The provider-side cap: a second stop on OpenRouter's side, through a management key.

With ``openrouter.management_key`` the engine gives its workers a runtime key of its own, made through
OpenRouter's management API ("API Keys" reference: https://openrouter.ai/docs/api/api-reference/api-keys,
"Management API Keys": https://openrouter.ai/docs/guides/overview/auth/management-api-keys): its ``limit`` is the
daily ceiling in USD and its ``limit_reset`` is ``daily``, so OpenRouter itself refuses the key's calls past the
ceiling (402, "Limits": https://openrouter.ai/docs/api_reference/limits) if this engine dies, is misconfigured or is
tricked into spending. The engine's own ceiling stays the first stop; this is the second.

- The runtime key is named ``swarm-tui <host>``. Its secret is returned once, at creation (``POST /keys``), so it is
  kept where secrets live: ``provider_key.json`` in the data dir (0600), with its ``hash`` (the id the management
  API knows it by). At start the stored key is reused when ``GET /key`` with it answers 200 and its name is ours;
  else (lost, disabled, another account) a new one is made, and the old one, when its hash is known, is disabled
  (``PATCH /keys/{hash}`` ``{"disabled": true}``).
- Its ``limit`` follows the ceiling: at start, on a ceiling control event (``swarm-tui budget USD``) and every
  ``openrouter.key_poll_s`` (``PATCH /keys/{hash}`` ``{"limit", "limit_reset": "daily"}``).
- A management API failure is a state (``info()``: ``failed`` and why), never an exception: the workers keep
  ``openrouter.api_key`` (none: cloud work waits) under the engine's own ceiling, and the cap is tried again.

Neither key is ever logged, published or shown: ``info()`` holds the key's name and limit only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from swarm_tui.engine.bus.wire import ControlEvent, Event
from swarm_tui.engine.config.sections import OpenRouterSection, PathsSection
from swarm_tui.engine.guards.openrouter_get import MAX_BODY, printable, strict_json
from swarm_tui.engine.info import ProviderCapInfo
from swarm_tui.engine.lifecycle import cancel_and_wait, within
from swarm_tui.engine.paths import data_dir, ensure_private_dir, open_private
from swarm_tui.engine.states import CapState

log = logging.getLogger(__name__)

KEY_FILE = "provider_key.json"
SETUP_S = 15.0  # the most the engine's start waits for the cap (then it goes on, and the cap is tried again)


class CapError(Exception):
    """One line fit to show (never holds a key)."""


def cap_line(state: CapState, limit: float | None, reason: str, *, capped: bool = False) -> str:
    """What status and the Spend panel print; ``capped``: a runtime key is in use (a failed update left it at its
    last limit)."""
    match state:
        case "off":
            return ""
        case "pending":
            return "provider cap: being set"
        case "on":
            return f"provider cap ${limit:.2f}/day" if limit is not None else "provider cap: none (no ceiling)"
        case "failed" if capped:
            at = f"${limit:.2f}/day" if limit is not None else "with no limit"
            return f"provider cap {at}, not updated ({reason}): the engine's own ceiling still holds"
        case "failed":
            return f"provider cap not set ({reason}): the engine's own ceiling still holds"


class ProviderCap:
    """The engine component (``name`` "provider_cap") that owns the runtime key and keeps its limit in step."""

    name = "provider_cap"

    def __init__(
        self,
        openrouter: OpenRouterSection,
        paths: PathsSection,
        *,
        ceiling: Callable[[], float],
        host: str,
        on_key: Callable[[], None] = lambda: None,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.openrouter = openrouter
        self.ceiling = ceiling
        self.key_name = f"swarm-tui {host}"[:100]
        self.on_key = on_key  # the runtime key or its limit changed: the credit watch looks at it at once
        self.path = path if path is not None else data_dir(paths.data_dir) / KEY_FILE
        self.clock = clock
        self.state: CapState = "pending" if openrouter.management_key else "off"
        self.reason = ""
        self.limit: float | None = None
        self._key = ""  # the runtime key's secret
        self._hash = ""
        self._stale = True  # the key's limit or reset as OpenRouter has them are not known to be ours
        self._http: aiohttp.ClientSession | None = None
        self._moved = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.requests = 0  # management API requests sent (tests, the bench)

    # ------------------------------------------------------------------ what the workers use
    def worker_key(self) -> str:
        """The key the workers call with: the runtime key once there is one (still capped at its last limit when a
        later update failed), else ``openrouter.api_key``."""
        return self._key or self.openrouter.api_key

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.state == "off":
            return
        try:
            await within(self.sync(), SETUP_S)
        except TimeoutError:  # the engine starts anyway: the loop below tries again
            self._fail(f"the management API did not answer within {SETUP_S:.0f} s")
        self._tasks.append(asyncio.create_task(self._follow(), name="provider-cap"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, ControlEvent) and ev.what == "ceiling":
            self._moved.set()  # the spend guard (an earlier listener) already took the new ceiling

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await within(self._moved.wait(), self.openrouter.key_poll_s)
            self._moved.clear()
            await self.sync()

    def info(self) -> ProviderCapInfo:
        return {
            "state": self.state,
            "limit_usd": self.limit,
            "key_name": self.key_name if self.state != "off" else "",
            "reason": self.reason,
            "line": cap_line(self.state, self.limit, self.reason, capped=bool(self._key)),
        }

    # ------------------------------------------------------------------ the flow
    def wanted(self) -> float | None:
        """The limit the runtime key should have: the daily ceiling (None, no limit, when there is none)."""
        c = self.ceiling()
        return round(c, 2) if math.isfinite(c) and c >= 0 else None

    async def sync(self) -> None:
        """Make sure a runtime key of ours exists with the ceiling as its daily limit; a failure is a state."""
        had, limit = self.worker_key(), self.limit
        try:
            if self._key and (await self._get_key(self._key))[0] in (401, 403):  # disabled or deleted by hand
                log.warning("provider cap: the runtime key %r was refused: a new one is made", self.key_name)
                self._key = ""
            if not self._key:
                await self._load_or_create()
            want = self.wanted()
            if self._stale or self.limit != want:
                data = await self._send("PATCH", f"/keys/{self._hash}", {"limit": want, "limit_reset": "daily"})
                self.limit, self._stale = _limit_of(data.get("data")), False
                if self.limit != want:
                    raise CapError(f"the key's limit reads {self.limit} after setting it to {want}")
                log.info("provider cap: key %r limited to %s USD a day", self.key_name, want)
            if self.state != "on":
                log.info("provider cap on: the workers use the runtime key %r", self.key_name)
            self.state, self.reason = "on", ""
        except CapError as exc:
            self._fail(str(exc))
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._fail(f"management API unreachable ({type(exc).__name__})")
        except OSError as exc:
            self._fail(f"the runtime key not stored ({type(exc).__name__}): check the data dir")
        except ValueError as exc:  # a header aiohttp refuses to send: its words may hold the key, never shown
            self._fail(f"request not sent ({type(exc).__name__}): check OPENROUTER_MANAGEMENT_KEY")
        if self.worker_key() != had or self.limit != limit:
            self.on_key()

    def _fail(self, reason: str) -> None:
        if self.state != "failed" or reason != self.reason:
            log.warning("provider cap not set (%s): work goes on under the engine's own ceiling", reason)
        self.state, self.reason = "failed", reason[:200]

    async def _load_or_create(self) -> None:
        stored = self._read_file()
        if stored is not None:
            key, hash_ = stored
            status, now = await self._get_key(key)
            if status == 200:
                data = now.get("data") if isinstance(now, dict) else None
                self._key, self._hash = key, hash_
                self.limit = _limit_of(data)
                self._stale = not isinstance(data, dict) or data.get("limit_reset") != "daily"
                return
            log.info("provider cap: the stored runtime key is not usable (HTTP %s): a new one is made", status)
            with contextlib.suppress(CapError, TimeoutError, aiohttp.ClientError, OSError):  # best effort
                await self._send("PATCH", f"/keys/{hash_}", {"disabled": True})
        body = {"name": self.key_name, "limit": self.wanted(), "limit_reset": "daily"}
        made = await self._send("POST", "/keys", body)
        new, data = made.get("key"), made.get("data")
        new_hash = data.get("hash") if isinstance(data, dict) else None
        if not isinstance(new, str) or not new or not isinstance(new_hash, str) or not new_hash:
            raise CapError("the created key's answer has no key or hash")
        self._write_file(new, new_hash)
        self._key, self._hash = new, new_hash
        self.limit = _limit_of(data)
        self._stale = not isinstance(data, dict) or data.get("limit_reset") != "daily"
        log.info("provider cap: runtime key %r created", self.key_name)

    # ------------------------------------------------------------------ the stored key (0600, the data dir)
    def _read_file(self) -> tuple[str, str] | None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("name") != self.key_name or doc.get("api_base") != self._base():
            return None
        key, hash_ = doc.get("key"), doc.get("hash")
        return (key, hash_) if isinstance(key, str) and key and isinstance(hash_, str) and hash_ else None

    def _write_file(self, key: str, hash_: str) -> None:
        ensure_private_dir(self.path.parent)
        doc = {"name": self.key_name, "hash": hash_, "key": key, "api_base": self._base()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(open_private(tmp), "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)

    # ------------------------------------------------------------------ HTTP
    def _base(self) -> str:
        return self.openrouter.api_base.rstrip("/")

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def _get_key(self, key: str) -> tuple[int, Any]:
        """GET /key with the runtime key: 200 while it works (401: deleted or disabled)."""
        return await self._request("GET", "/key", None, key)

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A management request; its JSON answer, or ``CapError`` naming the status."""
        status, data = await self._request(method, path, body, self.openrouter.management_key)
        if status == 401 or status == 403:
            raise CapError(f"management key rejected (HTTP {status}): check OPENROUTER_MANAGEMENT_KEY")
        if status not in (200, 201) or not isinstance(data, dict):
            raise CapError(f"{method} /keys answered HTTP {status}")
        return data

    async def _request(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> tuple[int, Any]:
        if any(c in key for c in "\r\n\0"):
            raise CapError("a key holds a line break or NUL: check OPENROUTER_MANAGEMENT_KEY")
        self.requests += 1
        headers = {"Authorization": f"Bearer {key}"}
        async with self._session().request(
            method, self._base() + path, json=body, headers=headers, allow_redirects=False
        ) as resp:
            if 300 <= resp.status < 400:
                raise CapError(f"HTTP {resp.status}: a redirect (not followed)")
            raw = await resp.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise CapError(f"an answer over {MAX_BODY} bytes")
            if resp.status not in (200, 201):
                return resp.status, None
            try:
                return resp.status, strict_json(raw)
            except (ValueError, RecursionError) as exc:
                raise CapError(f"an unreadable answer ({printable(str(exc), 80)})") from None


def _limit_of(data: Any) -> float | None:
    """A key object's ``limit`` (null: none)."""
    if not isinstance(data, dict):
        raise CapError("the key's answer has no data")
    v = data.get("limit")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CapError("the key's limit is not a number")
    return round(float(v), 2)

"""The provider-side cap: a second stop on OpenRouter's side, through a management key.

With ``openrouter.management_key`` the engine gives its workers a runtime key of its own, made through
OpenRouter's management API ("API Keys" reference: https://openrouter.ai/docs/api/api-reference/api-keys,
"Management API Keys": https://openrouter.ai/docs/guides/overview/auth/management-api-keys): its ``limit`` is the
daily ceiling in USD and its ``limit_reset`` is ``daily``, so OpenRouter itself refuses the key's calls past the
ceiling (402, "Limits": https://openrouter.ai/docs/api_reference/limits) if this engine dies, is misconfigured or is
tricked into spending. The engine's own ceiling stays the first stop; this is the second.

- The runtime key is named ``swarm-tui <host>``. Its secret is returned once, at creation (``POST /keys``), so it is
  kept where secrets live: ``provider_key.json`` in the data dir (0600), with its ``hash`` (the id the management
  API knows it by). A stored key is used only when ``GET /key`` with it answers 200 AND the key list (``GET /keys``)
  holds its hash under our name with the same label: a file naming another key of the account is never adopted.
  Else (lost, disabled, tampered, another account) a new one is made, and every enabled key of the list named ours
  that is not the one in use is disabled (``PATCH /keys/{hash}`` ``{"disabled": true}``): a key made by a create
  whose answer was lost (a timeout, no ``key`` in it, the file not stored) is found by name and never left live.
  Two engines sharing one host name would disable each other's keys: one engine per host and account.
- A NEW key's limit is what is left of today's ceiling (UTC day, OpenRouter's reset): the ceiling less the larger of
  the engine's spend today (``spent_today``, the ledger) and the ``usage_daily`` of our name's other keys (what
  today already went through a lost or revoked key). That carry is kept with the key (in its file) for the day, so
  a lost file or a revoked key never gives a second full day's limit.
- Its ``limit`` follows the ceiling: at start, on a ceiling control event (``swarm-tui budget USD``) and every
  ``openrouter.key_poll_s`` (``PATCH /keys/{hash}`` ``{"limit", "limit_reset": "daily"}``); the answer must read
  back that limit and ``daily`` (a lifetime limit is not called a daily cap). The limit is rounded DOWN to the cent
  (never looser than the ceiling): a ceiling under a cent is a $0.00 limit, and OpenRouter refuses every call.
- A 401 on the runtime key (``key_refused``) syncs at once: the job in hand waits for the new key.
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


def cap_line(state: CapState, limit: float | None, reason: str, *, capped: bool = False, daily: bool = True) -> str:
    """What status and the Spend panel print; ``capped``: a runtime key is in use (a failed update left it at its
    last limit); ``daily``: its limit is known to reset daily."""
    match state:
        case "off":
            return ""
        case "pending":
            return "provider cap: being set"
        case "on" if limit == 0:  # a ceiling under a cent, or today's all spent: OpenRouter refuses every call
            return "provider cap $0.00/day: nothing left today, the provider refuses every call"
        case "on":
            return f"provider cap ${limit:.2f}/day" if limit is not None else "provider cap: none (no ceiling)"
        case "failed" if capped:
            at = "with no limit" if limit is None else f"${limit:.2f}" + ("/day" if daily else " (not daily)")
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
        on_key: Callable[[], object] = lambda: None,
        spent_today: Callable[[], float] = lambda: 0.0,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.openrouter = openrouter
        self.ceiling = ceiling
        self.key_name = f"swarm-tui {host}"[:100]
        self.on_key = on_key  # the runtime key or its limit changed: the credit watch looks at it at once
        self.spent_today = spent_today  # the engine's spend today (UTC), the ledger's
        self.carry = 0.0  # today's spend the runtime key did not see (through an earlier key), on ``carry_day``
        self.carry_day = ""
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

    def key_refused(self) -> None:
        """A worker's call was refused 401: the runtime key is disabled or deleted; sync now, not at the next poll."""
        self._moved.set()

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
            "line": cap_line(self.state, self.limit, self.reason, capped=bool(self._key), daily=not self._stale),
        }

    # ------------------------------------------------------------------ the flow
    def wanted(self) -> float | None:
        """The limit the runtime key should have: the daily ceiling less today's carry (None, no limit, when there
        is no ceiling), rounded down to the cent."""
        c = self.ceiling()
        if not (math.isfinite(c) and c >= 0):
            return None
        if self.carry_day != _utc_day(self.clock()):
            self.carry, self.carry_day = 0.0, _utc_day(self.clock())
        return cents_down(max(0.0, c - self.carry))

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
                if data["data"].get("limit_reset") != "daily":
                    self._stale = True
                    raise CapError(f"the key's limit resets {data['data'].get('limit_reset')!r}, not daily")
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
        """Use the stored key when it is ours, else make one; every other live key of our name is disabled."""
        ours = [k for k in await self._list() if k.get("name") == self.key_name and isinstance(k.get("hash"), str)]
        stored = self._read_file()
        if stored is not None:
            key, hash_, carry = stored
            listed = next((k for k in ours if k["hash"] == hash_ and not k.get("disabled")), None)
            status, now = await self._get_key(key) if listed is not None else (0, None)
            data = now.get("data") if isinstance(now, dict) else None
            if (
                status == 200
                and isinstance(data, dict)
                and listed is not None
                and data.get("label") == listed.get("label")
            ):
                self._key, self._hash = key, hash_
                self.carry, self.carry_day = carry
                self.limit = _limit_of(data)
                self._stale = data.get("limit_reset") != "daily"
                await self._disable_others(ours)
                return
            log.info("provider cap: the stored runtime key is not ours or not usable: a new one is made")
        self._key = self._hash = ""
        await self._disable_others(ours)
        spent = sum(_usage_daily(k) for k in ours)  # what went through our earlier keys today
        self.carry, self.carry_day = max(self.spent_today(), spent), _utc_day(self.clock())
        body = {"name": self.key_name, "limit": self.wanted(), "limit_reset": "daily"}
        made = await self._send("POST", "/keys", body)
        new, data = made.get("key"), made.get("data")
        new_hash = data.get("hash") if isinstance(data, dict) else None
        try:
            if not isinstance(new, str) or not new or not isinstance(new_hash, str) or not new_hash:
                raise CapError("the created key's answer has no key or hash")
            self._write_file(new, new_hash)
        except (CapError, OSError):  # a key made and not usable: never left live at the provider
            if isinstance(new_hash, str) and new_hash:
                with contextlib.suppress(CapError, TimeoutError, aiohttp.ClientError, OSError, ValueError):
                    await self._send("PATCH", f"/keys/{new_hash}", {"disabled": True})
            raise
        self._key, self._hash = new, new_hash
        self.limit = _limit_of(data)
        self._stale = not isinstance(data, dict) or data.get("limit_reset") != "daily"
        log.info("provider cap: runtime key %r created", self.key_name)

    async def _list(self) -> list[dict[str, Any]]:
        """Every key of the account (``GET /keys``, disabled ones too, a page of up to 100 at a time)."""
        out: list[dict[str, Any]] = []
        for _ in range(50):
            page = (await self._send("GET", f"/keys?include_disabled=true&offset={len(out)}", None)).get("data")
            if not isinstance(page, list):
                raise CapError("the key list has no data")
            out += [k for k in page if isinstance(k, dict)]
            if len(page) < 100:
                break
        return out

    async def _disable_others(self, ours: list[dict[str, Any]]) -> None:
        """Disable every live key of our name but the one in use (a create whose answer was lost made it)."""
        for k in ours:
            if k["hash"] != self._hash and not k.get("disabled"):
                log.info("provider cap: an earlier runtime key %r not in use is disabled", self.key_name)
                await self._send("PATCH", f"/keys/{k['hash']}", {"disabled": True})

    # ------------------------------------------------------------------ the stored key (0600, the data dir)
    def _read_file(self) -> tuple[str, str, tuple[float, str]] | None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("name") != self.key_name or doc.get("api_base") != self._base():
            return None
        key, hash_, carry, day = doc.get("key"), doc.get("hash"), doc.get("carry", 0.0), doc.get("carry_day", "")
        if not isinstance(carry, int | float) or isinstance(carry, bool) or not math.isfinite(carry) or carry < 0:
            return None
        if not (isinstance(key, str) and key and isinstance(hash_, str) and hash_ and isinstance(day, str)):
            return None
        return key, hash_, (float(carry), day)

    def _write_file(self, key: str, hash_: str) -> None:
        ensure_private_dir(self.path.parent)
        doc: dict[str, Any] = {"name": self.key_name, "hash": hash_, "key": key, "api_base": self._base()}
        doc |= {"carry": self.carry, "carry_day": self.carry_day}
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

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
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


def cents_down(usd: float) -> float:
    """``usd`` rounded down to the cent (the 1e-6 absorbs binary noise: 0.29 * 100 is 28.999999999999996)."""
    return math.floor(usd * 100 + 1e-6) / 100


def _usage_daily(k: dict[str, Any]) -> float:
    v = k.get("usage_daily")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 else 0.0


def _utc_day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))

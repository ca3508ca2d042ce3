"""A stand-in of OpenRouter's management API beside the fake OpenRouter: keys made, limited and disabled.

It follows OpenRouter's API reference, "API Keys" (https://openrouter.ai/docs/api/api-reference/api-keys:
"Create an API key" ``POST /api/v1/keys``, "Update an API key" ``PATCH /api/v1/keys/{hash}``, "List API keys"
``GET /api/v1/keys``) and "Get current API key" (``GET /api/v1/key``), with the guide "Management API Keys"
(https://openrouter.ai/docs/guides/overview/auth/management-api-keys):

- every ``/keys`` request needs the management key as ``Authorization: Bearer``; another answers 401;
- a management key cannot call the completion endpoints ("Management keys cannot be used to make API calls to
  OpenRouter's completion endpoints"): 401 here;
- ``POST /keys`` answers 201 with ``{"data": <key object>, "key": "sk-or-v1-..."}``: the secret once, never again;
  the key object has every field the official SDK's models require (PyPI ``openrouter`` 1.3.84,
  ``operations.createkeys.CreateKeysData`` and ``updatekeys.UpdateKeysData``: both answers validated against them
  while this stand-in was written); ``limit_reset`` is ``daily``, ``weekly``, ``monthly`` or null, and
  ``limit_remaining`` is the limit less the usage of the current period (``usage_daily`` for ``daily``);
- ``PATCH /keys/{hash}`` changes only the fields sent (``name``, ``disabled``, ``limit``, ``limit_reset``) and
  answers 200 ``{"data": <key object>}``; an unknown hash is 404;
- ``GET /key`` with a runtime key answers its ``label``, ``limit``, ``limit_remaining``, ``limit_reset`` and the
  usages (a subset of the SDK's ``GetCurrentKeyData``: the fields the engine reads, by those names); a
  disabled key is refused with 401 ("Errors and Debugging": "disabled/invalid API key");
- a call with a runtime key whose period's usage has reached its limit is refused with 402 before it reaches a provider
  ("Limits", https://openrouter.ai/docs/api_reference/limits, "Handling 402 errors": "Check per-key limits. If
  limit_remaining ..."); what a call is billed (the fake's ``total_cost``) is added to its key's usage.

The daily reset (midnight UTC) is not modelled: a test sets ``usage`` itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.provider_cap import ProviderCap
from tests.support.env import make_config
from tests.support.fake_openrouter import FakeOpenRouter

MANAGEMENT_KEY = "sk-or-v1-mgmt-test-secret-0123456789abcdef"
RESETS = ("daily", "weekly", "monthly", None)
USAGES = ("usage", "usage_daily", "usage_weekly", "usage_monthly")
_calling: contextvars.ContextVar[str] = contextvars.ContextVar("calling", default="")  # the runtime key's hash


class FakeOpenRouterKeys(FakeOpenRouter):
    def __init__(self, management_key: str = MANAGEMENT_KEY) -> None:
        super().__init__()
        self.management_key = management_key
        self.runtime: dict[str, dict[str, Any]] = {}  # hash -> key object (and "secret")
        self.log: list[tuple[str, str, dict[str, Any] | None, int]] = []  # method, path, body, status
        self.broken: int | None = None  # every /keys request answers this status (a management API outage)
        self.calls_by_key: dict[str, int] = {}  # hash -> calls made with the key
        self.key_limit_refusals = 0  # calls refused with 402: the key's limit was reached

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/chat/completions", self._chat_keyed)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/key", self._key_keyed)
        app.router.add_get("/api/v1/generation", self._generation)
        app.router.add_post("/api/v1/keys", self._create)
        app.router.add_get("/api/v1/keys", self._list)
        app.router.add_patch("/api/v1/keys/{hash}", self._update)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _bearer(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def by_secret(self, secret: str) -> dict[str, Any] | None:
        return next((k for k in self.runtime.values() if k["secret"] == secret), None)

    def by_name(self, name: str) -> list[dict[str, Any]]:
        return [k for k in self.runtime.values() if k["name"] == name]

    @staticmethod
    def spent(k: dict[str, Any]) -> float:
        """The usage of the key's current period (all of it with no reset)."""
        return float(k[f"usage_{k['limit_reset']}"] if k["limit_reset"] else k["usage"])

    def public(self, k: dict[str, Any]) -> dict[str, Any]:
        out = {n: v for n, v in k.items() if n != "secret"}
        out["limit_remaining"] = None if k["limit"] is None else round(max(0.0, k["limit"] - self.spent(k)), 9)
        return out

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"code": status, "message": message}}, status=status)

    async def _managed(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        body: dict[str, Any] | None = None
        if request.can_read_body:
            try:
                raw = await request.json()
            except ValueError:
                return None, self._error(400, "bad JSON")
            body = raw if isinstance(raw, dict) else None
        path = request.path.removeprefix("/api/v1")
        if self.broken is not None:
            self.log.append((request.method, path, body, self.broken))
            return body, self._error(self.broken, "Internal Server Error")
        if self._bearer(request) != self.management_key:
            self.log.append((request.method, path, body, 401))
            return body, self._error(401, "Invalid credentials: a management key is required")
        return body, None

    # ------------------------------------------------------------------ the management API
    async def _create(self, request: web.Request) -> web.Response:
        body, refused = await self._managed(request)
        if refused is not None:
            return refused
        if body is None or not isinstance(body.get("name"), str) or body.get("limit_reset") not in RESETS:
            self.log.append(("POST", "/keys", body, 400))
            return self._error(400, "name is required; limit_reset is daily, weekly, monthly or null")
        h = secrets.token_hex(32)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        k = {
            "hash": h,
            "name": body["name"],
            "label": f"sk-or-v1-{h[:3]}...{h[-3:]}",
            "disabled": False,
            "limit": body.get("limit"),
            "limit_reset": body.get("limit_reset"),
            "include_byok_in_limit": bool(body.get("include_byok_in_limit", False)),
            **dict.fromkeys(USAGES, 0.0),
            **dict.fromkeys(("byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly"), 0.0),
            "creator_user_id": None,
            "external_user": None,
            "last_used_at": None,
            "workspace_id": "ws-test",
            "created_at": now,
            "updated_at": None,
            "secret": "sk-or-v1-" + secrets.token_hex(32),
        }
        self.runtime[h] = k
        self.log.append(("POST", "/keys", body, 201))
        return web.json_response({"data": self.public(k), "key": k["secret"]}, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        _, refused = await self._managed(request)
        if refused is not None:
            return refused
        self.log.append(("GET", "/keys", None, 200))
        return web.json_response({"data": [self.public(k) for k in self.runtime.values()]})

    async def _update(self, request: web.Request) -> web.Response:
        body, refused = await self._managed(request)
        if refused is not None:
            return refused
        path = request.path.removeprefix("/api/v1")
        k = self.runtime.get(request.match_info["hash"])
        if k is None:
            self.log.append(("PATCH", path, body, 404))
            return self._error(404, "API key not found")
        if body is None or body.get("limit_reset", "daily") not in RESETS:
            self.log.append(("PATCH", path, body, 400))
            return self._error(400, "bad request")
        for f in ("name", "disabled", "limit", "limit_reset", "include_byok_in_limit"):
            if f in body:
                k[f] = body[f]
        k["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.log.append(("PATCH", path, body, 200))
        return web.json_response({"data": self.public(k)})

    # ------------------------------------------------------------------ the runtime keys at work
    async def _key_keyed(self, request: web.Request) -> web.Response:
        secret = self._bearer(request)
        k = self.by_secret(secret)
        if k is None:
            if secret == self.management_key:
                return self._error(401, "Invalid credentials")
            return await self._key(request)  # the plain fake's key (openrouter.api_key)
        self.key_asks += 1
        self.log.append(("GET", "/key", None, 401 if k["disabled"] else 200))
        if k["disabled"]:
            return self._error(401, "Invalid credentials (disabled/invalid API key)")
        p = self.public(k)
        data = {n: p[n] for n in ("label", "limit", "limit_remaining", "limit_reset", *USAGES)}
        return web.json_response({"data": data | {"is_free_tier": False, "include_byok_in_limit": False}})

    async def _chat_keyed(self, request: web.Request) -> web.StreamResponse:
        secret = self._bearer(request)
        if secret == self.management_key:
            return self._error(401, "Invalid credentials: a management key cannot call completions")
        k = self.by_secret(secret)
        if k is not None:
            self.calls_by_key[k["hash"]] = self.calls_by_key.get(k["hash"], 0) + 1
            if k["disabled"]:
                return self._error(401, "Invalid credentials (disabled/invalid API key)")
            if k["limit"] is not None and self.spent(k) >= k["limit"]:
                self.key_limit_refusals += 1
                return self._error(402, "Key limit exceeded: this key's limit_remaining is 0")
            _calling.set(k["hash"])
        return await self._chat(request)

    def _record(
        self, rec: dict[str, Any], cost: float, *, prompt: int, completion: int, cancelled: bool, done: bool
    ) -> None:
        super()._record(rec, cost, prompt=prompt, completion=completion, cancelled=cancelled, done=done)
        k = self.runtime.get(_calling.get())
        if k is not None:
            for u in USAGES:
                k[u] = round(k[u] + cost, 9)


def cap_config(tmp_path: Path, fo: FakeOpenRouterKeys, **extra: str) -> Config:
    """A config for the provider cap against ``fo``: its base, the management key (``extra`` overrides)."""
    env = {"OPENROUTER_API_BASE": fo.base, "OPENROUTER_MANAGEMENT_KEY": MANAGEMENT_KEY} | extra
    return make_config(tmp_path, **env)


def new_cap(cfg: Config, ceiling: list[float], host: str = "h1") -> ProviderCap:
    """A provider cap whose ceiling is ``ceiling[0]`` (a test changes it in place)."""
    return ProviderCap(cfg.openrouter, cfg.paths, ceiling=lambda: ceiling[0], host=host)


@contextlib.asynccontextmanager
async def capped_engine(tmp_path: Path, nats_url: str) -> AsyncIterator[tuple[FakeOpenRouterKeys, Bus, Engine]]:
    """An engine (no conductor) with the provider cap against a stand-in that bills $0.0002 an answer, under a
    $0.05 ceiling: the stand-in, the engine's bus and the engine, stopped on the way out."""
    from swarm_tui.engine.assemble import assemble
    from tests.support.fake_openrouter import Answer

    async with FakeOpenRouterKeys() as fo:
        fo.default = Answer(tokens=30, cost=0.0002)
        cfg = cap_config(tmp_path, fo, SWARM_NATS_URL=nats_url).replace(budget__daily_usd=0.05)
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus, conductor=False)
        await engine.start()
        try:
            yield fo, bus, engine
        finally:
            await engine.stop()
            await bus.close()

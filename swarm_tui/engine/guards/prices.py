"""Model prices: OpenRouter's model list, cached on disk with its age, or a conservative fallback.

Prices are USD per token, every part of them (engine/guards/price_parts.py: per request, reasoning, cache,
web search, conditional overrides, and the context length). ``openrouter/<vendor>/<model>`` names are looked
up without the ``openrouter/`` prefix, an ``:online`` variant under its model's id; local models
(``ollama_chat/`` and ``ollama/``: ``engine/models.py``) cost nothing (demo mode prices with
engine/guards/demo_prices.py instead). With no list (offline, an error, a model the list does not know), the configured
fallback prices are used and ``price_source()`` says so. A model the list knows with a part that cannot be
read is refused under a ceiling (``refusal``), and ``info()`` names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from swarm_tui.engine.config.options import OPTION_BY_KEY
from swarm_tui.engine.config.sections import OpenRouterSection, PathsSection
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.price_parts import ModelPrice, parse_models
from swarm_tui.engine.info import PriceInfo
from swarm_tui.engine.models import is_local
from swarm_tui.engine.paths import data_dir, ensure_private_dir, open_private

if TYPE_CHECKING:
    import aiohttp  # imported by ``refresh``: the offline spend figures (a replay's panel) need no HTTP client

    from swarm_tui.engine.config.load import Config

log = logging.getLogger(__name__)

CACHE_NAME = "prices.json"
CACHE_VERSION = 2  # every price part per model (version 1 held (prompt, completion) only: not read)
ONLINE = ":online"


def price_book(cfg: Config, *, clock: Callable[[], float] = time.time) -> PriceBook:
    """The price list for an engine or a worker. With no key and every role local (a fully local swarm, issue 28)
    nothing is priced from OpenRouter and nothing is asked of it: no ``GET /models`` at all."""
    local_only = not cfg.openrouter.api_key and all(is_local(r.model) for r in cfg.roles.values())
    return PriceBook(cfg.openrouter, cfg.paths, clock=clock, fetch=False if local_only else None)


def list_id(model: str) -> str:
    """The id under which OpenRouter's model list knows a job's model."""
    return model[len("openrouter/") :] if model.startswith("openrouter/") else model


def fmt_age(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 90:
        return f"{int(s)}s"
    if s < 90 * 60:
        return f"{round(s / 60)}m"
    if s < 36 * 3600:
        return f"{round(s / 3600)}h"
    return f"{round(s / 86400)}d"


def searches(model: str) -> bool:
    """Whether a call of ``model`` can search the web (and be billed for it): an ``:online`` variant, OpenRouter's
    shortcut for its web plugin ("Web Search" doc)."""
    return model.endswith(ONLINE) or f"{ONLINE}:" in model


class PriceBook:
    """OpenRouter's price list (fetched, cached on disk, the configured fallback for what it does not list)."""

    demo = False  # its spend is real money
    searches_web = True  # an ``:online`` model is billed for its web search

    def __init__(
        self,
        openrouter: OpenRouterSection,
        paths: PathsSection,
        *,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
        fetch: bool | None = None,
    ) -> None:
        self.openrouter = openrouter
        self.clock = clock
        self.path = path if path is not None else data_dir(paths.data_dir) / CACHE_NAME
        self.base = openrouter.api_base.rstrip("/")
        self.max_age_s = openrouter.price_cache_hours * 3600.0
        # Fetch only when there is something to price: a key, or an endpoint other than the default (tests).
        default_base = OPTION_BY_KEY["openrouter.api_base"].default.rstrip("/")
        if fetch is None:
            fetch = bool(openrouter.api_key) or self.base != default_base
        self.fetch_enabled = fetch
        self.fallback = (
            openrouter.fallback_prompt_usd_per_mtok / 1e6,
            openrouter.fallback_completion_usd_per_mtok / 1e6,
        )
        self.prices: dict[str, ModelPrice] = {}
        self.fetched_at: float | None = None
        self.origin = ""  # "" (none), "cache", "openrouter"
        self.last_error = ""
        self.fallback_used: set[str] = set()
        self.unpriced: dict[str, str] = {}  # models refused under a ceiling (asked for since the last fetch): why

    # ------------------------------------------------------------------ lookup
    def _listed(self, model: str) -> ModelPrice | None:
        mid = list_id(model)
        got = self.prices.get(mid)
        if got is None and searches(mid):  # ":online" is the web plugin on the model: the model's own prices
            got = self.prices.get(mid.replace(ONLINE, "", 1))
        return got

    def model_price(self, model: str) -> ModelPrice:
        """Every price part of ``model``: the list's, else the configured fallback (prompt and completion)."""
        if is_local(model):
            return ModelPrice(0.0, 0.0)
        got = self._listed(model)
        if got is None:
            self.fallback_used.add(model)
            return ModelPrice(*self.fallback)
        return got

    def price(self, model: str) -> tuple[float, float]:
        """(prompt, completion) USD per token under default conditions (the fallback for one that cannot be
        read: a call is never priced at 0 for want of a price)."""
        mp = self.model_price(model)
        if any(k in ("prompt", "completion") for k, _ in mp.problems):
            return self.fallback
        return mp.prompt, mp.completion

    def refusal(self, model: str) -> Refusal | None:
        """Why no call of ``model`` can be bounded under a ceiling (None when it can): a price part that applies
        to it is listed but cannot be read."""
        why = self.model_price(model).problem(searches(model))
        if why is None:
            return None
        reason = Refusal(f"cannot bound the cost of {model}: OpenRouter's model list has {why}"[:300])
        if len(self.unpriced) < 20 or model in self.unpriced:
            self.unpriced[model] = reason
        return reason

    def free(self, model: str) -> bool:
        return is_local(model)  # local inference costs no money

    def known(self, model: str) -> bool:
        return is_local(model) or self._listed(model) is not None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        p, c = self.price(model)
        return prompt_tokens * p + completion_tokens * c

    def age_s(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, self.clock() - self.fetched_at)

    def stale(self) -> bool:
        age = self.age_s()
        return age is None or age > self.max_age_s

    def price_source(self) -> str:
        age = self.age_s()
        if not self.prices or age is None:
            return "fallback (no price list)"
        stale = ", stale" if self.stale() else ""
        name = "openrouter list" if self.origin == "openrouter" else "cache"
        return f"{name} (age {fmt_age(age)}{stale})"

    # ------------------------------------------------------------------ loading
    async def load(self) -> None:
        """Read the disk cache, then fetch a fresh list when it is missing or stale (errors are not fatal)."""
        await self.load_cache()
        if self.fetch_enabled and self.stale():
            await self.refresh()

    async def load_cache(self) -> bool:
        try:
            raw = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
            doc = json.loads(raw)
            if doc.get("v") != CACHE_VERSION:
                log.info("price cache %s is of an older version; fetching the list anew", self.path)
                return False
            prices = {str(k): ModelPrice.from_json(v) for k, v in doc["models"].items()}
            fetched = float(doc["fetched_at"])
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
            log.warning("price cache %s is unreadable (%s); ignoring it", self.path, type(exc).__name__)
            return False
        if prices:
            self.prices, self.fetched_at, self.origin = prices, fetched, "cache"
        return bool(prices)

    async def refresh(self, session: aiohttp.ClientSession | None = None) -> bool:
        """GET {api_base}/models; on success replace the prices and write the cache."""
        import aiohttp

        url = f"{self.base}/models"
        own = session is None
        sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            async with sess.get(url) as resp:
                if resp.status != 200:
                    self.last_error = f"HTTP {resp.status}"
                    return False
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.last_error = type(exc).__name__
            log.info("price list not fetched from %s: %s", url, self.last_error)
            return False
        finally:
            if own:
                await sess.close()
        prices = parse_models(body)
        if not prices:
            self.last_error = "empty or unreadable price list"
            return False
        self.prices, self.fetched_at, self.origin, self.last_error = prices, self.clock(), "openrouter", ""
        self.fallback_used.clear()
        self.unpriced.clear()
        await asyncio.to_thread(self._write_cache)
        return True

    def _write_cache(self) -> None:
        try:
            ensure_private_dir(self.path.parent)
            tmp = self.path.with_suffix(".tmp")
            doc = {
                "v": CACHE_VERSION,
                "fetched_at": self.fetched_at,
                "source": self.base,
                "models": {k: v.to_json() for k, v in self.prices.items()},
            }
            with os.fdopen(open_private(tmp), "w", encoding="utf-8") as f:
                f.write(json.dumps(doc))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write the price cache %s: %s", self.path, exc.strerror)
            with contextlib.suppress(OSError):
                self.path.with_suffix(".tmp").unlink()

    def info(self) -> PriceInfo:
        age = self.age_s()
        return {
            "price_source": self.price_source(),
            "price_age_s": None if age is None else round(age),
            "price_models": len(self.prices),
            "price_error": self.last_error,
            "fallback_models": sorted(self.fallback_used)[:20],
            "unpriced_models": dict(sorted(self.unpriced.items())),
        }

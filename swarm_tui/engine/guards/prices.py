"""Model prices: OpenRouter's model list, cached on disk with its age, or a conservative fallback.

Prices are USD per token. ``openrouter/<vendor>/<model>`` names are looked up without the ``openrouter/``
prefix; local models (``ollama_chat/`` and ``ollama/``: ``engine/models.py``) cost nothing. In demo mode every
model costs ``demo.usd_per_mtok``. With no list (offline, an error, a model the list does not know), the
configured fallback prices are used and ``price_source()`` says so.
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

from swarm_tui.engine.config import OPTION_BY_KEY, Config
from swarm_tui.engine.info import PriceInfo
from swarm_tui.engine.models import is_local as is_local  # re-exported: the spend guard imports it from here
from swarm_tui.engine.paths import data_dir

log = logging.getLogger(__name__)

CACHE_NAME = "prices.json"


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


def _per_token(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f) or f < 0:  # "-1": a router whose price depends on the model it picks
        return None
    return f


def parse_models(body: Any) -> dict[str, tuple[float, float]]:
    """OpenRouter's ``{"data": [{"id", "pricing": {"prompt", "completion"}}]}`` to {id: (prompt, completion)}."""
    out: dict[str, tuple[float, float]] = {}
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return out
    for m in data:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            continue
        pr = m.get("pricing")
        if not isinstance(pr, dict):
            continue
        p, c = _per_token(pr.get("prompt")), _per_token(pr.get("completion"))
        if p is not None and c is not None:
            out[m["id"][:200]] = (p, c)
    return out


class PriceBook:
    def __init__(
        self,
        cfg: Config,
        *,
        demo: bool = False,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
        fetch: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.demo = demo
        self.clock = clock
        self.path = path if path is not None else data_dir(cfg.paths.data_dir) / CACHE_NAME
        self.base = cfg.openrouter.api_base.rstrip("/")
        self.max_age_s = cfg.openrouter.price_cache_hours * 3600.0
        # Fetch only when there is something to price: a key, or an endpoint other than the default (tests).
        default_base = OPTION_BY_KEY["openrouter.api_base"].default.rstrip("/")
        if fetch is None:
            fetch = not demo and (bool(cfg.openrouter.api_key) or self.base != default_base)
        self.fetch_enabled = fetch
        self.fallback = (
            cfg.openrouter.fallback_prompt_usd_per_mtok / 1e6,
            cfg.openrouter.fallback_completion_usd_per_mtok / 1e6,
        )
        self.prices: dict[str, tuple[float, float]] = {}
        self.fetched_at: float | None = None
        self.origin = ""  # "" (none), "cache", "openrouter"
        self.last_error = ""
        self.fallback_used: set[str] = set()

    # ------------------------------------------------------------------ lookup
    def price(self, model: str) -> tuple[float, float]:
        """(prompt, completion) USD per token."""
        if self.demo:  # the demo endpoint charges every model, local ones included, at the demo price
            p = self.cfg.demo.usd_per_mtok / 1e6
            return (p, p)
        if is_local(model):
            return (0.0, 0.0)
        got = self.prices.get(list_id(model))
        if got is None:
            self.fallback_used.add(model)
            return self.fallback
        return got

    def known(self, model: str) -> bool:
        return is_local(model) or self.demo or list_id(model) in self.prices

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        p, c = self.price(model)
        return prompt_tokens * p + completion_tokens * c

    def age_s(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, self.clock() - self.fetched_at)

    def stale(self) -> bool:
        age = self.age_s()
        return age is None or age > self.max_age_s

    def price_source(self) -> str:
        if self.demo:
            return f"demo price (${self.cfg.demo.usd_per_mtok:g}/Mtok)"
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
        if self.demo:
            return False
        try:
            raw = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
            doc = json.loads(raw)
            prices = {str(k): (float(v[0]), float(v[1])) for k, v in doc["prices"].items()}
            fetched = float(doc["fetched_at"])
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("price cache %s is unreadable (%s); ignoring it", self.path, type(exc).__name__)
            return False
        if prices:
            self.prices, self.fetched_at, self.origin = prices, fetched, "cache"
        return bool(prices)

    async def refresh(self, session: aiohttp.ClientSession | None = None) -> bool:
        """GET {api_base}/models; on success replace the prices and write the cache."""
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
        await asyncio.to_thread(self._write_cache)
        return True

    def _write_cache(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "fetched_at": self.fetched_at,
                        "source": self.base,
                        "prices": {k: list(v) for k, v in self.prices.items()},
                    }
                ),
                encoding="utf-8",
            )
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
        }

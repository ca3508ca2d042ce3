"""Reads what OpenRouter billed for a generation: ``GET /api/v1/generation?id=`` (engine/guards/reconcile.py
asks it for attempts that ended without a cost). The answer is read by engine/guards/openrouter_get.py: a
redirect or a number that is not finite is refused, never recorded."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from swarm_tui.engine.bus.numbers import nonnegative
from swarm_tui.engine.guards.openrouter_get import Refused, get_json

log = logging.getLogger(__name__)


class GenerationReader:
    def __init__(self, api_base: Callable[[], str], api_key: Callable[[], str], counts: Counter[str]) -> None:
        self.api_base = api_base
        self.api_key = api_key
        self.counts = counts  # the reconciler's: refused, unreachable, http_<status>
        self._http: aiohttp.ClientSession | None = None

    async def read(self, gen: str) -> dict[str, Any] | None:
        """GET {api_base}/generation?id=: the ``data`` object, or None (404 while its stats are not ready yet; a
        redirect or an answer with a number that is not finite: refused)."""
        if not gen:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        url = self.api_base().rstrip("/") + "/generation"
        headers = {"Authorization": f"Bearer {self.api_key()}"} if self.api_key() else {}
        try:
            status, body = await get_json(self._http, url, params={"id": gen}, headers=headers, secret=self.api_key())
        except Refused as exc:
            self.counts["refused"] += 1
            log.warning("generation %s: the answer was refused: %s", gen[:80], exc.reason)
            return None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.counts["unreachable"] += 1
            log.debug("generation %s not read: %s", gen[:80], type(exc).__name__)
            return None
        self.counts[f"http_{status}"] += 1
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def figure(v: Any) -> float:
    """A cost from a record or an answer: a finite non-negative number, else 0."""
    return nonnegative(v) or 0.0


def count(v: Any) -> int:
    """A token count from a record or an answer: a non-negative integer below 1e15, else 0."""
    n = nonnegative(v)
    return int(n) if n is not None and n < 1e15 else 0

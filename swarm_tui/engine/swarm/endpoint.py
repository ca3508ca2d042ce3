"""Where a pool's cloud calls go: OpenRouter, or the built-in demo endpoint that stands in for it.

The pool asks its endpoint, never whether it runs a demo: the key and base it sends, whether a missing key
keeps it from taking jobs, which models run on this machine (the local lane, RAM headroom, no cost), which model
name a job is called with, whether a call carries the job's seed, whether attempts are reconciled with
GET /generation, and the HTTP session its direct calls share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from swarm_tui.engine.models import is_local_chat

if TYPE_CHECKING:
    import aiohttp

    from swarm_tui.engine.config.sections import OpenRouterSection


class Endpoint(Protocol):
    @property
    def is_demo(self) -> bool:
        """The pool's ``info()["demo"]`` and the ``demo`` flag of what it publishes."""
        ...

    @property
    def api_key(self) -> str: ...

    @property
    def api_base(self) -> str: ...

    @property
    def blocks_without_key(self) -> bool:
        """Whether a cloud job waits while ``api_key`` is empty (a local job runs without one)."""
        ...

    @property
    def seeds_answers(self) -> bool:
        """Whether a call names its job and role (headers the demo seeds its synthetic answer with)."""
        ...

    @property
    def reconciles(self) -> bool:
        """Whether an OpenRouter call's cost is reconciled with GET /generation (the attempt records)."""
        ...

    def runs_locally(self, model: str) -> bool:
        """Whether a call to ``model`` runs on this machine: the local lane, RAM headroom, and no money."""
        ...

    def own_model(self, model: str) -> str | None:
        """The model name this endpoint is called with for ``model`` when it answers every model; None: the
        model's own prefix routes it (``openrouter/`` here, ``ollama_chat/`` to Ollama)."""
        ...

    def needs_litellm(self, model: str) -> bool:
        """Whether a call to ``model`` goes through litellm (else OpenRouter is called directly)."""
        ...

    def session(self) -> aiohttp.ClientSession:
        """The connection pool of the direct calls (keep-alive across jobs), made on first use."""
        ...

    async def close_session(self) -> None: ...


class HttpSession:
    """One aiohttp session, made on first use and remade after it was closed."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            from swarm_tui.engine.swarm.openrouter_http import new_session

            self._http = new_session()
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            try:
                await self._http.close()
            except Exception:  # noqa: BLE001 - closing connections the pool no longer uses: nothing to do
                pass
            self._http = None


class OpenRouterEndpoint:
    """OpenRouter as the ``openrouter`` section configures it; local models go to Ollama."""

    is_demo = False
    blocks_without_key = True
    seeds_answers = False
    reconciles = True

    def __init__(self, openrouter: OpenRouterSection, key: Callable[[], str] | None = None) -> None:
        self.openrouter = openrouter
        self.key = key  # the provider cap's runtime key when a management key is set (guards/provider_cap.py)
        self._http = HttpSession()

    @property
    def api_key(self) -> str:
        return self.key() if self.key is not None else self.openrouter.api_key

    @property
    def api_base(self) -> str:
        return self.openrouter.api_base

    def runs_locally(self, model: str) -> bool:
        return is_local_chat(model)

    def own_model(self, model: str) -> str | None:
        return None

    def needs_litellm(self, model: str) -> bool:
        return is_local_chat(model) or (model.startswith("openrouter/") and self.openrouter.via_litellm)

    def session(self) -> aiohttp.ClientSession:
        return self._http.get()

    async def close_session(self) -> None:
        await self._http.close()

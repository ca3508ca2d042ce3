"""What a role asks of OpenRouter beyond the model, turned into a request (``extras``), and the attribution
headers. The role's keys are checked when the config loads (``config.roles.role_options``).

OpenRouter's doc pages: "Reasoning Tokens" (the ``reasoning`` object), "Provider Routing" (the ``provider``
object; ``max_price`` is USD per million tokens), "Model Fallbacks" (the ``models`` list), "App Attribution"
(``HTTP-Referer``, ``X-Title``).
"""

from __future__ import annotations

from typing import Any

from swarm_tui.engine.config.roles import bare_id


def attribution(referer: str, title: str) -> dict[str, str]:
    """Headers that name the app ("App Attribution"); they replace litellm's, which credit LiteLLM.
    ``X-OpenRouter-Title`` is the header's newer name, ``X-Title`` the one kept for compatibility."""
    return {"HTTP-Referer": referer, "X-Title": title, "X-OpenRouter-Title": title}


def extras(role: Any, model: str, price_per_mtok: tuple[float, float] | None) -> dict[str, Any]:
    """The request body additions for one call of ``model`` (``openrouter/...``) in ``role`` (or None):
    ``reasoning``, ``provider`` with ``max_price`` no higher than ``price_per_mtok`` (prompt, completion USD
    per million tokens: the price the spend reservation assumed, so no provider bills above it), and
    ``models`` (the model, then the role's fallback models)."""
    body: dict[str, Any] = {}
    reasoning = getattr(role, "reasoning", None)
    if reasoning:
        body["reasoning"] = dict(reasoning)
    provider: dict[str, Any] = dict(getattr(role, "provider", None) or {})
    if price_per_mtok is not None:
        mp = dict(provider.get("max_price") or {})
        for key, usd in zip(("prompt", "completion"), price_per_mtok, strict=True):
            usd = round(max(0.0, usd), 6)  # round, not truncate: 0.1 must not become 0.0999..., below the price
            mp[key] = min(float(mp[key]), usd) if key in mp else usd
        provider["max_price"] = mp
    if provider:
        body["provider"] = provider
    fallbacks = getattr(role, "fallback_models", ()) or ()
    if fallbacks:
        first = bare_id(model)
        body["models"] = [first, *(m for m in fallbacks if m != first)]
    return body

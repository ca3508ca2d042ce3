"""What a ``[roles.<name>]`` table may ask of OpenRouter beyond the model, checked when the config loads:
reasoning, provider preferences and fallback models (``role_options``). ``swarm.routing`` turns a checked
role into a request.

OpenRouter's doc pages: "Reasoning Tokens" (the ``reasoning`` object), "Provider Routing" (the ``provider``
object; ``max_price`` is USD per million tokens), "Model Fallbacks" (the ``models`` list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.models import is_local_chat

EFFORTS = ("xhigh", "high", "medium", "low", "minimal", "none")
_LISTS = ("order", "only", "ignore", "quantizations")
_BOOLS = ("allow_fallbacks", "require_parameters", "zdr", "enforce_distillable_text")
PROVIDER_KEYS = (*_LISTS, *_BOOLS, "data_collection", "sort", "max_price")
PRICE_KEYS = ("prompt", "completion", "request", "image")


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


def role_options(name: str, d: dict[str, Any], where: str, model: str) -> dict[str, Any]:
    """The optional keys of ``[roles.<name>]`` checked, as Role fields; a bad one raises a one-line
    ConfigError naming it."""

    def bad(key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"bad value {value!r} for roles.{name}.{key} in {where}: expected {expected}")

    out: dict[str, Any] = {}
    ft = d.get("first_token_timeout_s")
    if ft is not None:
        if not _num(ft) or ft <= 0:
            raise bad("first_token_timeout_s", ft, "a number of seconds > 0")
        out["first_token_timeout_s"] = float(ft)
    cloud = model.startswith("openrouter/")
    reasoning = d.get("reasoning")
    if reasoning is not None:
        out["reasoning"] = _reasoning(reasoning, bad)
    provider = d.get("provider")
    if provider is not None:
        out["provider"] = _provider(provider, bad)
    fb = d.get("fallback_models")
    if fb is not None:
        expected = "a list of openrouter/<vendor>/<model> names (no :nitro)"
        if not isinstance(fb, list) or not all(isinstance(m, str) and m.strip() for m in fb):
            raise bad("fallback_models", fb, expected)
        for m in fb:
            bare = bare_id(m)
            if is_local_chat(m) or "/" not in bare or bare.endswith(":nitro"):
                raise bad("fallback_models", m, expected)
        out["fallback_models"] = tuple(bare_id(m) for m in fb)
    if not cloud:
        for key in ("reasoning", "provider", "fallback_models"):
            if key in out:
                raise ConfigError(
                    f"bad key roles.{name}.{key} in {where}: reasoning, provider and "
                    "fallback_models are for openrouter/ models only"
                )
    return out


def _reasoning(r: Any, bad: Callable[[str, Any, str], ConfigError]) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise bad("reasoning", r, "a table with effort, max_tokens, exclude or enabled")
    out: dict[str, Any] = {}
    for k, v in r.items():
        key = f"reasoning.{k}"
        if k == "effort":
            if v not in EFFORTS:
                raise bad(key, v, "one of " + ", ".join(EFFORTS))
        elif k == "max_tokens":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 200000:
                raise bad(key, v, "an integer 1..200000")
        elif k in ("exclude", "enabled"):
            if not isinstance(v, bool):
                raise bad(key, v, "true or false")
        else:
            raise bad(key, v, "one of the keys effort, max_tokens, exclude, enabled")
        out[k] = v
    if "effort" in out and "max_tokens" in out:
        raise bad("reasoning", r, "effort or max_tokens, not both")
    return out


def _provider(p: Any, bad: Callable[[str, Any, str], ConfigError]) -> dict[str, Any]:
    if not isinstance(p, dict):
        raise bad("provider", p, "a table of OpenRouter provider preferences")
    out: dict[str, Any] = {}
    for k, v in p.items():
        key = f"provider.{k}"
        if k in _LISTS:
            if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                raise bad(key, v, "a list of provider names")
        elif k in _BOOLS:
            if not isinstance(v, bool):
                raise bad(key, v, "true or false")
        elif k == "data_collection":
            if v not in ("allow", "deny"):
                raise bad(key, v, "allow or deny")
        elif k == "sort":
            if v not in ("price", "throughput", "latency"):
                raise bad(key, v, "price, throughput or latency")
        elif k == "max_price":
            if not isinstance(v, dict) or not all(pk in PRICE_KEYS and _num(pv) and pv >= 0 for pk, pv in v.items()):
                raise bad(key, v, "a table of prompt, completion, request, image: USD numbers >= 0")
            v = dict(v)
        else:
            raise bad(key, v, "one of the keys " + ", ".join(PROVIDER_KEYS))
        out[k] = list(v) if isinstance(v, list) else v
    return out


def bare_id(model: str) -> str:
    """OpenRouter's model id: ``openrouter/x/y`` -> ``x/y``."""
    return model.strip().removeprefix("openrouter/")

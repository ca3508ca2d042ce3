"""One model's prices, every part of them: what OpenRouter's model list says a call can be billed for.

``GET /api/v1/models`` gives each model a ``pricing`` object of USD strings and a ``context_length``. The field
names are those of OpenRouter's "Models" page ("Pricing Object": "All pricing values are in USD per
token/request/unit. A value of "0" indicates the feature is free") and of its official SDK's
``openrouter.components.PublicPricing`` (PyPI ``openrouter`` 1.3.84):

- ``prompt``, ``completion``: per token (required);
- ``request``: per request, on top of the tokens;
- ``internal_reasoning``: per reasoning token; reasoning is output that counts against ``max_tokens``, so the
  completion bound is priced at the higher of the two;
- ``input_cache_read``, ``input_cache_write``, ``input_cache_write_1h``: per cached prompt token (a cache
  write can cost more than a prompt token: the prompt is bounded at the highest of them);
- ``web_search``: per web search, when the call can search (an ``:online`` model);
- ``overrides``: conditional prices (a long prompt, a time of day) whose price keys replace the base ones when
  their condition holds: the bound takes the highest of every entry;
- ``image``, ``audio``, ``image_output`` ...: input or output our text-only calls do not have (not counted).

A part that applies but cannot be read (``"-1"``, a router priced by the model it picks; not a number;
negative) is a *problem*: such a model is refused under a ceiling with the reason, never priced at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from swarm_tui.engine.errors import Refusal

PROMPT_KEYS = ("prompt", "input_cache_read", "input_cache_write", "input_cache_write_1h")
ALWAYS = ("request", "internal_reasoning", *PROMPT_KEYS[1:])  # optional parts that apply to every call


def per_unit(v: Any) -> float | None:
    """A price string as a number, or None when it is not a usable price (negative: unknown)."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        return None
    if not math.isfinite(f) or f < 0:
        return None
    return f


@dataclass(frozen=True)
class ModelPrice:
    """USD per token (per request, per search) of one model; the ``*_max`` ones bound what a call is billed."""

    prompt: float
    completion: float
    prompt_max: float = -1.0  # the highest per-token prompt price any condition applies (-1: ``prompt``)
    completion_max: float = -1.0  # the same for completion and reasoning tokens
    request: float = 0.0
    web_search: float | None = None  # None: not listed
    context_length: int | None = None
    problems: tuple[tuple[str, str], ...] = ()  # (pricing key, the value as listed) that cannot be read
    search_problem: str = ""  # the same for ``web_search``, which applies to searching calls only

    @property
    def worst_prompt(self) -> float:
        return max(self.prompt, self.prompt_max)

    @property
    def worst_completion(self) -> float:
        return max(self.completion, self.completion_max)

    def problem(self, searches: bool) -> Refusal | None:
        """Why a call of this model cannot be bounded (None when it can)."""
        parts = [f"pricing.{k} = {v}" for k, v in self.problems]
        if searches and self.search_problem:
            parts.append(f"pricing.web_search = {self.search_problem}")
        return Refusal(", ".join(parts)) if parts else None

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "prompt_max": self.worst_prompt,
            "completion_max": self.worst_completion,
            "request": self.request,
            "web_search": self.web_search,
            "context_length": self.context_length,
            "problems": [list(p) for p in self.problems],
            "search_problem": self.search_problem,
        }

    @classmethod
    def from_json(cls, d: Any) -> ModelPrice:
        """From the price cache; raises ValueError, TypeError or KeyError on anything unexpected."""
        if not isinstance(d, dict):
            raise TypeError("not an object")
        nums = {k: float(d[k]) for k in ("prompt", "completion", "prompt_max", "completion_max", "request")}
        if not all(math.isfinite(v) and v >= 0 for v in nums.values()):
            raise ValueError("not a price")
        ws, ctx = d.get("web_search"), d.get("context_length")
        return cls(
            **nums,
            web_search=None if ws is None else float(ws),
            context_length=None if ctx is None else int(ctx),
            problems=tuple((str(k), str(v)) for k, v in d.get("problems") or ()),
            search_problem=str(d.get("search_problem") or ""),
        )


def _shown(v: Any) -> str:
    return repr(v)[:40]


def parse_model(m: Any) -> ModelPrice | None:
    """One entry of the model list's ``data``; None when it has no ``pricing`` object at all."""
    pr = m.get("pricing") if isinstance(m, dict) else None
    if not isinstance(pr, dict):
        return None
    problems: list[tuple[str, str]] = []

    def part(d: dict[str, Any], key: str, where: str = "") -> float:
        if key not in d or d[key] is None:
            return 0.0  # absent: the model has no such charge
        v = per_unit(d[key])
        if v is None:
            problems.append((where + key, _shown(d[key])))
            return 0.0
        return v

    base = {k: part(pr, k) for k in ("prompt", "completion", *ALWAYS)}
    for k in ("prompt", "completion"):
        if pr.get(k) is None:
            problems.append((k, "missing"))
    prompt_max = max(base[k] for k in PROMPT_KEYS)
    completion_max = max(base["completion"], base["internal_reasoning"])
    overrides = pr.get("overrides")
    for i, o in enumerate(overrides if isinstance(overrides, list) else []):
        if not isinstance(o, dict):
            continue
        where = f"overrides[{i}]."
        prompt_max = max(prompt_max, *(part(o, k, where) for k in PROMPT_KEYS))
        completion_max = max(completion_max, part(o, "completion", where))
    ws_raw = pr.get("web_search")
    ws = None if ws_raw is None else per_unit(ws_raw)
    ctx = m.get("context_length")
    context = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None
    return ModelPrice(
        prompt=base["prompt"],
        completion=base["completion"],
        prompt_max=prompt_max,
        completion_max=completion_max,
        request=base["request"],
        web_search=ws,
        context_length=context,
        problems=tuple(problems[:8]),
        search_problem=_shown(ws_raw) if ws_raw is not None and ws is None else "",
    )


def parse_models(body: Any) -> dict[str, ModelPrice]:
    """OpenRouter's ``{"data": [{"id", "pricing", "context_length"}]}`` to {id: ModelPrice}."""
    out: dict[str, ModelPrice] = {}
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return out
    for m in data:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            continue
        mp = parse_model(m)
        if mp is not None:
            out[m["id"][:200]] = mp
    return out

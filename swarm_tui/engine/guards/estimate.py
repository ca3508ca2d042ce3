"""What a call may cost, from the price list: the worst case reserved before it, the cost of one whose provider
reported none.

The worst case is a bound on what the call can be billed, not a guess at what it will cost: it is the amount
the budget ledger holds while the call runs, and a call billed more than its reservation pushes spend past the
ceiling. It counts

- the prompt at one token per UTF-8 byte of every message plus the chat template's overhead
  (engine/guards/tokens.py), at most the model's ``context_length``; a call that can search the web
  (``:online``) gets room for the results OpenRouter adds to its prompt;
- ``max_tokens`` of completion (reasoning counts against it) at the higher of the completion and reasoning
  price;
- at the highest per-token price any of the model's conditional prices applies (engine/guards/price_parts.py);
- the per-request price, and for a searching call the web search;
- for a role with fallback models (sent as OpenRouter's ``models`` list), the dearest of them.

A model with a price part that applies but cannot be read has no bound: its worst case is infinite and
``refusal`` says why (the spend guard refuses it under any ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.prices import searches
from swarm_tui.engine.guards.protocols import PriceSourceP
from swarm_tui.engine.guards.tokens import messages_bytes, prompt_tokens_bound

# OpenRouter's web plugin: "$4 per 1000 results. By default, max_results set to 5, this comes out to a maximum of
# $0.02 per request" ("Web Search" doc, Pricing); a model's own ``web_search`` price counts when it is higher.
WEB_PLUGIN_USD = 0.02
# The search results the plugin puts into the prompt (five results, each a title, a URL and a summary): an
# allowance of tokens, bounded by the context length like the rest of the prompt.
WEB_RESULTS_TOKENS = 16_384


def usd(v: float) -> str:
    """An amount as the guard's messages show it: 4 decimals under $10 (calls cost fractions of a cent)."""
    return f"${v:.4f}" if abs(v) < 10 else f"${v:.2f}"


class CostEstimator:
    """Prices calls from a price source (OpenRouter's list, its cache or the configured fallback; the demo's)."""

    def __init__(self, prices: PriceSourceP) -> None:
        self.prices = prices

    def _searches(self, model: str) -> bool:
        return searches(model) and self.prices.searches_web

    def _bounds(self, model: str, prompt_bytes: int, max_tokens: int, messages: int) -> tuple[float, float] | None:
        """(worst case, the web search's price) of one call; None when its price cannot bound it."""
        if self.prices.refusal(model):
            return None
        mp = self.prices.model_price(model)
        search = self._searches(model)
        tokens = prompt_tokens_bound(prompt_bytes, messages) + (WEB_RESULTS_TOKENS if search else 0)
        if mp.context_length:
            tokens = min(tokens, mp.context_length)
        search_usd = max(mp.web_search or 0.0, WEB_PLUGIN_USD) if search else 0.0
        return tokens * mp.worst_prompt + max(0, max_tokens) * mp.worst_completion + mp.request + search_usd, search_usd

    def worst(self, model: str, prompt_bytes: int, max_tokens: int, messages: int = 1) -> float:
        """The most one call of ``model`` can be billed, for ``prompt_bytes`` UTF-8 bytes of messages."""
        b = self._bounds(model, prompt_bytes, max_tokens, messages)
        return math.inf if b is None else b[0]

    def estimate(self, model: str, prompt_bytes: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        """(likely, worst case) USD of one call; the likely cost counts ~4 bytes a token and half of max_tokens."""
        worst, search_usd = self._bounds(model, prompt_bytes, max_tokens, messages) or (math.inf, 0.0)
        if math.isinf(worst):
            return worst, worst
        mp = self.prices.model_price(model)
        likely = math.ceil(max(0, prompt_bytes) / 4) * mp.prompt + (max_tokens / 2) * mp.completion
        return min(worst, likely + mp.request + search_usd), worst

    def worst_case(self, job: Job, fallbacks: Iterable[str] = ()) -> float:
        """The amount reserved for ``job``: its whole prompt and ``max_tokens`` of completion, at the dearest of
        its model and the ``fallbacks`` OpenRouter may route it to."""
        size = messages_bytes(m.content for m in job.messages)
        n = len(job.messages)
        return max(self.worst(m, size, job.max_tokens, n) for m in (job.model, *fallbacks))

    def refusal(self, models: Iterable[str]) -> Refusal | None:
        """Why a call that may go to any of ``models`` cannot be bounded (None when it can)."""
        return next((why for m in models if (why := self.prices.refusal(m))), None)

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost at list price, for a call whose provider reported none."""
        return self.prices.cost(model, prompt_tokens, completion_tokens)

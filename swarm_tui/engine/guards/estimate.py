"""What a call may cost, from the price list: the worst case reserved before it, the cost of one whose provider
reported none.

The worst case has to be generous (it is the amount the budget ledger holds while the call runs, and a call
that costs more than its reservation can push spend past the ceiling): prompt tokens are counted at 3
characters a token (English is ~4) plus the chat template's overhead, and the completion at ``max_tokens``.
"""

from __future__ import annotations

import math

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.guards.prices import PriceBook

PROMPT_MARGIN_TOKENS = 32  # plus 4 a message: chat template overhead


def prompt_tokens_estimate(chars: int, messages: int = 1) -> int:
    """A generous estimate: 3 characters a token (English is ~4), plus template overhead."""
    return math.ceil(max(0, chars) / 3) + PROMPT_MARGIN_TOKENS + 4 * max(1, messages)


def usd(v: float) -> str:
    """An amount as the guard's messages show it: 4 decimals under $10 (calls cost fractions of a cent)."""
    return f"${v:.4f}" if abs(v) < 10 else f"${v:.2f}"


class CostEstimator:
    """Prices calls with a ``PriceBook`` (the live list, its cache, or the configured fallback)."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices

    def estimate(self, model: str, prompt_chars: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        """(likely, worst case) USD of one call."""
        p, c = self.prices.price(model)
        worst = prompt_tokens_estimate(prompt_chars, messages) * p + max_tokens * c
        likely = math.ceil(max(0, prompt_chars) / 4) * p + (max_tokens / 2) * c
        return likely, worst

    def worst_case(self, job: Job) -> float:
        """The amount reserved for ``job``: its whole prompt and ``max_tokens`` of completion."""
        chars = sum(len(m.content) for m in job.messages)
        return self.estimate(job.model, chars, job.max_tokens, len(job.messages))[1]

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost at list price, for a call whose provider reported none."""
        return self.prices.cost(model, prompt_tokens, completion_tokens)

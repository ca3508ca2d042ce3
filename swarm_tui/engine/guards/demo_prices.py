"""The demo endpoint's prices: every model, local ones included, at ``demo.usd_per_mtok``.

The price source the spend guard uses in demo mode instead of OpenRouter's list (engine/guards/prices.py): no
list to fetch or cache, no web search to price, nothing it cannot bound.
"""

from __future__ import annotations

from swarm_tui.engine.config.sections import DemoSection
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.price_parts import ModelPrice
from swarm_tui.engine.info import PriceInfo


class DemoPrices:
    demo = True  # its spend has a ledger of its own
    searches_web = False  # the demo endpoint searches nothing
    fetch_enabled = False

    def __init__(self, demo: DemoSection) -> None:
        self.usd_per_mtok = demo.usd_per_mtok
        self.prices: dict[str, ModelPrice] = {}  # no list

    def free(self, model: str) -> bool:
        return False  # the demo charges local models too, so their jobs go through the ledger

    def model_price(self, model: str) -> ModelPrice:
        p = self.usd_per_mtok / 1e6
        return ModelPrice(p, p)

    def price(self, model: str) -> tuple[float, float]:
        mp = self.model_price(model)
        return mp.prompt, mp.completion

    def refusal(self, model: str) -> Refusal | None:
        return None  # one known price bounds every call

    def known(self, model: str) -> bool:
        return True

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        p, c = self.price(model)
        return prompt_tokens * p + completion_tokens * c

    def price_source(self) -> str:
        return f"demo price (${self.usd_per_mtok:g}/Mtok)"

    def stale(self) -> bool:
        return True  # no list, ever: never fetched (fetch_enabled is False)

    async def load(self) -> None:
        return None

    async def load_cache(self) -> bool:
        return False

    async def refresh(self) -> bool:
        return False

    def info(self) -> PriceInfo:
        return {
            "price_source": self.price_source(),
            "price_age_s": None,
            "price_models": 0,
            "price_error": "",
            "fallback_models": [],
            "unpriced_models": {},
        }

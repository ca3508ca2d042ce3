"""The interfaces between the parts that spend and the guards that allow it.

The conductor and the worker pool depend on these protocols, not on the concrete guards, so tests can hand
in fakes and a standalone worker process can run the real guards without the rest of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.price_parts import ModelPrice
from swarm_tui.engine.info import LaneInfo, LocalModel, PriceInfo, RamInfo, SpendInfo


class NotHeld(Exception):
    """A job's reservation could not be asserted (or moved to its attempt) right before its call: no call was
    made; the job goes back to its gates and reserves again."""


@dataclass(frozen=True)
class Reservation:
    ok: bool
    amount_usd: float = 0.0
    reason: str = ""  # why it did not fit: "over budget: ...", "out of credit: ..."


class AttemptLedgerP(Protocol):
    """What the reconciler holds and settles an attempt's money on (engine/guards/reconcile.py)."""

    reconciling: tuple[int, float]  # attempts awaiting their cost, USD they hold: written by the reconciler's scan

    def ledger_keys(self, job: Job) -> tuple[str, ...]:
        """The ledger keys that hold (or would hold) the job's reservation; () when it holds no money."""
        ...

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        """Move the job's reservation to the attempt; the amount held, or None when nothing was held."""
        ...

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        """Replace an attempt's reservation by what it cost, once per attempt id. True when it was counted."""
        ...


class EnvelopeSpendP(Protocol):
    """What the conductor reads of the spend guard to bound a beat's envelope (engine/heartbeat/conductor.py)."""

    def estimate(self, model: str, prompt_bytes: int, max_tokens: int, /) -> tuple[float, float]:
        """(likely, worst case) cost in USD of one worker's call with a one-message prompt of ``prompt_bytes``."""
        ...

    def remaining_usd(self) -> float:
        """Budget left under the daily ceiling, reservations included."""
        ...

    def cloud_blocked(self) -> Refusal | None:
        """Why no cloud job may be dispatched (out of credit, key limit reached), else None."""
        ...

    def unpriced(self, model: str) -> Refusal | None:
        """Why a model's cost has no bound (None when it has one): the conductor leaves such roles out."""
        ...


class SpendGuardP(EnvelopeSpendP, AttemptLedgerP, Protocol):
    """Money is reserved before a call and settled after it (see engine/guards/spend.py)."""

    name: str

    def estimate(self, model: str, prompt_bytes: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        """(likely, worst case) cost in USD of one call whose prompt is ``prompt_bytes`` of UTF-8: the worst case
        counts a token per byte (byte-level tokenizers), bounded by the model's context length."""
        ...

    def worst_case(self, job: Job) -> float:
        """The most the job's call can be billed, fallbacks included (infinite when a price cannot be read)."""
        ...

    async def reserve(self, job: Job) -> Reservation:
        """Reserve the job's worst-case cost under every ceiling; idempotent per job id."""
        ...

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        """Replace the job's reservation by its real cost."""
        ...

    async def release(self, job: Job) -> None:
        """Drop the job's reservation (nothing was spent)."""
        ...

    def mark_out_of_credit(self, reason: str) -> None:
        """The provider said 402: stop dispatching to it."""
        ...

    def credit_ok(self, since: float) -> None:
        """A call sent at ``since``, after the account ran out of credit, went through: dispatch resumes."""
        ...

    def recheck_key(self, refused: bool = False) -> bool:
        """A call was refused for its key (401): look at the key now, not at the next poll. With ``refused``: True
        when a new key is on its way (the provider cap makes one at once): the job waits for it."""
        ...

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost from the price list, for calls whose provider reported none."""
        ...

    def info(self) -> SpendInfo: ...


class PriceSourceP(Protocol):
    """Where the spend guard's prices come from: OpenRouter's list (engine/guards/prices.py) or the demo
    endpoint's one price (engine/guards/demo_prices.py)."""

    @property
    def demo(self) -> bool:
        """Prices of the demo endpoint: its spend has a ledger of its own."""
        ...

    @property
    def searches_web(self) -> bool:
        """Whether an ``:online`` model's web search is billed (and so priced)."""
        ...

    @property
    def fetch_enabled(self) -> bool: ...

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        """The listed models' prices (empty: no list)."""
        ...

    def free(self, model: str) -> bool:
        """A call of ``model`` costs no money, so nothing is reserved for it (local inference, not in demo)."""
        ...

    def model_price(self, model: str) -> ModelPrice: ...

    def refusal(self, model: str) -> Refusal | None:
        """Why no call of ``model`` can be bounded under a ceiling (None when it can)."""
        ...

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float: ...

    def price_source(self) -> str:
        """Where the prices come from, in words (the list and its age, the fallback, the demo price)."""
        ...

    def stale(self) -> bool: ...

    async def load(self) -> None:
        """Ready the prices: the cached list, then a fresh one when it is missing or stale."""
        ...

    async def load_cache(self) -> bool: ...

    async def refresh(self) -> bool: ...

    def info(self) -> PriceInfo: ...


@dataclass
class RamReading:
    total_mb: float
    available_mb: float
    own_rss_mb: float = 0.0
    children_rss_mb: float = 0.0
    local_models: list[LocalModel] = field(default_factory=list)  # from Ollama's /api/ps
    at: float = 0.0


class RamGuardP(Protocol):
    name: str

    def reading(self) -> RamReading: ...

    def headroom_ok(self, extra_mb: float = 0.0) -> bool:
        """True while available RAM minus ``extra_mb`` stays above the headroom."""
        ...

    def info(self) -> RamInfo: ...


class LocalLaneP(Protocol):
    """The local lane (engine/guards/local_lane.py): one local inference at a time on this machine."""

    @property
    def holder(self) -> str:
        """Who runs a local inference now ("" when the lane is free)."""
        ...

    @property
    def busy(self) -> bool: ...

    def turn(self, who: str, model: str = "") -> AbstractAsyncContextManager[None]:
        """Hold the lane for one inference; waiters are served in arrival order."""
        ...

    def info(self) -> LaneInfo: ...


class RateLimitsP(Protocol):
    def rate_limits(self) -> dict[str, dict[str, Any]]:
        """Per model: {"limit": current concurrency cap, "backoff_until": epoch s or 0}."""
        ...

"""The guards' protocols match the real classes that stand behind them.

Each ``_is_*`` function is the static check: mypy (strict over tests) refuses the return when a class drifts
from its protocol (a method renamed, a signature changed). The tests are the runtime check, on instances built
without a bus connection: every member a protocol declares is there.
"""

from __future__ import annotations

from pathlib import Path

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.guards.demo_prices import DemoPrices
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.memory import RamGuard
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.protocols import (
    AttemptLedgerP,
    EnvelopeSpendP,
    LocalLaneP,
    PriceSourceP,
    RamGuardP,
    RateLimitsP,
    SpendGuardP,
)
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.swarm.pool import Pool
from tests.support.env import make_config


def _spend_is_spend_guard_p(g: SpendGuard) -> SpendGuardP:
    return g


def _spend_is_attempt_ledger_p(g: SpendGuard) -> AttemptLedgerP:
    return g


def _spend_is_envelope_spend_p(g: SpendGuard) -> EnvelopeSpendP:
    return g


def _price_book_is_a_price_source(p: PriceBook) -> PriceSourceP:
    return p


def _demo_prices_are_a_price_source(p: DemoPrices) -> PriceSourceP:
    return p


def _ram_is_ram_guard_p(g: RamGuard) -> RamGuardP:
    return g


def _lane_is_local_lane_p(lane: LocalLane) -> LocalLaneP:
    return lane


def _pool_is_rate_limits_p(pool: Pool) -> RateLimitsP:
    return pool


def members(protocol: type) -> set[str]:
    """What a protocol declares: its methods, properties and annotated attributes, its bases' included."""
    out: set[str] = set()
    for cls in protocol.__mro__:
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        out |= set(getattr(cls, "__annotations__", {}))
        out |= {n for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return out


def missing(obj: object, protocol: type) -> set[str]:
    return {n for n in members(protocol) if not hasattr(obj, n)}


def test_the_spend_guard_has_what_its_users_call(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    g = SpendGuard(
        SpendSettings.of(cfg),
        Bus(cfg),
        None,
        DemoPrices(cfg.demo),
    )
    assert {"reconciling", "ledger_keys", "estimate", "cloud_blocked", "worst_case"} <= members(SpendGuardP)
    assert missing(g, SpendGuardP) == set()
    assert g.cloud_blocked() is None and g.unpriced("ollama_chat/gemma3:270m") is None


def test_both_price_sources_have_what_the_spend_guard_calls(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    book, demo = PriceBook(cfg.openrouter, cfg.paths, path=tmp_path / "prices.json"), DemoPrices(cfg.demo)
    assert missing(book, PriceSourceP) == set() and missing(demo, PriceSourceP) == set()
    assert not book.demo and book.searches_web and demo.demo and not demo.searches_web
    assert demo.refusal("openrouter/any/model") is None and demo.price_source().startswith("demo price")


def test_the_ram_guard_and_the_local_lane_have_what_their_users_call(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert missing(RamGuard(cfg.ram, cfg.ollama, ollama_ps=None), RamGuardP) == set()
    lane = LocalLane()
    assert missing(lane, LocalLaneP) == set()
    assert lane.holder == "" and not lane.busy


async def test_a_lane_turn_is_held_while_it_runs() -> None:
    lane: LocalLaneP = LocalLane()
    async with lane.turn("conductor"):
        assert lane.holder == "conductor" and lane.busy
    assert lane.holder == "" and not lane.busy and lane.info()["turns"] == 1

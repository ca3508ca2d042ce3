"""The spend guard's own reading of the ceiling, behind the log reader's checks (bus/trust.py).

The log reader refuses a ceiling dated more than its clock-skew allowance after it was stored, and one out of
range. What it lets through (a date up to five minutes ahead) and the live value in the ``swarm_state`` bucket
(read by standalone workers, which have no log) must still not let a date decide which ceiling is in force.
"""

from __future__ import annotations

import json
import time

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import ControlEvent
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import CEILING_KEY, SpendGuard, SpendSettings

pytestmark = pytest.mark.fault


def ceiling_event(usd: float, at: float) -> ControlEvent:
    return ControlEvent(what="ceiling", value=usd, by="cli", at=at)


async def put_live(bus: Bus, usd: float, at: float) -> None:
    kv = await bus.kv(S.KV_STATE)
    await kv.put(CEILING_KEY, json.dumps({"usd": usd, "at": at}).encode())


async def test_a_ceiling_dated_ahead_does_not_outrank_the_one_set_after_it(cfg: Config, bus: Bus) -> None:
    """Before: the newest ``at`` won, so a $1000 ceiling dated 299 s ahead (inside the log reader's allowance)
    beat a `budget 0.5` set a second later, and a live value dated 1e12 beat every later one."""
    guard = SpendGuard(SpendSettings.of(cfg), bus, None, PriceBook(cfg.openrouter, cfg.paths))
    now = time.time()
    guard.on_event(ceiling_event(1000.0, now + 299))
    guard.on_event(ceiling_event(0.5, now + 1))  # set after it, in log order
    in_force_events = guard.ceiling()
    await put_live(bus, 1000.0, 1e12)  # a far-future date in the bucket, read before the next budget
    await guard.read_ceiling()
    guard.on_event(ceiling_event(0.25, time.time() + 1))
    in_force_live = guard.ceiling()
    print(f"\nceiling in force: {in_force_events} after a later budget; {in_force_live} after a live value at 1e12")
    assert in_force_events == 0.5
    assert in_force_live == 0.25
    # nothing applied: neither date decided the ceiling


async def test_a_live_ceiling_out_of_range_is_ignored(cfg: Config, bus: Bus) -> None:
    """Before: a live value of 1e12 USD in the bucket was the ceiling (the control verb allows 0 <= v < 1e9)."""
    guard = SpendGuard(SpendSettings.of(cfg), bus, None, PriceBook(cfg.openrouter, cfg.paths))
    await put_live(bus, 1e12, time.time())
    got = await guard.read_ceiling()
    guard.on_event(ceiling_event(1e12, time.time()))  # the log reader refuses it; the guard does too
    print(f"\nceiling with a live value of 1e12: {got}; configured {cfg.budget.daily_usd}")
    assert got == guard.ceiling() == cfg.budget.daily_usd
    # nothing applied

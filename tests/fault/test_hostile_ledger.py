"""The budget ledger in a hostile world: midnight, and hosts whose clocks are minutes apart.

Each case ends with the promise it holds: "recorded = billed <= ceiling" (the SpendEntry sum on the bus and the
budget ledger equal what the fake provider billed, and that is at most the ceiling). The provider is
tests/support/fake_openrouter.py (it bills like OpenRouter). Clocks are controlled (tests/support/ledger_kit.py): a
wall clock that can jump, kept in the past so that no event is dated in the future, and, where a process judges
another by what it saw, its own monotonic clock. Run with -s for the figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Job, SpendEntry, job_id, worker_id
from swarm_tui.engine.guards.ledger import read_ledger
from swarm_tui.engine.guards.spend import SpendGuard
from swarm_tui.engine.projection.state import utc_day
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import (
    BARE,
    DAY,
    Clock,
    Swarm,
    a_job,
    approve_at,
    call_fake,
    config,
    guard,
    last_midnight,
    quiet,
)
from tests.support.polling import until, until_async
from tests.support.swarm_kit import events

pytestmark = pytest.mark.fault


def priced_at_56_cents(fo: FakeOpenRouter) -> None:
    """The issue's figures: a call's worst case is max_tokens 1000 x $0.00056 = $0.56 (no prompt price, so no
    prompt estimate changes it), and each call is billed $0.56: two of them are $1.12 under a $1.00 ceiling."""
    fo.prices[BARE] = ("0", "0.00056")
    fo.default = Answer(tokens=40, tps=10, cost=0.56)


async def run_job(fo: FakeOpenRouter, g: SpendGuard, bus: Bus, j: Job, clock: Callable[[], float]) -> float:
    """What the job runner does once a job holds its reservation: the call, its SpendEntry, the settle."""
    cost = float((await call_fake(fo, j))["usage"]["cost"])
    se = SpendEntry(
        id=j.id,
        model=j.model,
        worker_id=j.worker_id,
        decision_id=j.decision_id,
        task_id=j.task_id,
        prompt_tokens=12,
        completion_tokens=40,
        cost_usd=cost,
        estimated=False,
        at=clock(),
    )
    await bus.publish_event(se, msg_id=f"spend-{j.id}")
    await g.settle(j, cost, estimated=False)
    return cost


# ------------------------------------------------------------------------------------------ 1. midnight
async def test_midnight_counts_every_open_reservation_against_the_new_day(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Job A reserves its worst case ($0.56) at 23:59:50 and streams across midnight; job B asks for $0.56 at
    00:00:10. B must wait: A's reservation counts against the new day, and A is billed on the new day (it ends
    after midnight, when OpenRouter bills it; a daily key limit resets at midnight UTC)."""
    async with FakeOpenRouter() as fo:
        priced_at_56_cents(fo)
        midnight = last_midnight()
        clock = Clock(midnight - 10)  # 23:59:50 of yesterday: the clock stays in the past
        cfg = config(tmp_path, nats_server, fo.base, 1.0, swarm__scale=5)
        sw = await (await Swarm(cfg, clock).start()).run()
        state = sw.engine.state
        try:
            a = await approve_at(sw.bus, clock, 1, max_tokens=1000)
            await fo.wait_open(1, 15)  # A holds $0.56 and streams (4 s)
            assert clock() < midnight
            clock.jump(20)  # 00:00:10
            crossed = time.monotonic()
            held = await read_ledger(sw.bus, cfg, clock())  # what `status` reads with no engine running
            b = await approve_at(sw.bus, clock, 1, max_tokens=1000)
            jb, wb = job_id(b.id, 0), worker_id(b.id, 0)
            await until(lambda: jb in state.results or state.workers[wb].state == "over_budget", 20, "B runs or waits")
            await until(lambda: job_id(a.id, 0) in state.results, 20, "A's result")
            await until_async(lambda: quiet(sw.bus, fo), 20, "every attempt recorded")
            b_state = state.workers[wb].state
            new_day = await read_ledger(sw.bus, cfg, clock())
        finally:
            await sw.stop()
        billed = round(sum(r["billed"] for r in fo.requests if r["t_end"] is not None and r["t_end"] >= crossed), 9)
        today = utc_day(clock())
        recorded = sum(e.cost_usd for e in await events(cfg) if isinstance(e, SpendEntry) and utc_day(e.at) == today)
        assert new_day is not None and held is not None
        print(
            f"\n[midnight] ceiling $1.00; billed on the new day ${billed:.2f} ({len(fo.requests)} calls); recorded "
            f"${recorded:.2f} (SpendEntry), ledger ${new_day['spent']:.2f}; B {b_state}; at 00:00:10 `status` "
            f"saw ${sum(r['usd'] for r in held['reserved'].values()):.2f} held"
        )
        # recorded = billed <= ceiling, for the new day
        assert billed <= 1.0 + 1e-9, f"${billed:.2f} billed on the new day under a $1.00 ceiling"
        assert recorded == pytest.approx(billed, abs=1e-9) and new_day["spent"] == pytest.approx(billed, abs=1e-9)
        assert b_state == "over_budget" and len(fo.requests) == 1
        assert sum(r["usd"] for r in held["reserved"].values()) == pytest.approx(0.56)  # A's, seen after midnight


async def test_a_day_key_of_an_earlier_version_is_read_and_folded_in(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Upgrading mid-day keeps the day's spend and what was held: ``status`` reads the old key until the new one
    exists, and the first write folds it in."""
    async with FakeOpenRouter() as fo:
        priced_at_56_cents(fo)
        cfg = config(tmp_path, nats_server, fo.base, 1.0)
        bus = await Bus(cfg).connect()
        now = time.time()
        kv = await bus.kv(S.KV_BUDGET)
        legacy = {"spent": 0.3, "reserved": {"d-0-j0": {"usd": 0.2, "at": now}}, "settled": ["d-0-j9"], "at": now}
        await kv.put(time.strftime("day-%Y-%m-%d", time.gmtime(now)), json.dumps(legacy).encode())
        seen = await read_ledger(bus, cfg, now)
        g = await guard(cfg, bus)
        refused = await g.reserve(a_job(1))  # 0.3 spent + 0.2 held + 0.56 > 1.00
        settled_again = await g.reserve(a_job(9, decision="d-0"))
        await g.stop()
        await bus.close()
    assert seen is not None and seen["spent"] == 0.3 and list(seen["reserved"]) == ["d-0-j0"]
    assert not refused.ok and "$0.5000 left" in refused.reason
    assert not settled_again.ok and settled_again.reason.startswith("already settled")  # nothing applied


# ------------------------------------------------------------------------------------------ 2. clock skew
async def test_a_host_ten_minutes_ahead_never_drops_a_live_reservation(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Two processes on one bus, B's clock 10 minutes ahead of A's. A's reservation, written at A's 12:00:00,
    looks 10 minutes old to B, more than the stale limit (4 min here). B must not take that for a dead holder."""
    async with FakeOpenRouter() as fo:
        priced_at_56_cents(fo)
        # a reservation is held at most request_timeout_s x (max_retries + 1) + 60 s = 240 s by a live job
        cfg = config(tmp_path, nats_server, fo.base, 1.0, swarm__request_timeout_s=60.0, swarm__max_retries=2)
        noon = last_midnight() - 1.5 * DAY  # 12:00 two days ago: the clocks stay in the past
        a_clock, b_clock = Clock(noon), Clock(noon + 600)
        bus_a, bus_b = await Bus(cfg).connect(), await Bus(cfg).connect()
        a, b = await guard(cfg, bus_a, a_clock), await guard(cfg, bus_b, b_clock)
        assert 0.5 < a.worst_case(a_job(1)) <= 1.0 and b.stale_s < 600
        j1, j2 = a_job(1), a_job(2)
        assert (await a.reserve(j1)).ok  # A's job holds $0.56; its call is under way
        if (await b.reserve(j2)).ok:  # B's job asks for $0.56
            await run_job(fo, b, bus_b, j2, b_clock)
        await run_job(fo, a, bus_a, j1, a_clock)  # A's call ends and is settled
        b_waits = not (await b.reserve(j2)).ok  # B's job asks again, as a waiting job does
        day1_billed = fo.billed
        day1 = await read_ledger(bus_a, cfg, a_clock())
        assert day1 is not None
        recorded1 = sum(e.cost_usd for e in await events(cfg) if isinstance(e, SpendEntry))
        print(
            f"\n[clock skew, day 1] ceiling $1.00; billed ${day1_billed:.2f} ({len(fo.requests)} calls); recorded "
            f"${recorded1:.2f} (SpendEntry), ledger ${day1['spent']:.2f}"
        )
        # recorded = billed <= ceiling
        assert day1_billed <= 1.0 + 1e-9, f"${day1_billed:.2f} billed under a $1.00 ceiling"
        assert recorded1 == pytest.approx(day1_billed) and day1["spent"] == pytest.approx(day1_billed)
        assert b_waits

        # the next day: a reservation its holder keeps refreshing is never dropped, however long B watches it;
        # once its holder is dead (no refresh), B drops it after seeing it unchanged for the limit on its own clock
        a_clock.jump(DAY)
        b_clock.jump(DAY)
        mono = [0.0]
        b2 = await guard(cfg, bus_b, b_clock, monotonic=lambda: mono[0])
        j3, j4 = a_job(3), a_job(4)
        assert (await a.reserve(j3)).ok
        for _ in range(3):
            assert not (await b2.reserve(j4)).ok
            mono[0] += b2.stale_s + 1
            assert (await a.reserve(j3)).ok  # the job runner re-asserts its reservation before each call
        assert not (await b2.reserve(j4)).ok
        mono[0] += b2.stale_s + 1  # A died holding j3: nobody refreshed it since
        assert (await b2.reserve(j4)).ok
        await run_job(fo, b2, bus_b, j4, b_clock)
        day2 = await read_ledger(bus_b, cfg, b_clock())
        for g in (a, b, b2):
            await g.stop()
        await bus_a.close()
        await bus_b.close()
    assert day2 is not None
    day2_billed = round(fo.billed - day1_billed, 9)
    print(f"[clock skew, day 2] billed ${day2_billed:.2f}, ledger ${day2['spent']:.2f}; dead reservation dropped")
    assert day2["spent"] == pytest.approx(day2_billed) and day2_billed <= 1.0  # recorded = billed <= ceiling
    assert list(day2["reserved"]) == []

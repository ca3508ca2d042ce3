"""The budget ledger in a hostile world: midnight, clocks apart, a paused reconciler, a key endpoint that lies.

Each case ends with the promise it holds: "recorded = billed <= ceiling" (the SpendEntry sum on the bus and the
budget ledger equal what the fake provider billed, and that is at most the ceiling) or "nothing applied". The
provider is tests/support/fake_openrouter.py (it bills like OpenRouter); redirects and lies are served by a tiny
aiohttp app in front of it (``Liar``). Clocks are controlled: a wall clock that can jump (``Clock``), kept in
the past so that no event is dated in the future, and, where a process judges another by what it saw, its own
monotonic clock. Run with -s for the figures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import (
    Approval,
    ChatMessage,
    Decision,
    Job,
    PlanItem,
    SpendEntry,
    Task,
    job_id,
    new_id,
    worker_id,
)
from swarm_tui.engine.config import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.ledger import read_ledger
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.reconcile import ORPHAN_S, Reconciler
from swarm_tui.engine.guards.spend import SpendGuard
from swarm_tui.engine.projection import utc_day
from swarm_tui.engine.swarm.dispatcher import Controller
from swarm_tui.engine.swarm.pool import Pool
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until, until_async
from tests.support.swarm_kit import events

pytestmark = pytest.mark.fault

KEY = "sk-or-v1-test-secret-0123456789"
MODEL = "openrouter/google/gemini-2.5-flash-lite"  # google/: its provider bills a cancelled stream in full
BARE = MODEL.removeprefix("openrouter/")
DAY = 86400.0


class Clock:
    """A wall clock that runs from ``start`` and jumps when told."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def last_midnight() -> float:
    now = time.time()
    return now - now % DAY


def config(tmp_path: Path, srv: EmbeddedServer, base: str, ceiling: float, **values: Any) -> Config:
    cfg = make_config(
        tmp_path, srv.url, OPENROUTER_API_BASE=base, OPENROUTER_API_KEY=KEY, SWARM_BUDGET_USD=str(ceiling)
    )
    return cfg.replace(**values) if values else cfg


def priced_at_56_cents(fo: FakeOpenRouter) -> None:
    """The issue's figures: a call's worst case is max_tokens 1000 x $0.00056 = $0.56 (no prompt price, so no
    prompt estimate changes it), and each call is billed $0.56: two of them are $1.12 under a $1.00 ceiling."""
    fo.prices[BARE] = ("0", "0.00056")
    fo.default = Answer(tokens=40, tps=10, cost=0.56)


def a_job(i: int, *, decision: str = "d-1", max_tokens: int = 1000, created_at: float = 0.0) -> Job:
    return Job(
        id=job_id(decision, i),
        worker_id=worker_id(decision, i),
        decision_id=decision,
        task_id="t-1",
        role="research",
        model=MODEL,
        max_tokens=max_tokens,
        messages=[ChatMessage(role="user", content=f"hello {i}")],
        created_at=created_at or time.time(),
    )


async def guard(cfg: Config, bus: Bus, clock: Callable[[], float] = time.time, **kw: Any) -> SpendGuard:
    prices = PriceBook(cfg)
    await prices.load()
    g = SpendGuard(cfg, bus, None, prices, clock=clock, **kw)
    await g.start()
    return g


async def call_fake(fo: FakeOpenRouter, j: Job) -> dict[str, Any]:
    """One call as a worker makes it, billed by the fake: its answer (``id``: the generation, ``usage.cost``)."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fo.base}/chat/completions",
            json={"model": BARE, "max_tokens": j.max_tokens, "messages": [m.model_dump() for m in j.messages]},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as resp,
    ):
        body: dict[str, Any] = await resp.json()
    return body


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


async def approve_at(bus: Bus, clock: Callable[[], float], n: int, *, max_tokens: int) -> Decision:
    """A task, a decision of n jobs and its approval, dated by ``clock``."""
    now = clock()
    task = Task(id=new_id("t"), text="do it", created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=max_tokens) for _ in range(n)]
    d = Decision(id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=d.id)
    await bus.publish_event(Approval(decision_id=d.id, action="approved", at=now), msg_id=f"{d.id}-final")
    return d


class Swarm:
    """An engine as the app runs one: the real spend guard (prices from the fake), the controller and the pool."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock

    async def start(self) -> Swarm:
        self.bus = await Bus(self.cfg).connect()
        self.engine = Engine(self.cfg, self.bus, clock=self.clock)
        prices = PriceBook(self.cfg)
        await prices.load()
        st = self.engine.state
        self.guard = self.engine.add(SpendGuard(self.cfg, self.bus, st, prices, clock=self.clock, refresh_s=0.2))
        self.engine.add(Controller(self.cfg, self.bus, st, spend=self.guard, host="test", clock=self.clock))
        self.pool = self.engine.add(Pool(self.cfg, self.bus, spend=self.guard, host="test", clock=self.clock))
        assert self.pool.reconciler is not None
        self.reconciler: Reconciler = self.pool.reconciler
        return self

    async def run(self) -> Swarm:
        await self.engine.start()
        return self

    async def stop(self) -> None:
        await self.engine.stop()

    def recorded(self) -> float:
        return round(sum(s.cost_usd for s in self.engine.state.spend_entries.values()), 9)


async def records(bus: Bus) -> dict[str, dict[str, Any]]:
    """The attempt records in swarm_reconcile."""
    kv = await bus.kv(S.KV_RECONCILE)
    try:
        keys = [k for k in await kv.keys() if k.startswith("a.")]
    except Exception:  # noqa: BLE001 - no keys
        return {}
    out = {}
    for k in keys:
        try:
            out[k] = json.loads((await kv.get(k)).value or b"")
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
    return out


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
            await until_async(lambda: _quiet(sw.bus, fo), 20, "every attempt recorded")
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


async def _quiet(bus: Bus, fo: FakeOpenRouter) -> bool:
    return not await records(bus) and fo.open == 0


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


# ------------------------------------------------------------------------------------------ 3. the reconciler
MAX_TOKENS = 100
TOKENS = 80
P_PROMPT, P_COMPLETION = 1e-6, 4e-4


def full_cost() -> float:
    return round(TOKENS * P_COMPLETION + 12 * P_PROMPT, 9)


async def test_a_paused_or_skewed_owner_keeps_its_attempt_and_a_dead_one_is_adopted(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner of an attempt streams a call while its clock is 5 minutes behind and its heartbeat stops for 12
    s: another reconciler must not take the attempt over (it would charge the worst case while the owner records
    the real cost). An owner silent longer than ORPHAN_S is adopted, and then leaves the recording to its
    adopter; a dead owner's attempt is adopted and reconciled with GET /generation."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
        # the first content comes after 1.5 s of keepalives: no generation id known until then
        fo.default = Answer(tokens=TOKENS, tps=25, cost=full_cost(), first_token_delay=1.5, keepalive_s=0.2)
        cfg = config(tmp_path, nats_server, fo.base, 0.25)
        sw = await Swarm(cfg).start()
        owner = sw.reconciler
        owner.clock = lambda: time.time() - 300  # the owner's host is 5 minutes behind
        await sw.run()
        bus2 = await Bus(cfg).connect()
        g2 = await guard(cfg, bus2)
        adopter = Reconciler(cfg, bus2, spend=g2, api_base=lambda: fo.base, api_key=lambda: KEY)
        mono = [0.0]
        adopter.monotonic = lambda: mono[0]  # the adopter's own monotonic clock
        beat = owner._beat

        async def paused() -> None:
            return None

        try:
            # (a) skewed by minutes and paused for 12 s while its call streams: not taken over
            d = await approve_at(sw.bus, time.time, 1, max_tokens=MAX_TOKENS)
            await fo.wait_open(1, 15)
            await until_async(lambda: records(sw.bus), 10, "the attempt's record")
            await adopter.scan()
            monkeypatch.setattr(owner, "_beat", paused)
            for _ in range(2):
                mono[0] += 6.0
                await adopter.scan()
            monkeypatch.setattr(owner, "_beat", beat)
            await until(lambda: job_id(d.id, 0) in sw.engine.state.results, 20, "the result")
            await until_async(lambda: _quiet(sw.bus, fo), 20, "the attempt recorded")
            taken = adopter.counts["adopted"]
            recorded_a = sum(e.cost_usd for e in await events(cfg) if isinstance(e, SpendEntry))
            billed_a = fo.billed
            print(
                f"\n[reconciler, owner paused 12 s, clock 5 min behind] billed ${billed_a:.6f}; recorded "
                f"${recorded_a:.6f}; adopted {taken}"
            )
            assert recorded_a == pytest.approx(billed_a, abs=1e-9), "recorded = billed"
            assert taken == 0

            # (b) silent longer than ORPHAN_S on the adopter's clock: adopted; the owner then records nothing
            d2 = await approve_at(sw.bus, time.time, 1, max_tokens=MAX_TOKENS)

            async def with_gen() -> str:
                return next((k for k, r in (await records(sw.bus)).items() if r.get("gen")), "")

            await until_async(with_gen, 15, "the attempt's generation id")
            monkeypatch.setattr(owner, "_beat", paused)
            for _ in range(3):  # a beat already on its way when the pause began moves the heartbeat once more
                await adopter.scan()
                mono[0] += ORPHAN_S + 1
                await adopter.scan()
                if adopter.counts["adopted"]:
                    break
            assert adopter.counts["adopted"] == 1
            monkeypatch.setattr(owner, "_beat", beat)
            await until(lambda: job_id(d2.id, 0) in sw.engine.state.results, 20, "the result")

            async def adopter_done() -> bool:
                await adopter.scan()
                return await _quiet(sw.bus, fo)

            await until_async(adopter_done, 30, "the adopter's record of it")
            assert owner.counts["adopted_away"] == 1

            # (c) a dead owner: its record and its heartbeat stay, nothing moves them any more
            bus3 = await Bus(cfg).connect()
            g3 = await guard(cfg, bus3)
            dead = Reconciler(cfg, bus3, spend=g3, api_base=lambda: fo.base, api_key=lambda: KEY)
            j = a_job(1, decision=new_id("d"), max_tokens=MAX_TOKENS)
            assert (await g3.reserve(j)).ok
            aid, _keys, _worst = await dead.begin(j, worst=g3.worst_case(j), max_tokens=MAX_TOKENS)
            await dead.note_generation(aid, str((await call_fake(fo, j))["id"]))
            mono[0] += 1
            await adopter.scan()
            assert adopter.counts["adopted"] == 1  # seen once: not yet
            mono[0] += ORPHAN_S + 1
            await until_async(adopter_done, 30, "the dead owner's attempt reconciled")
            await g3.stop()
            await bus3.close()
            kv = await sw.bus.kv(S.KV_BUDGET)
            daily = json.loads((await kv.get(sw.guard.day_key())).value or b"")
        finally:
            await sw.stop()
            await g2.stop()
            await adopter.stop()
            await bus2.close()
        entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
        ids = Counter(e.id for e in entries)
        recorded = round(sum(e.cost_usd for e in entries), 9)
        print(
            f"[reconciler, all] billed ${fo.billed:.6f} ({len(fo.generations)} generations); recorded "
            f"${recorded:.6f} ({len(entries)} SpendEntry), ledger ${daily['spent']:.6f}; adopted "
            f"{adopter.counts['adopted']}, left to the adopter {owner.counts['adopted_away']}"
        )
        # recorded = billed <= ceiling; one SpendEntry and one ledger settle per attempt
        assert recorded == pytest.approx(fo.billed, abs=1e-9) and daily["spent"] == pytest.approx(fo.billed, abs=1e-9)
        assert fo.billed <= 0.25 and daily["reserved"] == {}
        assert len(entries) == len(fo.generations) == 3 and set(ids.values()) == {1}
        assert all(daily["settled"].count(i) == 1 for i in ids)
        assert adopter.counts["adopted"] == 2 and not any(e.estimated for e in entries)


# ------------------------------------------------------------------------------------------ 4. redirects, non-finite
class Liar:
    """The API base the app is pointed at, in front of the fake: ``mode`` decides how it answers /key and
    /generation ("honest" forwards to the fake). What a redirect leads to (``/lie/...``) counts its visitors."""

    def __init__(self, fo: FakeOpenRouter) -> None:
        self.fo = fo
        self.mode = "honest"
        self.lie_hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def __aenter__(self) -> Liar:
        app = web.Application()
        app.router.add_get("/api/v1/key", self._key)
        app.router.add_get("/api/v1/generation", self._generation)
        app.router.add_get("/lie/key", self._lie_key)
        app.router.add_get("/lie/generation", self._lie_generation)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request, path: str) -> web.Response:
        auth = {"Authorization": request.headers.get("Authorization", "")}
        async with aiohttp.ClientSession() as s, s.get(self.fo.base + path, params=request.query, headers=auth) as r:
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    @staticmethod
    def _raw(text: str) -> web.Response:
        return web.Response(text=text, content_type="application/json")

    async def _key(self, request: web.Request) -> web.Response:
        if self.mode == "redirect":  # it echoes the key in the Location, which is shown: it must not be
            raise web.HTTPFound(f"/lie/key?from={quote(request.headers.get('Authorization', ''))}")
        lie = {"nan": "NaN", "inf": "1e400", "text": '"plenty"', "long": "1" + "0" * 400}.get(self.mode)
        if lie is not None:
            return self._raw(f'{{"data": {{"limit_remaining": {lie}, "usage": 0, "limit": 10}}}}')
        return await self._forward(request, "/key")

    async def _generation(self, request: web.Request) -> web.Response:
        gid = json.dumps(request.query.get("id", ""))
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect(f"/lie/generation?id={request.query.get('id', '')}")
        lies = {
            "inf": '"total_cost": 1e400, "tokens_prompt": 12, "tokens_completion": 80',
            "nan_tokens": '"total_cost": 0.0, "tokens_prompt": NaN, "tokens_completion": 80',
            "huge_tokens": '"total_cost": 0.0, "tokens_prompt": 12, "tokens_completion": 1e400',
        }
        if self.mode in lies:
            return self._raw(f'{{"data": {{"id": {gid}, {lies[self.mode]}, "cancelled": false}}}}')
        return await self._forward(request, "/generation")

    async def _lie_key(self, request: web.Request) -> web.Response:
        self.lie_hits += 1
        return web.json_response({"data": {"limit_remaining": 1000.0, "usage": 0.0, "limit": 1000.0}})

    async def _lie_generation(self, request: web.Request) -> web.Response:
        self.lie_hits += 1
        gid = request.query.get("id", "")
        return web.json_response({"data": {"id": gid, "total_cost": 0.0, "tokens_prompt": 1, "tokens_completion": 1}})


async def test_a_key_answer_that_redirects_or_is_not_finite_changes_nothing(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The key is at its limit. Answers that would lift it (a redirect to a host saying $1000 left, NaN, 1e400,
    a string, a 400-digit integer) are refused: cloud dispatch stays stopped."""
    async with FakeOpenRouter() as fo, Liar(fo) as liar:
        fo.key = {"limit_remaining": 0, "usage": 10.0, "limit": 10.0}
        cfg = config(tmp_path, nats_server, liar.base, 1.0)
        bus = await Bus(cfg).connect()
        g = await guard(cfg, bus)
        await g.poll_key()
        assert g.cloud_blocked().startswith("key limit reached") and g.credits_left == 0
        seen: dict[str, tuple[str, float | None, str]] = {}
        for mode in ("redirect", "nan", "inf", "text", "long"):
            liar.mode = mode
            try:
                await g.poll_key()
            except Exception as exc:  # noqa: BLE001 - a crash of the poll is a finding too
                seen[mode] = (f"the poll raised {type(exc).__name__}", g.credits_left, "")
                continue
            seen[mode] = (g.cloud_blocked(), g.credits_left, g.key_status)
        r = await g.reserve(a_job(1))
        await g.stop()
        await bus.close()
    for mode, (blocked, left, status) in seen.items():
        print(f"\n[/key answers {mode}] blocked: {blocked!r}; credits left {left}; key status {status!r}")
    # nothing applied
    assert liar.lie_hits == 0, "the redirect was followed"
    assert all(b.startswith("key limit reached") and left == 0 for b, left, _ in seen.values())
    assert "redirect to /lie/key" in seen["redirect"][2] and "not followed" in seen["redirect"][2]
    assert KEY not in json.dumps(seen)
    assert not r.ok and r.reason.startswith("key limit reached") and not fo.requests


async def test_a_generation_answer_that_redirects_or_is_not_finite_is_never_recorded(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """An attempt waits for its cost from GET /generation. A redirect to a host saying it cost $0, a cost of
    1e400, token counts of NaN or 1e400 next to a cost of $0: none is recorded; the worst case stays held until
    the real answer, which is recorded."""
    async with FakeOpenRouter() as fo, Liar(fo) as liar:
        fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
        fo.default = Answer(tokens=TOKENS, cost=full_cost())
        cfg = config(tmp_path, nats_server, fo.base, 0.25)
        bus = await Bus(cfg).connect()
        g = await guard(cfg, bus)
        clock = Clock(time.time() - 200)  # jumps 25 s a look (the asks back off), and stays in the past
        rec = Reconciler(cfg, bus, spend=g, api_base=lambda: liar.base, api_key=lambda: KEY, clock=clock)
        j = a_job(1, max_tokens=MAX_TOKENS)
        assert (await g.reserve(j)).ok
        aid, keys, worst = await rec.begin(j, worst=g.worst_case(j), max_tokens=MAX_TOKENS)
        gen = str((await call_fake(fo, j))["id"])  # billed by the fake; the stream's end was lost
        assert await rec.end(aid, keys, job=j, cost=None, gen=gen, billed=True, worst=worst) is None
        held: dict[str, float] = {}
        for mode in ("redirect", "inf", "nan_tokens", "huge_tokens"):
            liar.mode = mode
            clock.jump(25)
            try:
                await rec.scan()
            except Exception as exc:  # noqa: BLE001 - a crash of the scan is a finding too
                held[mode + f" (scan raised {type(exc).__name__})"] = -1.0
                continue
            await g.refresh()
            held[mode] = g.reserved_usd() if await records(bus) else 0.0
        liar.mode = "honest"
        clock.jump(25)
        await rec.scan()
        await g.refresh()
        led = g.ledger()
        await rec.stop()
        await g.stop()
        await bus.close()
    entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
    recorded = round(sum(e.cost_usd for e in entries), 9)
    print(
        f"\n[/generation] held while lying: {held}; billed ${fo.billed:.6f}, recorded ${recorded:.6f}, "
        f"ledger ${led['spent']:.6f}; liar asked {liar.lie_hits} times"
    )
    assert liar.lie_hits == 0, "the redirect was followed"
    assert held == dict.fromkeys(("redirect", "inf", "nan_tokens", "huge_tokens"), pytest.approx(worst))
    # recorded = billed <= ceiling
    assert len(entries) == 1 and recorded == pytest.approx(fo.billed, abs=1e-9) and fo.billed <= 0.25
    assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}

"""Money against what OpenRouter bills: attempts without usage.cost reconciled with GET /generation.

The fake bills like OpenRouter (tests/support/fake_openrouter.py ``_bill``): a cancelled stream of a Google model is
billed in full, other ends for the tokens sent. Every test checks that what the app recorded (the SpendEntry
events and the budget ledger) equals what the fake billed, under the ceiling, and prints both (run with -s).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import job_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.reconcile import Reconciler
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from swarm_tui.engine.swarm.pool import Pool
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, approve, swarm_config

BARE = MODEL.removeprefix("openrouter/")  # google/...: its provider bills a cancelled stream in full
P_PROMPT, P_COMPLETION = 1e-6, 4e-4  # USD a token, as the fake lists them for this test
MAX_TOKENS = 100
TOKENS = 80  # the answer each call would produce


def full_cost(tokens: int = TOKENS, prompt: int = 12) -> float:
    return round(tokens * P_COMPLETION + prompt * P_PROMPT, 9)


class Swarm:
    """An engine with the real spend guard (prices from the fake), the controller and the pool."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._parts: tuple[Bus, Engine, Pool, SpendGuard] | None = None  # once started

    @property
    def bus(self) -> Bus:
        assert self._parts is not None, "not started"
        return self._parts[0]

    @property
    def engine(self) -> Engine:
        assert self._parts is not None, "not started"
        return self._parts[1]

    @property
    def pool(self) -> Pool:
        assert self._parts is not None, "not started"
        return self._parts[2]

    @property
    def guard(self) -> SpendGuard:
        assert self._parts is not None, "not started"
        return self._parts[3]

    @property
    def reconciler(self) -> Reconciler:
        rec = self.pool.reconciler
        assert rec is not None, "the pool reconciles OpenRouter calls"
        return rec

    async def start(self) -> Swarm:
        bus = await Bus(self.cfg).connect()
        engine = Engine(self.cfg, bus)
        prices = PriceBook(self.cfg.openrouter, self.cfg.paths)
        await prices.load()
        guard = engine.add(SpendGuard(SpendSettings.of(self.cfg), bus, engine.state, prices, refresh_s=0.2))
        engine.add(Controller(ControllerSettings.of(self.cfg), bus, engine.state, spend=guard, host="test"))
        pool = engine.add(build_pool(self.cfg, bus, spend=guard, host="test"))
        self._parts = (bus, engine, pool, guard)
        await engine.start()
        return self

    async def stop(self) -> None:
        if self._parts is not None:
            await self.engine.stop()

    def recorded(self) -> float:
        return round(sum(s.cost_usd for s in self.engine.state.spend_entries.values()), 9)

    async def ledger(self) -> dict[str, Any]:
        kv = await self.bus.kv(S.KV_BUDGET)
        doc: dict[str, Any] = json.loads((await kv.get(self.guard.day_key())).value or b"")
        return doc

    async def settled(self, fo: FakeOpenRouter, timeout: float = 20.0) -> dict[str, Any]:
        """Until nothing is left to reconcile and the log holds what the fake billed; the ledger then."""

        async def quiet() -> bool:
            kv = await self.bus.kv(S.KV_RECONCILE)
            try:
                keys = [k for k in await kv.keys() if k.startswith("a.")]
            except NoKeysError:  # only that: a timeout under load is not "nothing left"
                keys = []
            return not keys and not fo.open

        end = asyncio.get_running_loop().time() + timeout
        while not (await quiet() and math.isclose(self.recorded(), fo.billed, abs_tol=1e-9)):
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(f"not reconciled: recorded {self.recorded()} billed {fo.billed}")
            await asyncio.sleep(0.1)
        return await self.ledger_once_settled(fo.billed, end)

    async def ledger_once_settled(self, billed: float, end: float) -> dict[str, Any]:
        """The ledger once it holds nothing and has spent ``billed``, or as it is at ``end`` (loop time). The
        reconciler writes an attempt's SpendEntry, then settles the ledger: the ledger may trail the log briefly."""
        while True:
            led = await self.ledger()
            settled = not led["reserved"] and math.isclose(led["spent"], billed, abs_tol=1e-9)
            if settled or asyncio.get_running_loop().time() > end:
                return led  # at the deadline, as it is: the caller's assertions say what differs
            await asyncio.sleep(0.1)


def setup_fake(fo: FakeOpenRouter, **answer: Any) -> None:
    fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
    kw: dict[str, Any] = {"tokens": TOKENS, "tps": 25, "cost": full_cost()}
    kw.update(answer)
    fo.default = Answer(**kw)


def config(tmp_path: Path, nats_server: EmbeddedServer, fo: FakeOpenRouter, **values: Any) -> Config:
    values.setdefault("budget__daily_usd", 0.25)
    return swarm_config(make_config, tmp_path, nats_server.url, fo.base, **values)


def report(what: str, sw: Swarm, fo: FakeOpenRouter, led: dict[str, Any], ceiling: float) -> None:
    est = sum(s.cost_usd for s in sw.engine.state.spend_entries.values() if s.estimated)
    print(
        f"\n[{what}] billed by the fake ${fo.billed:.6f}; recorded: SpendEntry sum ${sw.recorded():.6f} "
        f"(estimated ${est:.6f}), ledger spent ${led['spent']:.6f}; ceiling ${ceiling:.2f}; "
        f"{len(fo.requests)} calls, {fo.generation_asks} generation look-ups"
    )


async def test_two_cancel_all_of_a_google_model_are_billed_in_full_and_recorded(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.generation_lag = 1.0  # the stats come a second after the end: 404 until then
        cfg = config(tmp_path, nats_server, fo, swarm__scale=10)
        sw = await Swarm(cfg).start()
        try:
            for _ in range(2):  # three workers, cancelled mid-stream, twice
                await approve(sw.bus, 3, max_tokens=MAX_TOKENS)
                await fo.wait_open(3, 15)
                await until(lambda: min(r["tokens_sent"] for r in fo.requests[-3:]) >= 5, 10, "some output")
                await sw.engine.controls.handle("cancel", {"all": True})
                await until(lambda: fo.open == 0, 5, "streams closed")
                await asyncio.sleep(0.05)
            # the reservations of the cancelled attempts stay until OpenRouter tells their cost
            info = sw.guard.info()
            await until(lambda: sw.reconciler.info()["pending"] > 0 or sw.recorded() > 0, 5, "pending")
            # then more work than the money left allows: only what fits after the real cost is dispatched
            d = await approve(sw.bus, 3, max_tokens=MAX_TOKENS)
            await until(
                lambda: (
                    job_id(d.id, 0) in sw.engine.state.results
                    or any(w.state == "over_budget" for w in sw.engine.state.workers.values())
                ),
                20,
                "the third round runs or waits",
            )
            led = await sw.settled(fo)
            await until(lambda: any(r.state == "done" for r in sw.engine.state.results.values()), 20, "one done")
            led = await sw.settled(fo)
        finally:
            await sw.stop()
        report("2 x cancel --all, google", sw, fo, led, 0.25)
        assert info["ceiling_usd"] == 0.25
        cancelled = [g for g in fo.generations.values() if g["cancelled"]]
        assert len(cancelled) == 6 and all(g["total_cost"] == full_cost() for g in cancelled)
        assert fo.billed == pytest.approx(sw.recorded(), abs=1e-9)
        assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}
        assert fo.billed <= 0.25
        assert not any(s.estimated for s in sw.engine.state.spend_entries.values())
        assert fo.generation_asks > len(cancelled)  # asked again after the 404s of the lag


async def _one(
    tmp_path: Any, nats_server: Any, fo: FakeOpenRouter, what: str, *, n: int = 1, **values: Any
) -> tuple[Swarm, dict[str, Any]]:
    """n jobs to their results and every attempt reconciled; prints billed vs recorded."""
    sw = await Swarm(config(tmp_path, nats_server, fo, **values)).start()
    try:
        await approve(sw.bus, n, max_tokens=MAX_TOKENS)
        await until(lambda: len(sw.engine.state.results) == n, 30, f"{n} results")
        led = await sw.settled(fo)
    finally:
        await sw.stop()
    report(what, sw, fo, led, sw.cfg.budget.daily_usd)
    assert fo.billed == pytest.approx(sw.recorded(), abs=1e-9)
    assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}
    assert fo.billed <= sw.cfg.budget.daily_usd
    return sw, led


async def test_a_stall_a_drop_and_an_error_mid_stream_are_recorded_as_billed(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo, tps=0)
        fo.generation_lag = 0.5
        fo.script(
            Answer(tokens=TOKENS, cost=full_cost(), stall_after=5, stall_s=5),  # killed as stalled
            Answer(tokens=TOKENS, cost=full_cost(), drop_after=10),  # the connection drops
            Answer(tokens=TOKENS, cost=full_cost(), error_after=20, error_code=502),
        )  # 502 mid-stream
        sw, _ = await _one(
            tmp_path,
            nats_server,
            fo,
            "stall + drop + 502 mid-stream, google",
            n=1,
            swarm__first_token_timeout_s=0.7,
            swarm__max_retries=3,
        )
        gens = list(fo.generations.values())
        assert len(gens) == 4 and sw.engine.state.results[next(iter(sw.engine.state.results))].state == "done"
        assert gens[0]["cancelled"] and gens[0]["total_cost"] == full_cost()  # the stalled stream, closed by us
        assert gens[1]["total_cost"] == pytest.approx(full_cost() * 10 / TOKENS)  # dropped: tokens sent
        assert gens[2]["total_cost"] == pytest.approx(full_cost() * 20 / TOKENS)  # error: tokens sent
        assert len(sw.engine.state.spend_entries) == 4


async def test_a_cancel_of_a_provider_that_stops_billing_costs_the_tokens_sent(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.providers[BARE] = "OpenAI"  # "Stream Cancellation": supported, billing stops at the cancel
        sw = await Swarm(config(tmp_path, nats_server, fo)).start()
        try:
            await approve(sw.bus, 2, max_tokens=MAX_TOKENS)
            await fo.wait_open(2, 15)
            await until(lambda: min(r["tokens_sent"] for r in fo.requests) >= 5, 10, "some output")
            await sw.engine.controls.handle("cancel", {"all": True})
            led = await sw.settled(fo)
        finally:
            await sw.stop()
        report("cancel --all, a provider that stops billing", sw, fo, led, 0.25)
        assert all(g["cancelled"] and g["total_cost"] < full_cost() for g in fo.generations.values())
        assert fo.billed == pytest.approx(sw.recorded(), abs=1e-9) and led["spent"] == pytest.approx(fo.billed)


async def test_the_engine_stopped_mid_call_is_reconciled_after_its_restart(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.generation_lag = 0.5
        cfg = config(tmp_path, nats_server, fo)
        sw = await Swarm(cfg).start()
        d = await approve(sw.bus, 2, max_tokens=MAX_TOKENS)
        await fo.wait_open(2, 15)
        await until(lambda: min(r["tokens_sent"] for r in fo.requests) >= 3, 10, "some output")
        await sw.stop()  # mid-call: the streams are cut, the jobs handed back
        await until(lambda: fo.open == 0, 5, "the fake saw the streams closed")
        assert len(fo.generations) == 2 and fo.billed == pytest.approx(2 * full_cost())
        assert sw.recorded() == 0.0  # nothing known yet: the attempts' records wait on the bus
        env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
        st = await asyncio.to_thread(run_cli, ["status", "--json"], env)
        assert st.returncode == 0, st.stderr
        spend = json.loads(st.stdout)["spend"]
        assert spend["reconciling"] == 2 and spend["reconciling_usd"] == pytest.approx(2 * 0.04008, rel=0.01)
        text = await asyncio.to_thread(run_cli, ["status"], env)
        assert "reconciling: 2 attempt(s) awaiting their cost from OpenRouter" in text.stdout
        sw2 = await Swarm(cfg).start()
        try:
            await until(
                lambda: all(job_id(d.id, i) in sw2.engine.state.results for i in range(2)),
                30,
                "the redelivered jobs' results",
            )
            led = await sw2.settled(fo)
        finally:
            await sw2.stop()
        report("engine stopped mid-call, restarted", sw2, fo, led, 0.25)
        assert len(fo.generations) == 4 and fo.billed == pytest.approx(4 * full_cost())
        assert fo.billed == pytest.approx(sw2.recorded(), abs=1e-9) and led["spent"] == pytest.approx(fo.billed)
        assert sw2.reconciler.counts["adopted"] == 2
        assert all(r.state == "done" for r in sw2.engine.state.results.values())


async def test_a_pool_task_killed_mid_call_is_reconciled(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        cfg = config(tmp_path, nats_server, fo, swarm__ack_wait_s=3)
        sw = await Swarm(cfg).start()
        try:
            d = await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            await fo.wait_open(1, 15)
            await until(lambda: fo.requests[0]["tokens_sent"] >= 3, 10, "some output")
            run = next(iter(sw.pool.runs.values()))
            assert run.task is not None
            run.task.cancel()  # the job's task dies mid-call: no result, no ack, no nak
            await until(lambda: job_id(d.id, 0) in sw.engine.state.results, 30, "the redelivered result")
            led = await sw.settled(fo)
        finally:
            await sw.stop()
        report("pool task killed mid-call", sw, fo, led, 0.25)
        assert len(fo.generations) == 2 and fo.billed == pytest.approx(2 * full_cost())
        assert fo.billed == pytest.approx(sw.recorded(), abs=1e-9) and led["spent"] == pytest.approx(fo.billed)


async def test_a_generation_endpoint_that_never_answers_costs_the_worst_case_marked_estimated(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.generation_lag = float("inf")
        sw = await Swarm(config(tmp_path, nats_server, fo, openrouter__reconcile_max_s=2.0)).start()
        try:
            await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            await fo.wait_open(1, 15)
            await until(lambda: fo.requests[0]["tokens_sent"] >= 3, 10, "some output")
            await sw.engine.controls.handle("cancel", {"all": True})
            await until(lambda: sw.reconciler.info()["pending"] == 1, 5, "pending")
            held = sw.guard.info()
            reserved = (await sw.ledger())["reserved"]
            await until(lambda: sw.recorded() > 0, 15, "the worst case charged")
            # the SpendEntry goes first, then the ledger settle (the reservation holds the worst case until then)
            led = await sw.ledger()
            for _ in range(100):
                if not led["reserved"]:
                    break
                await asyncio.sleep(0.05)
                led = await sw.ledger()
        finally:
            await sw.stop()
        report("generation endpoint never answers", sw, fo, led, 0.25)
        entry = next(iter(sw.engine.state.spend_entries.values()))
        ((att, res),) = reserved.items()  # the attempt's own reservation, held while it waited
        worst = res["usd"]
        assert att == entry.id and res["rc"] and worst >= full_cost()
        assert held["reconciling"] == 1 and held["reconciling_usd"] == pytest.approx(worst)
        assert entry.estimated and entry.cost_usd == pytest.approx(worst)
        assert sw.recorded() >= fo.billed and led["spent"] == pytest.approx(worst) and led["reserved"] == {}
        assert sw.recorded() <= 0.25


async def test_cancels_stalls_and_a_stop_at_once_are_recorded_as_billed_under_the_ceiling(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.generation_lag = 0.3
        calls = {"n": 0}

        def answer(body: dict[str, Any]) -> Answer:
            calls["n"] += 1
            if calls["n"] <= 2:  # the first two streams stall: killed as stalled, bought again
                return Answer(tokens=TOKENS, tps=25, cost=full_cost(), stall_after=4, stall_s=30)
            return Answer(tokens=TOKENS, tps=25, cost=full_cost())

        fo.default = answer
        cfg = config(tmp_path, nats_server, fo, swarm__scale=5, swarm__first_token_timeout_s=0.8, swarm__max_retries=3)
        sw = await Swarm(cfg).start()
        d = await approve(sw.bus, 3, max_tokens=MAX_TOKENS)
        await fo.wait_open(3, 15)  # the first two of these stall
        b = await approve(sw.bus, 2, max_tokens=MAX_TOKENS)
        await fo.wait_open(5, 15)
        await until(lambda: sum(r["tokens_sent"] >= 4 for r in fo.requests) >= 5, 10, "output")
        await sw.engine.controls.handle("cancel", {"decision": b.id})
        await until(lambda: len(fo.requests) >= 7, 10, "the stalled ones bought again")
        await until(
            lambda: sum(r["t_end"] is None and r["tokens_sent"] >= 2 for r in fo.requests) >= 1, 10, "a retry streaming"
        )
        await sw.stop()  # and the engine stopped in the middle of it all
        sw2 = await Swarm(cfg).start()
        try:

            def ended_or_held() -> bool:  # the ceiling holds back what no longer fits after the real costs
                ws = [w for w in sw2.engine.state.workers.values() if w.decision_id in (d.id, b.id)]
                return len(ws) == 5 and all(w.state in ("done", "failed", "cancelled", "over_budget") for w in ws)

            await until(ended_or_held, 40, "every job ended or held by the ceiling")
            led = await sw2.settled(fo, timeout=30)
            states = sorted(w.state for w in sw2.engine.state.workers.values())
        finally:
            await sw2.stop()
        report(f"2 cancels + 2 stalls + engine stop, 5 workers, google; workers {states}", sw2, fo, led, 0.25)
        assert fo.billed == pytest.approx(sw2.recorded(), abs=1e-9) and led["spent"] == pytest.approx(fo.billed)
        assert fo.billed <= 0.25 and led["reserved"] == {}
        assert sum(g["cancelled"] for g in fo.generations.values()) >= 4  # 2 cancels, 2 stalls (+ the stop)

"""The spend guard against a real nats-server and the fake OpenRouter: ceilings, settling, prices, credit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import ChatMessage, ControlEvent, Job, SpendEntry
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import Controls
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.credit import CREDIT_HOLD_S
from swarm_tui.engine.guards.demo_prices import DemoPrices
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.guards.tokens import prompt_tokens_bound
from swarm_tui.engine.info import usable
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import guard_for

MODEL = "openrouter/google/gemini-2.5-flash-lite"  # fake prices: 1e-7 prompt, 4e-7 completion a token
P_PROMPT, P_COMPLETION = 1e-7, 4e-7
KEY = "sk-or-v1-test-secret-0123456789"


def job(i: int, *, decision: str = "d-1", model: str = MODEL, max_tokens: int = 800, chars: int = 300) -> Job:
    return Job(
        id=f"{decision}-j{i}",
        worker_id=f"{decision}-w{i}",
        decision_id=decision,
        task_id="t-1",
        role="research",
        model=model,
        max_tokens=max_tokens,
        messages=[ChatMessage(role="user", content="x" * chars)],
        created_at=time.time(),
    )


def worst(j: Job) -> float:
    return prompt_tokens_bound(len(j.messages[0].content), 1) * P_PROMPT + j.max_tokens * P_COMPLETION


async def connect(cfg: Config) -> Bus:
    return await Bus(cfg).connect()


async def call_fake(fo: FakeOpenRouter, j: Job) -> dict[str, Any]:
    """One non-streaming call, as a worker makes it: returns the usage block."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fo.base}/chat/completions",
            json={
                "model": j.model.removeprefix("openrouter/"),
                "max_tokens": j.max_tokens,
                "messages": [m.model_dump() for m in j.messages],
            },
        ) as resp,
    ):
        body = await resp.json()
    usage: dict[str, Any] = body["usage"]
    return usage


def the_guard(engine: Engine) -> SpendGuard:
    g = engine.get(SpendGuard)
    assert g is not None
    return g


async def ledger(bus: Bus, key: str) -> dict[str, Any]:
    kv = await bus.kv(S.KV_BUDGET)
    doc: dict[str, Any] = json.loads((await kv.get(key)).value or b"")
    return doc


def cfg_with(tmp_path: Path, srv: EmbeddedServer, fo: FakeOpenRouter, **extra: str) -> Config:
    return make_config(tmp_path, srv.url, OPENROUTER_API_BASE=fo.base, **extra)


async def test_fifty_concurrent_jobs_never_pass_the_ceiling(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=30, cost=0.0002)  # the known real cost of every call
        w = worst(job(0))
        ceiling = round(w * 10.5, 8)  # about 10 worst cases fit
        cfg = cfg_with(tmp_path, nats_server, fo, SWARM_BUDGET_USD=str(ceiling))
        bus_a, bus_b = await connect(cfg), await connect(cfg)  # two processes' views of one ledger
        a, b = await guard_for(cfg, bus_a), await guard_for(cfg, bus_b)
        assert a.prices.price_source().startswith("openrouter list")
        assert a.worst_case(job(0)) == pytest.approx(w)
        jobs = [job(i) for i in range(50)]

        # the first wave: 50 reservations at once, split over the two guards
        res = await asyncio.gather(*[(a if i % 2 else b).reserve(j) for i, j in enumerate(jobs)])
        ok = [j for j, r in zip(jobs, res, strict=True) if r.ok]
        assert len(ok) == 10
        refused = [r for r in res if not r.ok]
        assert all(r.reason.startswith("over budget: ") and "daily ceiling" in r.reason for r in refused)
        doc = await ledger(bus_a, a.day_key())
        assert len(doc["reserved"]) == 10 and doc["spent"] == 0
        assert sum(r["usd"] for r in doc["reserved"].values()) <= ceiling

        # the pool's loop: wait while over budget, then call, then settle; with live interleaving
        done: list[str] = []
        max_seen = 0.0

        async def worker(i: int, j: Job) -> None:
            nonlocal max_seen
            g = a if i % 2 else b
            while True:  # the job waits as "over budget" and tries again, as the pool does
                if (await g.reserve(j)).ok:
                    break
                await asyncio.sleep(0.02)
            usage = await call_fake(fo, j)
            await g.settle(j, usage["cost"], estimated=False)
            done.append(j.id)
            max_seen = max(max_seen, (await ledger(bus_a, a.day_key()))["spent"])

        tasks = [asyncio.create_task(worker(i, j)) for i, j in enumerate(jobs)]
        # real cost 0.0002 < worst case: more jobs fit as spend settles, until the ceiling stops them
        for _ in range(200):
            await asyncio.sleep(0.05)
            n = len(done)
            await asyncio.sleep(0.15)
            if len(done) == n and n >= 10:
                break
        stalled = len(done)
        assert 10 <= stalled < 50
        doc = await ledger(bus_a, a.day_key())
        assert doc["spent"] <= ceiling + 1e-12 and max_seen <= ceiling + 1e-12
        assert doc["spent"] == pytest.approx(stalled * 0.0002)
        assert len(fo.chats()) == stalled  # nobody called the provider without a reservation
        assert stalled == int(ceiling // 0.0002) or doc["spent"] + w > ceiling

        # raising the ceiling lets the rest go
        state = SwarmState()
        await Controls(bus_a, state, max_scale=50).do_ceiling({"usd": 1.0})
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        doc = await ledger(bus_a, a.day_key())
        assert len(done) == 50 and len(set(done)) == 50
        assert doc["spent"] == pytest.approx(50 * 0.0002) and doc["reserved"] == {}
        assert a.ceiling() == 1.0 and b.ceiling() == 1.0
        await a.refresh()  # the cached view (refreshed on a timer) catches up with b's writes
        assert a.remaining_usd() == pytest.approx(1.0 - 50 * 0.0002)
        for g in (a, b):
            await g.stop()
        await bus_a.close()
        await bus_b.close()


async def test_settle_once_release_and_redelivery(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        cfg = cfg_with(tmp_path, nats_server, fo)
        bus = await connect(cfg)
        g = await guard_for(cfg, bus)
        j1, j2 = job(1), job(2)
        r1 = await g.reserve(j1)
        again = await g.reserve(j1)  # a redelivered job re-uses its reservation
        assert r1.ok and again.ok and again.amount_usd == r1.amount_usd
        assert len((await ledger(bus, g.day_key()))["reserved"]) == 1
        await g.settle(j1, 0.001, estimated=False)
        await g.settle(j1, 0.001, estimated=False)  # a second settle of the same job counts nothing
        other = await guard_for(cfg, bus)  # another process settling the same job: still once
        await other.settle(j1, 0.001, estimated=False)
        doc = await ledger(bus, g.day_key())
        assert doc["spent"] == pytest.approx(0.001) and doc["reserved"] == {}
        refused = await g.reserve(j1)
        assert not refused.ok and refused.reason.startswith("already settled")
        assert (await g.reserve(j2)).ok
        await g.release(j2)
        doc = await ledger(bus, g.day_key())
        assert doc["reserved"] == {} and doc["spent"] == pytest.approx(0.001)
        local = job(3, model="ollama_chat/gemma2:2b")
        r = await g.reserve(local)
        assert r.ok and r.amount_usd == 0.0
        await g.stop()
        await other.stop()
        await bus.close()


async def test_stale_reservations_are_dropped(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        now, mono = [time.time()], [0.0]
        w = worst(job(0))
        cfg = cfg_with(tmp_path, nats_server, fo, SWARM_BUDGET_USD=str(w * 1.5))
        bus = await connect(cfg)
        dead = await guard_for(cfg, bus, clock=lambda: now[0])  # a worker that dies holding a reservation
        alive = await guard_for(cfg, bus, clock=lambda: now[0], monotonic=lambda: mono[0])
        assert (await dead.reserve(job(1))).ok
        assert not (await alive.reserve(job(2))).ok  # seen here for the first time
        now[0] += alive.stale_s + 1
        assert not (await alive.reserve(job(2))).ok  # its `at` looks old: not a reason (that is another clock)
        mono[0] += alive.stale_s + 1
        assert (await alive.reserve(job(2))).ok  # seen unchanged that long on this process's own clock
        doc = await ledger(bus, alive.day_key())
        assert list(doc["reserved"]) == ["d-1-j2"]
        await dead.stop()
        await alive.stop()
        await bus.close()


async def test_per_decision_ceiling(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        w = worst(job(0))
        cfg = cfg_with(tmp_path, nats_server, fo).replace(budget__per_decision_usd=w * 2.5)
        bus = await connect(cfg)
        g = await guard_for(cfg, bus)
        res = await asyncio.gather(*[g.reserve(job(i, decision="d-a")) for i in range(5)])
        assert sum(r.ok for r in res) == 2
        assert any("ceiling of decision d-a" in r.reason for r in res if not r.ok)
        assert sum(r.ok for r in await asyncio.gather(*[g.reserve(job(i, decision="d-b")) for i in range(5)])) == 2
        day = await ledger(bus, g.day_key())
        assert len(day["reserved"]) == 4  # refused decision reservations were taken back from the day too
        await g.stop()
        await bus.close()


async def test_spend_totals_survive_a_restart(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """Spend entries in the log (with a missing cost estimated) give the same totals to a fresh engine."""
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=40, cost=0.0003), Answer(tokens=25, omit_cost=True, prompt_tokens=50))
        cfg = cfg_with(tmp_path, nats_server, fo)
        bus = await connect(cfg)
        state = SwarmState()
        await bus.replay(lambda s, ev, seq: state.apply(ev, seq))
        g = await guard_for(cfg, bus, state)
        entries = []
        for i, j in enumerate([job(1), job(2, model="openrouter/qwen/qwen3-coder", decision="d-2")]):
            assert (await g.reserve(j)).ok
            usage = await call_fake(fo, j)
            estimated = "cost" not in usage
            cost = (
                g.cost_of(j.model, usage["prompt_tokens"], usage["completion_tokens"]) if estimated else usage["cost"]
            )
            if i == 1:
                assert estimated and cost == pytest.approx(50 * 2e-7 + 25 * 8e-7)  # qwen3-coder's list price
            await g.settle(j, cost, estimated=estimated)
            e = SpendEntry(
                id=j.id,
                model=j.model,
                worker_id=j.worker_id,
                decision_id=j.decision_id,
                task_id=j.task_id,
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                cost_usd=cost,
                estimated=estimated,
                at=time.time(),
            )
            await bus.publish_event(e, msg_id=f"spend-{j.id}")
            entries.append(e)
        await bus.replay(lambda s, ev, seq: state.apply(ev, seq), start_seq=state.last_seq + 1)
        before = g.info()
        total = 0.0003 + 50 * 2e-7 + 25 * 8e-7
        assert before["today_usd"] == pytest.approx(total) and before["ledger_spent_usd"] == pytest.approx(total)
        assert before["estimated_usd"] == pytest.approx(50 * 2e-7 + 25 * 8e-7)
        assert set(before["by_decision"]) == {"d-1", "d-2"}
        await g.stop()
        await bus.close()

        # "restart": a new connection, a state rebuilt from the log, a new guard
        bus2 = await connect(cfg)
        state2 = SwarmState()
        await bus2.replay(lambda s, ev, seq: state2.apply(ev, seq))
        g2 = await guard_for(cfg, bus2, state2)
        after = g2.info()
        for k in ("today_usd", "estimated_usd", "by_model", "by_decision", "ledger_spent_usd"):
            assert after[k] == before[k], k
        await g2.stop()

        # a lost ledger is raised back to what the log says was spent
        kv = await bus2.kv(S.KV_BUDGET)
        await kv.purge(g2.day_key())
        g3 = await guard_for(cfg, bus2, state2)
        assert g3.info()["ledger_spent_usd"] == pytest.approx(total)
        await g3.stop()
        await bus2.close()


async def test_out_of_credit_stops_cloud_dispatch(
    tmp_path: Path, nats_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenRouter() as fo:
        now = [time.time()]
        cfg = cfg_with(tmp_path, nats_server, fo, OPENROUTER_API_KEY=KEY)
        bus = await connect(cfg)
        g = await guard_for(cfg, bus, clock=lambda: now[0], monotonic=lambda: now[0], credit_cooldown_s=300)
        await g.poll_key()
        assert g.cloud_blocked() is None and g.credits_left == 10.0
        fo.key = {"limit_remaining": 0, "usage": 10.0, "limit": 10.0}
        await g.poll_key()
        assert g.cloud_blocked() == "key limit reached: the key's limit_remaining is 0"
        r = await g.reserve(job(1))
        assert not r.ok and r.reason == "key limit reached: the key's limit_remaining is 0"
        assert (await g.reserve(job(2, model="ollama_chat/gemma2:2b"))).ok  # local work goes on
        info = g.info()
        assert info["out_of_credit"] is True and info["credits_left_usd"] == 0
        fo.key = {"limit_remaining": 4.5, "usage": 5.5, "limit": 10.0}
        await g.poll_key()
        assert g.cloud_blocked() is None and (await g.reserve(job(3))).ok

        # a 402 from a call: blocked until a poll at least CREDIT_HOLD_S later shows credit (the recheck the 402
        # asks for at once cannot end it: the key's limit is not the account's balance)
        g.mark_out_of_credit("402 Insufficient credits")
        assert str(g.cloud_blocked()).startswith("out of credit: 402")
        assert not (await g.reserve(job(4))).ok
        now[0] += 1
        await g.poll_key()
        assert str(g.cloud_blocked()).startswith("out of credit: 402")
        now[0] += CREDIT_HOLD_S
        await g.poll_key()
        assert g.cloud_blocked() is None
        # with no limit on the key (null), a 402 holds for the cool-down
        fo.key = {"limit_remaining": None, "usage": 5.5, "limit": None}
        g.mark_out_of_credit("402")
        now[0] += 1
        await g.poll_key()
        assert g.cloud_blocked() is not None and g.credits_left is None
        now[0] += 300
        assert g.cloud_blocked() is None
        await g.stop()
        await bus.close()
    assert KEY not in caplog.text and KEY not in json.dumps(info)


async def test_price_book_sources(tmp_path: Path) -> None:
    async with FakeOpenRouter() as fo:
        now = [1_000_000.0]
        cfg = make_config(tmp_path, OPENROUTER_API_BASE=fo.base)
        pb = PriceBook(cfg.openrouter, cfg.paths, clock=lambda: now[0])
        assert pb.price_source() == "fallback (no price list)"
        assert pb.price(MODEL) == (2e-6, 8e-6)  # the configured fallback, per token
        await pb.load()
        assert pb.price_source() == "openrouter list (age 0s)"
        assert pb.price(MODEL) == (P_PROMPT, P_COMPLETION)
        assert pb.price("ollama_chat/gemma2:2b") == (0.0, 0.0)
        assert pb.cost(MODEL, 1000, 500) == pytest.approx(1000 * P_PROMPT + 500 * P_COMPLETION)
        assert pb.path.exists()
        port = fo.port
    # the list is gone now (the fake stopped): a new process reads the cache
    now[0] += 3 * 3600
    cfg_dead = make_config(tmp_path, OPENROUTER_API_BASE=f"http://127.0.0.1:{port}/api/v1")
    pb2 = PriceBook(cfg_dead.openrouter, cfg_dead.paths, clock=lambda: now[0])
    await pb2.load()
    assert pb2.price_source() == "cache (age 3h)" and pb2.price(MODEL) == (P_PROMPT, P_COMPLETION)
    now[0] += 2 * 86400
    pb3 = PriceBook(cfg_dead.openrouter, cfg_dead.paths, clock=lambda: now[0])
    await pb3.load()  # stale: tries to fetch, fails, keeps the stale cache
    assert pb3.price_source() == "cache (age 2d, stale)" and pb3.last_error
    assert pb3.price("openrouter/unknown/model") == (2e-6, 8e-6)
    assert "openrouter/unknown/model" in pb3.info()["fallback_models"]
    demo_cfg = make_config(tmp_path)
    demo = DemoPrices(demo_cfg.demo)
    assert demo.price(MODEL) == pytest.approx((0.4e-6, 0.4e-6)) and demo.price_source().startswith("demo price")


def test_budget_command_and_status_json(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, SWARM_BUDGET_USD="0.5")
    st = json.loads(run_cli(["status", "--json"], env).stdout)
    assert st["spend"]["ceiling_usd"] == 0.5
    res = run_cli(["budget", "2.5"], env)
    assert res.returncode == 0, res.stderr
    assert "2.50" in res.stdout
    bad = run_cli(["budget", "lots"], env)
    assert bad.returncode == 2 and "USD" in bad.stderr and "Traceback" not in bad.stderr
    st = json.loads(run_cli(["status", "--json"], env).stdout)
    sp, ram = st["spend"], st["ram"]
    assert sp["ceiling_usd"] == 2.5 and st["control"]["ceiling_usd"] == 2.5
    for k in (
        "today_usd",
        "session_usd",
        "reserved_usd",
        "remaining_usd",
        "estimated_usd",
        "by_model",
        "by_decision",
        "price_source",
        "price_age_s",
        "credits_left_usd",
        "out_of_credit",
    ):
        assert k in sp, k
    for k in ("total_mb", "available_mb", "headroom_mb", "low", "own_rss_mb", "children_rss_mb", "local_models"):
        assert k in ram, k
    assert ram["total_mb"] > 0


async def test_engine_reports_guards_in_status(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    from swarm_tui.cli.status import status_data
    from swarm_tui.engine.assemble import assemble

    async with FakeOpenRouter() as fo:
        cfg = cfg_with(tmp_path, nats_server, fo, OPENROUTER_API_KEY=KEY, SWARM_BUDGET_USD="3")
        bus = await connect(cfg)
        engine = assemble(cfg, bus, pool=False, conductor=False)
        assert [c.name for c in engine.components][:2] == ["spend", "ram"]
        await engine.start()
        try:
            spend = engine.get(SpendGuard)
            assert spend is not None
            await Controls(bus, SwarmState(), max_scale=50).do_ceiling({"usd": 4.0})
            for _ in range(100):  # the ControlEvent reaches the guard through the engine's log follower
                if spend.ceiling() == 4.0:
                    break
                await asyncio.sleep(0.02)
            await spend.poll_key()
            await spend.prices.refresh()
            data = await status_data(cfg)
        finally:
            await engine.stop()
    sp, ram = usable(data["spend"]), usable(data["ram"])
    assert sp is not None and sp["ceiling_usd"] == 4.0 and sp["credits_left_usd"] == 10.0
    assert sp["price_source"].startswith("openrouter list") and sp["remaining_usd"] == 4.0
    assert ram is not None and ram["total_mb"] > 0 and "history" in ram
    assert KEY not in json.dumps(data)


async def test_old_ledgers_are_purged(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        now = [time.time() - 10 * 86400]
        cfg = cfg_with(tmp_path, nats_server, fo).replace(budget__per_decision_usd=1.0)
        bus = await connect(cfg)
        # the guard's own refresh loop housekeeps when the clock jumps: kept asleep here so the purge counted is ours
        g = await guard_for(cfg, bus, clock=lambda: now[0], refresh_s=3600)
        old_day = time.strftime("day-%Y-%m-%d", time.gmtime(now[0]))  # as an earlier version named its keys
        await g.settle(job(1, decision="d-old"), 0.001, estimated=False)
        kv = await bus.kv(S.KV_BUDGET)
        await kv.put(old_day, json.dumps({"spent": 0.001, "reserved": {}, "settled": ["d-old-j1"]}).encode())
        now[0] = time.time()
        assert (await g.reserve(job(2, decision="d-new"))).ok
        assert await g.housekeep() == 2
        keys = set(await kv.keys())
        assert keys == {g.day_key(), "dec-d-new"} and old_day not in keys
        await g.stop()
        await bus.close()


def test_ceiling_event_is_the_latest_in_the_log(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, SWARM_BUDGET_USD="1")
    g = SpendGuard(SpendSettings.of(cfg), Bus(cfg), None, PriceBook(cfg.openrouter, cfg.paths))
    assert g.ceiling() == 1.0
    g.on_event(ControlEvent(what="ceiling", value=3.0, at=200.0))
    # the log is the order of what was set: a later entry wins whatever its publisher's clock said (a date is
    # the publisher's word; a date ahead must not outrank what is set after it)
    g.on_event(ControlEvent(what="ceiling", value=2.0, at=100.0))
    assert g.ceiling() == 2.0
    g._kv_ceiling = (5.0, 300.0)
    assert g.ceiling() == 5.0


async def test_pool_end_to_end_under_the_ceiling(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """The real pool: 50 jobs at once under a ceiling for ~10; the rest wait over budget until it is raised."""
    from swarm_tui.engine.assemble import assemble

    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=30, cost=0.0002)
        w = worst(job(0))
        ceiling = round(w * 10.5, 8)
        cfg = cfg_with(
            tmp_path, nats_server, fo, OPENROUTER_API_KEY=KEY, SWARM_BUDGET_USD=str(ceiling), SWARM_SCALE="50"
        )
        bus = await connect(cfg)
        engine = assemble(cfg, bus, conductor=False)
        await engine.start()
        state = engine.state
        try:
            jobs = [job(i) for i in range(50)]
            for j in jobs:
                await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
            last, same_since = -1, time.monotonic()
            for _ in range(300):  # until no job has finished for 1.5 s
                await asyncio.sleep(0.05)
                n = len(state.results)
                if n != last:
                    last, same_since = n, time.monotonic()
                elif n >= 10 and time.monotonic() - same_since > 1.5:
                    break
            over = [x for x in state.workers.values() if x.state == "over_budget"]
            assert 10 <= last < 50 and len(over) == 50 - last
            assert all(x.reason.startswith("over budget: ") for x in over)
            assert state.today_spend() <= ceiling and len(fo.chats()) == last
            assert (await ledger(bus, the_guard(engine).day_key()))["spent"] <= ceiling
            await engine.controls.handle("ceiling", {"usd": 1.0})
            for _ in range(300):
                if len(state.results) == 50 and state.spend.entries == 50:
                    break
                await asyncio.sleep(0.05)
            assert len(state.results) == 50 and all(r.state == "done" for r in state.results.values())
            assert state.today_spend() == pytest.approx(50 * 0.0002) and len(fo.chats()) == 50
            for _ in range(100):  # the pool settles right after it stores the result and spend entry
                doc = await ledger(bus, the_guard(engine).day_key())
                if not doc["reserved"]:
                    break
                await asyncio.sleep(0.05)
            assert doc["spent"] == pytest.approx(50 * 0.0002) and doc["reserved"] == {}
            await the_guard(engine).refresh()
            before = the_guard(engine).info()
        finally:
            await engine.stop()
        bus2 = await connect(cfg)
        state2 = SwarmState()
        await bus2.replay(lambda s, ev, seq: state2.apply(ev, seq))
        g = await guard_for(cfg, bus2, state2)
        after = g.info()
        for k in ("today_usd", "by_model", "by_decision", "ledger_spent_usd", "ceiling_usd"):
            assert after[k] == before[k], k
        await g.stop()
        await bus2.close()


async def test_status_without_engine_shows_ledger_reservations(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """A standalone worker's reservation shows in `status` even with no engine running."""
    from swarm_tui.cli.status import status_data

    async with FakeOpenRouter() as fo:
        cfg = cfg_with(tmp_path, nats_server, fo, SWARM_BUDGET_USD="0.5")
        bus = await connect(cfg)
        g = await guard_for(cfg, bus)
        r = await g.reserve(job(1))
        await g.settle(job(2), 0.01, estimated=False)
        data = await status_data(cfg)
        await g.stop()
        await bus.close()
    sp = usable(data["spend"])
    assert sp is not None and data["engine"] is None and sp["reservations"] == 1
    assert sp["reserved_usd"] == pytest.approx(r.amount_usd, abs=1e-6) and sp["ledger_spent_usd"] == 0.01
    assert sp["remaining_usd"] == pytest.approx(0.5 - 0.01 - r.amount_usd, abs=1e-6)


async def test_ledger_unreachable_means_wait(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        cfg = cfg_with(tmp_path, nats_server, fo)
        bus = await connect(cfg)
        g = await guard_for(cfg, bus)
        await g.stop()
        await bus.close()
        r = await asyncio.wait_for(g.reserve(job(1)), 10)
        assert not r.ok and "budget ledger cannot be reached" in r.reason

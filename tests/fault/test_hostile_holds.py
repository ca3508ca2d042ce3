"""Whose money a call holds, and under whose ceiling: one job run twice, a hold gone before its call, a worker with
no engine (the adversary's two breaks are in test_adversary.py; these are the cases around them).

Each test failed on the code before holds were their runs' own and workers took the engine's ceiling (e9f077b).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.cli.doctor import Check, check_nats
from swarm_tui.cli.status import status_data
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.ceiling_kv import NO_CEILING
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.info import usable
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from tests.fault.test_adversary import BARE, HeldSpend, Link, recorded_and_ledger
from tests.support.env import ROOT, base_env, make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import a_job, guard_for
from tests.support.polling import until
from tests.support.swarm_kit import approve, make_job, swarm_config

pytestmark = pytest.mark.fault


async def engine_with(cfg: Config, spend: SpendGuard | None = None) -> tuple[Bus, Engine, SpendGuard]:
    """An engine (its spend guard, which publishes its ceiling, and the controller) on a connection of its own."""
    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    if spend is None:
        prices = PriceBook(cfg.openrouter, cfg.paths)
        await prices.load()
        spend = SpendGuard(SpendSettings.of(cfg), bus, engine.state, prices)
    engine.add(spend)
    engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=spend, host="engine"))
    await engine.start()
    return bus, engine, spend


# ---------------------------------------------------------------------------------------------- one job, two runs
async def test_two_runs_of_a_redelivered_job_that_both_fit_each_call_with_a_hold_of_their_own(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The partition of test_adversary's case, under a ceiling both runs fit under ($1.00). Before: B refreshed A's
    hold as its own and moved it to its attempt; A's call then held $0.00 (two calls, $0.30 held). Now each run
    holds its own $0.30: two calls, both held, each recorded."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")  # worst case $0.30
        fo.default = Answer(tokens=5, tps=5, cost=0.29)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__ack_wait_s=3.0)
        link = await Link(int(nats_server.url.rsplit(":", 1)[1])).start()
        acfg = cfg.replace(nats__url=f"nats://127.0.0.1:{link.port}")
        bus, engine, _ = await engine_with(cfg)
        abus, bbus = await Bus(acfg).connect(), await Bus(cfg).connect()
        aspend, bspend = (
            HeldSpend(SpendSettings.of(acfg), abus, None, PriceBook(acfg.openrouter, acfg.paths)),
            HeldSpend(SpendSettings.of(cfg), bbus, None, PriceBook(cfg.openrouter, cfg.paths)),
        )
        for sp in (aspend, bspend):
            await sp.prices.load()
            await sp.start()
        apool, bpool = (
            build_pool(acfg, abus, spend=aspend, host="host-a"),
            build_pool(cfg, bbus, spend=bspend, host="host-b"),
        )
        aspend.after_reserve = lambda: link.cut(6.0)
        await apool.start()
        try:
            await approve(bus, 1, max_tokens=100)
            await until(lambda: not link.open.is_set(), 15, "host A to reserve J")
            await bpool.start()
            await until(lambda: len(fo.chats()) >= 2 and not apool.runs and not bpool.runs, 40, "both runs")
            await asyncio.sleep(3)
            held = aspend.held + bspend.held
            calls, billed = len(fo.chats()), round(fo.billed, 9)
        finally:
            for pool in (bpool, apool):
                await pool.stop()
            for sp in (aspend, bspend):
                await sp.stop()
            await engine.stop()
            for b in (abus, bbus, bus):
                await b.close()
            await link.stop()
        recorded, ledger = await recorded_and_ledger(cfg)
    print(f"\ntwo runs: {calls} calls, held {held}; billed ${billed:.2f} = recorded ${recorded:.2f} = ledger")
    assert calls == 2 and held == [0.3, 0.3], held
    assert recorded == ledger == billed <= cfg.budget.daily_usd
    # recorded = billed <= ceiling


class DroppingSpend(HeldSpend):
    """Its first attempt finds the job's hold gone, as when a process that saw it unchanged for the stale limit
    dropped it between the job's last reservation and its call."""

    dropped = False

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        if not self.dropped:
            self.dropped = True
            await drop_holds(self.bus, self.day_key(), job.id)
        return await super().begin_attempt(job, attempt_id, keys)


async def drop_holds(bus: Bus, key: str, job_id: str) -> None:
    kv = await bus.kv(S.KV_BUDGET)
    entry = await kv.get(key)
    doc = json.loads(entry.value or b"")
    doc["reserved"] = {k: v for k, v in doc["reserved"].items() if not k.startswith(job_id) or v.get("rc")}
    await kv.update(key, json.dumps(doc).encode(), last=entry.revision)


async def test_a_call_whose_hold_is_gone_when_it_starts_goes_back_to_its_gates(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: ``begin_attempt`` moved nothing ($0.00) and the call went ahead, holding nothing. Now no call starts:
    the attempt's record goes (nothing to reconcile, nothing charged), the job reserves again at its gates and
    calls holding its worst case."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")
        fo.default = Answer(tokens=5, cost=0.29)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=0.5)
        prices = PriceBook(cfg.openrouter, cfg.paths)
        await prices.load()
        bus = await Bus(cfg).connect()
        engine = Engine(cfg, bus)
        spend = engine.add(DroppingSpend(cfg, bus, engine.state, prices))
        engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=spend, host="engine"))
        pool = engine.add(build_pool(cfg, bus, spend=spend, host="engine"))
        await engine.start()
        try:
            await approve(bus, 1, max_tokens=100)
            await until(lambda: fo.chats() and not pool.runs, 30, "the job to end")
            await asyncio.sleep(1.5)
            held, calls, billed = list(spend.held), len(fo.chats()), round(fo.billed, 9)
            not_held = spend.counts["not_held"]
        finally:
            await engine.stop()
            await bus.close()
        recorded, ledger = await recorded_and_ledger(cfg)
    print(f"\nhold dropped before the call: held at each attempt {held}, {calls} call(s), billed ${billed:.2f}")
    assert not_held == 1 and held == [None, 0.3]
    assert calls == sum(1 for h in held if h is not None and h > 0), "a call started with nothing held"
    assert recorded == ledger == billed <= 0.5
    # recorded = billed <= ceiling


async def test_the_decision_ledger_keeps_each_run_s_hold_too(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """With ``budget.per_decision_usd`` ($0.65: two holds of $0.30, not three), three processes run one job. Each
    holds its own in the day's and the decision's ledger; the third is refused by the decision's ceiling and its
    day's hold taken back, the others' untouched; each run moves its own hold to its attempt, and one that holds
    nothing moves nothing. Before: the second and third refreshed the first's hold as their own (ok under any
    ceiling) and the first's attempt then moved nothing."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")
        cfg = swarm_config(
            make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=10.0, budget__per_decision_usd=0.65
        )
        bus = await Bus(cfg).connect()
        j = a_job(1, max_tokens=100)
        g1, g2, g3 = guards = [await guard_for(cfg, bus) for _ in range(3)]
        try:
            w = g1.worst_case(j)
            assert (await g1.reserve(j)).ok and (await g2.reserve(j)).ok
            third = await g3.reserve(j)
            assert (await g1.reserve(j)).ok  # its holder refreshes it, under any ceiling
            held = await ledgers(bus, g1, j)
            keys = g1.ledger_keys(j)
            moved = [await g.begin_attempt(j, f"{j.id}-a{i}", keys) for i, g in enumerate(guards, 1)]
            attempts = await ledgers(bus, g1, j)
            for aid in ("a1", "a2"):
                assert await g3.settle_attempt(f"{j.id}-{aid}", keys, 0.29, estimated=False)  # by whoever reconciles
            left = await ledgers(bus, g1, j)
            spent = (await read(bus, g1.day_key()))["spent"]
        finally:
            for g in guards:
                await g.stop()
            await bus.close()
    by = {g1._ledger.holder: "g1", g2._ledger.holder: "g2"}
    holds = [{k: by[r["by"]] for k, r in d.items()} for d in held]
    print(f"\nthree runs of one job: held (day, decision) {holds}; third: {third.reason!r}; moved {moved}")
    assert not third.ok and "ceiling of decision" in third.reason
    assert holds == [{j.id: "g1", f"{j.id}@{g2._ledger.holder}": "g2"}] * 2
    assert moved == [w, w, None]
    assert [set(d) for d in attempts] == [{f"{j.id}-a1", f"{j.id}-a2"}] * 2
    assert left == ({}, {}) and spent == pytest.approx(0.58) and w == pytest.approx(0.3)
    # recorded = billed <= ceiling: each run's call held, settled once


async def read(bus: Bus, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((await (await bus.kv(S.KV_BUDGET)).get(key)).value or b"")
    return doc


async def ledgers(bus: Bus, g: SpendGuard, j: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    return (await read(bus, g.day_key()))["reserved"], (await read(bus, g.dec_key(j.decision_id)))["reserved"]


# ---------------------------------------------------------------------------------------------- whose ceiling
async def test_a_worker_started_before_any_engine_waits_then_spends_under_the_engines_ceiling(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """A worker host with a default config ($1.00) and two queued jobs of $0.30 worst case, no engine yet. Before:
    both ran under the worker's own $1.00 (billed $0.58 where the engine says $0.50). Now they wait ("no ceiling
    from an engine yet") until the engine starts and publishes its $0.50: one runs, the other waits over budget."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")
        fo.default = Answer(tokens=5, cost=0.29)
        ecfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=0.5)
        wcfg = swarm_config(make_config, tmp_path / "worker-host", nats_server.url, fo.base)  # $1.00
        wbus = await Bus(wcfg).connect()
        wprices = PriceBook(wcfg.openrouter, wcfg.paths)
        await wprices.load()
        wspend = SpendGuard(SpendSettings.of(wcfg), wbus, None, wprices)  # as runner._worker builds it
        pool = build_pool(wcfg, wbus, spend=wspend, host="worker-host")
        await wspend.start()
        await pool.start()
        engine = None
        try:
            for i in range(2):
                job = make_job("d-early", i).model_copy(update={"model": "openrouter/" + BARE})
                await wbus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
            await until(
                lambda: len(pool.runs) == 2 and all(r.reason.startswith("no ceiling") for r in pool.runs.values()),
                15,
                "both jobs waiting for an engine's ceiling",
            )
            waited = sorted({(r.state, r.reason) for r in pool.runs.values()})
            before = len(fo.chats())
            bus, engine, spend = await engine_with(ecfg)
            await until(
                lambda: fo.chats() and [r.state for r in pool.runs.values()] == ["over_budget"],
                20,
                "one job run, the other over budget",
            )
            await asyncio.sleep(1.5)
            billed, ceiling = round(fo.billed, 9), spend.ceiling()
        finally:
            await pool.stop()
            await wspend.stop()
            if engine is not None:
                await engine.stop()
                await bus.close()
            await wbus.close()
        recorded, ledger = await recorded_and_ledger(ecfg)
    print(f"\nbefore the engine: {before} calls, {waited}; after: billed ${billed:.2f} under ${ceiling:.2f}")
    assert before == 0 and waited == [("waiting", NO_CEILING)]
    assert recorded == ledger == billed == 0.29 and billed <= ceiling == 0.5
    # recorded = billed <= ceiling


async def test_status_and_doctor_on_a_worker_host_show_the_engines_ceiling(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """``status`` (no engine running) and ``doctor`` with a worker host's default config ($1.00). Before: both
    said nothing of the engine's $0.50 (status: "of $1.00", the ceiling the worker then spent under). Now they
    show the engine's, follow an engine restarted with another, and an override set live."""
    ecfg = make_config(tmp_path, nats_server.url, SWARM_BUDGET_USD="0.5")
    wcfg = make_config(tmp_path / "worker-host", nats_server.url)

    async def shown() -> tuple[float, str]:
        notes: list[Check] = []
        await check_nats(wcfg, notes)
        spend = usable((await status_data(wcfg))["spend"])
        assert spend is not None
        ceiling = [n.line() for n in notes if n.line().split()[1:2] == ["ceiling"]]  # doctor's other notes: the log
        return float(spend["ceiling_usd"]), " | ".join(ceiling)

    nothing = await shown()
    seen = []
    for usd in (0.5, 0.3):  # the engine, then the engine restarted with a new budget.daily_usd
        bus, engine, _ = await engine_with(ecfg.replace(budget__daily_usd=usd))
        await engine.stop()
        await bus.close()
        seen.append(await shown())
    wbus = await Bus(wcfg).connect()
    try:
        kv = await wbus.kv(S.KV_STATE)
        await kv.put("ceiling", json.dumps({"usd": 0.4, "at": time.time()}).encode())  # `swarm-tui budget 0.4`
        worker = SpendGuard(SpendSettings.of(wcfg), wbus, None, PriceBook(wcfg.openrouter, wcfg.paths))
        in_force = await worker.read_ceiling()
        override = (await shown())[1]
        banner = await worker_banner(base_env(tmp_path / "worker-host", SWARM_NATS_URL=nats_server.url))
    finally:
        await wbus.close()
    print(f"\nno engine yet: {nothing}\nafter each engine: {seen}\nwith an override: {override}\n{banner}")
    assert nothing[1] == (
        "warn ceiling     no engine has published its ceiling on this bus yet (this config says $1.00): "
        "a worker here waits until an engine starts"
    )
    assert [c for c, _ in seen] == [0.5, 0.3]
    assert seen[0][1] == (
        "ok   ceiling     $0.50 a day: the engine's budget.daily_usd, from the bus; this config's $1.00 applies only "
        "to an engine started here"
    )
    assert in_force == 0.4 and override == "ok   ceiling     $0.40 a day: the live override (`swarm-tui budget`)"
    assert "capacity 10, ceiling $0.40 a day" in banner, banner
    # nothing applied: what is shown is the ceiling a worker spends under


async def worker_banner(env: dict[str, str]) -> str:
    """The first line `swarm-tui worker` prints, the process stopped again."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm_tui", "worker", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)

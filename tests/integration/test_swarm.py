"""The swarm end to end on a real nats-server and the real litellm against a loopback fake OpenRouter."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, NoReturn, cast

import pytest

from swarm_tui.cli.status import format_status, status_data
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Result, SpendEntry, WorkerEvent, job_id, worker_id
from swarm_tui.engine.info import PoolInfo
from swarm_tui.engine.swarm.controller import Controller
from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import timed, until
from tests.support.swarm_kit import KEY, Chunks, FakeSpend, approve, build_engine, events, make_job, swarm_config


async def test_fifty_workers_stream_every_chunk_and_store_every_result(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=20, tps=40, cost=0.00002)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=50)
        bus = await Bus(cfg).connect()
        chunks = await Chunks().start(bus)
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            t0 = time.monotonic()
            d = await approve(bus, 50)
            await until(lambda: len(engine.state.results) == 50, 30, "50 results")
            took = time.monotonic() - t0
            await asyncio.sleep(0.2)  # the last chunks are core messages: let them arrive
        finally:
            await engine.stop()
        print(f"50 workers x 20 tokens at 40 tok/s: {took:.2f}s, max open streams {fo.max_open}")
        assert fo.max_open >= 45  # they really ran at the same time (alone each takes ~0.5 s)
        assert len(fo.requests) == 50
        assert all(r["auth"] for r in fo.requests)
        for i in range(50):
            r = engine.state.results[job_id(d.id, i)]
            assert r.state == "done", r.reason
            assert r.text == "".join(f"tok{k} " for k in range(20))
            assert chunks.text(worker_id(d.id, i)) == r.text
            assert 1 <= len(chunks.by_worker[worker_id(d.id, i)]) < 20  # coalesced, not one per token
            assert r.cost_usd == 0.00002 and not r.cost_estimated
            assert r.usage.completion_tokens == 20
        assert engine.state.spend.entries == 50
        assert abs(engine.state.spend.total - 50 * 0.00002) < 1e-9
        assert engine.state.tasks[d.task_ids[0]].state == "done"
        assert not engine.state.duplicate_results


async def test_cancel_one_a_decision_and_all_within_a_second(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=2000, tps=20)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=10)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            a = await approve(bus, 3)
            b = await approve(bus, 3)
            await fo.wait_open(6, 15)
            await until(lambda: sum(w.state == "running" for w in engine.state.workers.values()) == 6, 10, "running")
            await asyncio.sleep(0.3)  # some output first

            def closed(wid: str) -> bool:
                return engine.state.workers[wid].state == "cancelled"

            # one worker, through the CLI (the engine answers the control request)
            env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
            one = worker_id(a.id, 0)
            t0 = time.monotonic()
            proc = await asyncio.to_thread(run_cli, ["cancel", one], env)
            assert proc.returncode == 0, proc.stderr
            t_cli = time.monotonic() - t0
            await until(lambda: closed(one), 5, "worker cancelled")
            # a decision, through Controls
            t0 = time.monotonic()
            await engine.controls.handle("cancel", {"decision": a.id})
            t_dec = await timed(lambda: all(closed(worker_id(a.id, i)) for i in range(3)), 5, "decision cancelled")
            # all
            t0 = time.monotonic()
            await engine.controls.handle("cancel", {"all": True})
            t_all = await timed(lambda: all(closed(worker_id(b.id, i)) for i in range(3)), 5, "all cancelled")
            await until(lambda: fo.open == 0, 5, "streams closed")
            t_closed = time.monotonic() - t0
            # no usage came: each cancelled attempt's cost is asked of GET /generation (test_reconcile.py)
            await until(lambda: len(engine.state.spend_entries) == 6, 10, "the cancelled attempts reconciled")
        finally:
            await engine.stop()
        print(
            f"cancel: cli round trip {t_cli:.2f}s, decision {t_dec:.3f}s, all {t_all:.3f}s, "
            f"all streams closed {t_closed:.3f}s"
        )
        assert t_dec < 1.5 and t_all < 1.5 and t_closed < 1.5
        assert all(r["closed_by_client"] for r in fo.requests)
        assert len(fo.requests) == 6  # nothing was retried or restarted
        for d in (a, b):
            for i in range(3):
                r = engine.state.results[job_id(d.id, i)]
                assert r.state == "cancelled"
                assert r.text.startswith("tok0 tok1 ")  # the partial output is kept
                assert r.cost_usd == 0  # no usage came: the attempt's own SpendEntry says what was billed
        # a Google model bills a cancelled stream in full: recorded as billed, not as the tokens seen
        assert abs(sum(s.cost_usd for s in engine.state.spend_entries.values()) - fo.billed) < 1e-9
        assert fo.billed == 6 * 2000 * 1e-6
        assert "cancelled" in engine.state.results[job_id(a.id, 0)].reason


async def test_rescale_up_and_down_while_running(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=30, tps=15)  # 2 s a job
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=2)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            await approve(bus, 10)
            await fo.wait_open(2, 15)
            await asyncio.sleep(0.5)
            assert fo.open == 2 and len(fo.requests) == 2  # scale 2: two at a time
            await engine.controls.handle("scale", {"n": 6})
            t_up = await timed(lambda: fo.open == 6, 3, "six streams")
            await engine.controls.handle("scale", {"n": 1})
            started = len(fo.requests)
            # running ones finish; no new one starts until fewer than 1 run
            while fo.open > 1:
                assert len(fo.requests) == started
                await asyncio.sleep(0.05)
            await until(lambda: len(engine.state.results) == 10, 30, "all results")
        finally:
            await engine.stop()
        print(f"rescale: 2 -> 6 streams in {t_up:.2f}s; max open {fo.max_open}")
        assert t_up < 1.5
        assert fo.max_open == 6
        assert all(r.state == "done" for r in engine.state.results.values())
        assert pool.info()["scale"] == 1


async def test_a_redelivered_job_with_a_stored_result_is_not_called_again(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        job = make_job()
        res = Result(
            job_id=job.id,
            worker_id=job.worker_id,
            decision_id=job.decision_id,
            task_id=job.task_id,
            model=job.model,
            state="done",
            text="earlier",
            started_at=time.time() - 2,  # a real clock's time: trust refuses one from 1970
            ended_at=time.time() - 1,
        )
        await bus.publish_event(res, msg_id=f"result-{job.id}")
        await bus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            await until(lambda: pool.counts["already_done"] == 1, 5, "ack without a call")
            info = await bus.jetstream.stream_info(S.JOBS_STREAM)
        finally:
            await engine.stop()
        assert fo.requests == []
        assert info.state.messages == 0  # acked: gone from the work queue
        assert engine.state.results[job.id].text == "earlier"


async def test_a_restart_creates_no_duplicate_jobs(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        engine, _ = build_engine(cfg, bus)
        await engine.start()
        d = await approve(bus, 4)
        await until(lambda: len(engine.state.results) == 4, 15, "results")
        await engine.stop()
        bus2 = await Bus(cfg).connect()
        engine2, _ = build_engine(cfg, bus2)
        await engine2.start()
        try:
            await asyncio.sleep(1.0)
            jobs = (await bus2.jetstream.stream_info(S.JOBS_STREAM)).state
        finally:
            await engine2.stop()
        assert len(fo.requests) == 4
        ctl = engine2.get(Controller)
        assert ctl is not None and ctl.info()["jobs_skipped"] == 4
        assert jobs.messages == 0 and jobs.last_seq == 4  # four jobs were ever queued
        assert set(engine2.state.results) == {job_id(d.id, i) for i in range(4)}


async def test_demo_mode_produces_results_offline(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    from swarm_tui.engine.assemble import assemble

    cfg = make_config(tmp_path, nats_server.url, SWARM_DEMO_TPS="200").replace(demo__tokens=15)
    assert not cfg.openrouter.api_key
    bus = await Bus(cfg).connect()
    chunks = await Chunks().start(bus)
    engine = assemble(cfg, bus, demo=True, conductor=False)
    await engine.start()
    try:
        ep = engine.get(DemoEndpoint)
        assert isinstance(ep, DemoEndpoint) and ep.base.startswith("http://127.0.0.1:")
        d = await approve(bus, 3, demo=True)
        await until(lambda: len(engine.state.results) == 3, 20, "demo results")
        await asyncio.sleep(0.1)
        info = engine.info()
    finally:
        await engine.stop()
    pool_info = cast(PoolInfo, info["pool"])  # an InfoError instead would fail the lookups below
    assert pool_info["demo"] and not pool_info["blocked"]
    evs = await events(cfg)
    for i in range(3):
        r = engine.state.results[job_id(d.id, i)]
        assert r.state == "done" and r.demo
        assert len(r.text.split()) == r.usage.completion_tokens <= 15  # one word a token, demo.tokens at most
        assert chunks.text(worker_id(d.id, i)) == r.text
        assert r.cost_usd > 0 and not r.cost_estimated  # the demo endpoint reports usage.cost
        expected = (r.usage.prompt_tokens + r.usage.completion_tokens) * cfg.demo.usd_per_mtok / 1e6
        assert abs(r.cost_usd - expected) < 1e-9
    assert all(e.demo for e in evs if isinstance(e, SpendEntry | Result | WorkerEvent))
    assert ep.requests == 3


async def test_missing_key_holds_cloud_jobs_and_says_why(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="")
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            d = await approve(bus, 2)
            await until(lambda: len(engine.state.workers) == 2, 5, "queued events")
            await asyncio.sleep(1.2)
            jobs = (await bus.jetstream.stream_info(S.JOBS_STREAM)).state.messages
        finally:
            await engine.stop()
        assert fo.requests == []
        assert jobs == 2  # still on the queue: not acked, redelivered to a pool with a key
        assert pool.info()["blocked"] == "OPENROUTER_API_KEY is not set: set it, or start with --demo"
        w = engine.state.workers[worker_id(d.id, 0)]
        assert (
            w.state in ("queued", "waiting")
            and w.reason == "OPENROUTER_API_KEY is not set: set it, or start with --demo"
        )


async def test_no_key_at_all_a_local_job_runs_to_its_answer_and_spends_nothing(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Issue 28: a fully local swarm needs no OpenRouter key. A local (ollama_chat/) job runs to its answer with
    none set, no cloud call is made and the spend stays $0; a cloud job beside it waits, saying why."""
    from tests.support.fake_ollama import FakeOllama

    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.default = "a local answer"
        ol.pulled.add("qwen2.5:0.5b")
        # scale 1, the cloud job first: a keyless pool never takes it (it stays queued for a pool with the key,
        # saying why), so the local job runs
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="", ollama__host=ol.url, swarm__scale=1)
        assert cfg.openrouter.api_key == ""
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            cloud = await approve(bus, 1)
            await until(lambda: worker_id(cloud.id, 0) in engine.state.workers, 5, "cloud queued")
            local = await approve(bus, 1, model="ollama_chat/qwen2.5:0.5b")
            await until(lambda: job_id(local.id, 0) in engine.state.results, 15, "the local result")
            # the bus brings the result before the pool's run has ended (its ack, its slot given back): wait for
            # that, then nothing runs, the cloud job never having started
            assert job_id(cloud.id, 0) not in pool.runs
            await until(lambda: not pool.runs, 5, "the local run's end")
            assert engine.state.workers[worker_id(cloud.id, 0)].state == "queued"
            shown = format_status(await status_data(cfg))
        finally:
            await engine.stop()
        r = engine.state.results[job_id(local.id, 0)]
        assert r.state == "done" and r.text == "a local answer" and r.cost_usd == 0, r.reason
        assert job_id(cloud.id, 0) not in engine.state.results and fo.requests == []
        assert engine.state.workers[worker_id(cloud.id, 0)].reason.startswith("OPENROUTER_API_KEY is not set")
        assert engine.state.spend.total == 0 and ol.chats()[0]["json"]["keep_alive"] == 0
        assert "local jobs only: OPENROUTER_API_KEY is not set" in shown and "takes no jobs" not in shown, shown


async def test_over_budget_waits_and_goes_when_allowed(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=4, omit_cost=True)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        spend = FakeSpend()
        spend.allow = False
        engine, pool = build_engine(cfg, bus, spend=spend)
        await engine.start()
        try:
            d = await approve(bus, 1)
            wid = worker_id(d.id, 0)
            await until(
                lambda: wid in engine.state.workers and engine.state.workers[wid].state == "over_budget",
                5,
                "over budget",
            )
            await asyncio.sleep(0.5)
            assert fo.requests == []
            spend.allow = True
            await until(lambda: job_id(d.id, 0) in engine.state.results, 5, "result")
            await until(lambda: job_id(d.id, 0) in spend.settled, 5, "settled")  # settled after the result
            await until(
                lambda: any(k.startswith(job_id(d.id, 0) + "-a") for k in engine.state.spend_entries),
                10,
                "the attempt reconciled",
            )
        finally:
            await engine.stop()
        jid = job_id(d.id, 0)
        r = engine.state.results[jid]
        assert r.state == "done" and r.cost_usd == 0  # no usage.cost: its cost comes from GET /generation
        assert spend.settled[jid] == (0.0, False)
        (entry,) = (e for e in engine.state.spend_entries.values() if e.id.startswith(jid + "-a"))
        assert entry.cost_usd == fo.billed > 0 and not entry.estimated
        assert sum(e.cost_usd for e in engine.state.spend_entries.values()) == fo.billed
        assert engine.state.workers[wid].reason == ""
        assert "over budget" in " ".join(e.reason for e in await events(cfg) if isinstance(e, WorkerEvent))


async def test_secret_key_never_reaches_the_bus_or_the_log(
    tmp_path: Path, nats_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=401), Answer(status=500))
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__max_retries=0)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            await approve(bus, 2)
            await until(lambda: len(engine.state.results) == 2, 10, "results")
            raw = []
            sub = await bus.jetstream.subscribe(S.EVENTS_ALL, ordered_consumer=True)
            while True:
                try:
                    raw.append((await sub.next_msg(timeout=0.5)).data)
                except Exception:  # noqa: BLE001 - a timeout (or a closed subscription) ends the read
                    break
        finally:
            await engine.stop()
        reasons = sorted(r.reason for r in engine.state.results.values())
        assert any("401" in x for x in reasons) and any("500" in x for x in reasons), reasons
        assert raw and not any(KEY.encode() in b or KEY[8:20].encode() in b for b in raw)
        assert KEY not in caplog.text and KEY not in str(pool.info()) and KEY not in str(engine.info())


class _Ram:
    name = "ram"

    def __init__(self) -> None:
        self.ok = False

    def headroom_ok(self, extra_mb: float = 0.0) -> bool:
        return self.ok

    def reading(self) -> NoReturn:  # pragma: no cover - not used by the pool
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


async def test_local_worker_waits_for_ram_headroom_then_streams_from_ollama(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    from tests.support.fake_ollama import FakeOllama

    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.default = "local answer here"
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, ollama__host=ol.url)
        bus = await Bus(cfg).connect()
        ram = _Ram()
        engine, pool = build_engine(cfg, bus, ram=ram)
        await engine.start()
        try:
            d = await approve(bus, 1, model="ollama_chat/gemma2:2b")
            wid = worker_id(d.id, 0)
            await until(
                lambda: wid in engine.state.workers and engine.state.workers[wid].state == "waiting",
                5,
                "waiting for RAM",
            )
            assert "RAM" in engine.state.workers[wid].reason and ol.chats() == []
            ram.ok = True
            await until(lambda: job_id(d.id, 0) in engine.state.results, 15, "local result")
        finally:
            await engine.stop()
        r = engine.state.results[job_id(d.id, 0)]
        assert r.state == "done", r.reason
        assert r.text == "local answer here" and r.cost_usd == 0
        assert len(ol.chats()) == 1 and fo.requests == []
        assert pool.lane.turns == 1

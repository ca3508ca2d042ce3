"""Provider faults through the real litellm client: 429, 402, 5xx, error chunks, drops, stalls, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Decision, WorkerEvent, job_id, worker_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.states import WorkerState
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.limits import RECOVER_AFTER
from swarm_tui.engine.swarm.pool import Pool
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, FakeSpend, approve, build_engine, events, swarm_config


async def _run(
    tmp_path: Path,
    nats_server: EmbeddedServer,
    fo: FakeOpenRouter,
    n: int = 1,
    *,
    spend: Any = None,
    timeout: float = 15.0,
    **values: Any,
) -> tuple[Engine, Pool, Decision, list[tuple[WorkerState, str]]]:
    cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, **values)
    bus = await Bus(cfg).connect()
    engine, pool = build_engine(cfg, bus, spend=spend)
    await engine.start()
    try:
        d = await approve(bus, n)
        await until(lambda: len(engine.state.results) == n, timeout, f"{n} results")
    finally:
        await engine.stop()
    evs = await events(cfg)
    states = [(e.state, e.reason) for e in evs if isinstance(e, WorkerEvent)]
    return engine, pool, d, states


async def test_429_backs_off_honouring_retry_after_and_lowers_the_model_limit(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=429, retry_after=1.0))
        fo.default = Answer(tokens=3)
        engine, pool, d, states = await _run(tmp_path, nats_server, fo)
        first, second = fo.requests[0], fo.requests[1]
        gap = second["t_start"] - first["t_end"]
        print(f"429: retried after {gap:.2f}s (Retry-After 1)")
        assert first["status"] == 429 and len(fo.requests) == 2
        assert gap >= 0.9
        assert engine.state.results[job_id(d.id, 0)].state == "done"
        assert any(s == "retrying" and "429" in r for s, r in states)
        lim = pool.limits[MODEL]
        assert lim.limit == 1 and lim.ok == 1  # halved to 1, then one success on the way back


def test_aimd_model_limit_halves_and_recovers_slowly(cfg: Config) -> None:
    pool = build_pool(cfg, bus=None)  # type: ignore[arg-type]
    pool.limit_of("m").active = 8
    pool.on_rate_limited("m", 2.0)
    assert pool.limits["m"].limit == 4
    assert pool.rate_limits()["m"]["limit"] == 4 and pool.rate_limits()["m"]["backoff_until"] > 0
    pool.on_rate_limited("m", None)
    assert pool.limits["m"].limit == 2
    for _ in range(RECOVER_AFTER - 1):
        pool.on_success("m")
    assert pool.limits["m"].limit == 2
    pool.on_success("m")
    assert pool.limits["m"].limit == 3


async def test_402_stops_cloud_dispatch_and_says_out_of_credit(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(status=402)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            d = await approve(bus, 3)
            await until(lambda: pool.cloud_blocked() is not None, 10, "out of credit")
            await asyncio.sleep(0.3)
            calls = len(fo.requests)
            await asyncio.sleep(1.2)
            later = len(fo.requests)
            info = pool.info()
            held = {w.state for w in engine.state.workers.values()}
            fo.default = Answer(tokens=2)
            pool.out_of_credit = ""  # credit is back (with a spend guard its key poll clears it)
            await until(lambda: len(engine.state.results) == 3, 10, "results after credit")
        finally:
            await engine.stop()
        assert calls <= 3 and later == calls  # the ones in flight got 402; nothing was sent after that
        assert info["out_of_credit"].startswith("out of credit") and info["blocked"].startswith("out of credit")
        assert held == {"waiting"}
        assert engine.state.workers[worker_id(d.id, 0)].state == "done"


async def test_402_with_a_spend_guard_marks_it(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=402))
        spend = FakeSpend()
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus, spend=spend)
        await engine.start()
        try:
            await approve(bus, 1)
            await until(lambda: spend.blocked != "", 10, "spend guard marked")
            assert pool.info()["out_of_credit"].startswith("out of credit (402)")
            spend.blocked = ""
            await until(lambda: len(engine.state.results) == 1, 10, "result")
        finally:
            await engine.stop()
        assert len(fo.requests) == 2


async def test_5xx_retries_with_backoff_then_succeeds(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=500), Answer(status=503))
        fo.default = Answer(tokens=3)
        engine, pool, d, states = await _run(tmp_path, nats_server, fo, swarm__max_retries=3)
        assert [r["status"] for r in fo.requests] == [500, 503, 200]
        assert engine.state.results[job_id(d.id, 0)].state == "done"
        retry = [r for s, r in states if s == "retrying"]
        assert len(retry) == 2 and "500" in retry[0] and "retry 1 of 3" in retry[0]


async def test_5xx_fails_after_the_bounded_retries_with_the_reason(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(status=500)
        engine, pool, d, states = await _run(tmp_path, nats_server, fo, swarm__max_retries=2)
        r = engine.state.results[job_id(d.id, 0)]
        assert len(fo.requests) == 3
        assert r.state == "failed" and "500" in r.reason and "after 2 retries" in r.reason
        assert engine.state.tasks[d.task_ids[0]].state == "failed"


async def test_error_chunk_mid_stream_fails_and_keeps_the_partial_output(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, error_after=3, error_code=400)  # not a 429, 402 or 5xx: no retry
        engine, pool, d, states = await _run(tmp_path, nats_server, fo)
        r = engine.state.results[job_id(d.id, 0)]
        assert len(fo.requests) == 1  # not retried
        assert r.state == "failed" and "error mid-stream" in r.reason and "upstream died" in r.reason
        assert r.text == "tok0 tok1 tok2 "
        assert r.cost_usd == 0 and not r.cost_estimated  # no usage.cost: reconciled with GET /generation later


async def test_dropped_connection_is_retried(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=10, drop_after=4))
        fo.default = Answer(tokens=5)
        engine, pool, d, states = await _run(tmp_path, nats_server, fo)
        r = engine.state.results[job_id(d.id, 0)]
        assert r.state == "done" and r.text == "tok0 tok1 tok2 tok3 tok4 "
        assert fo.requests[0]["dropped"] and len(fo.requests) == 2
        assert any(s == "retrying" and "connection lost" in r for s, r in states)
        # litellm raises on the drop before it hands out the pieces buffered with it, so only what the
        # client saw is counted (at least the 5 of the answer that went through)
        assert r.usage.completion_tokens >= 5


async def test_stall_and_first_token_timeouts(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=10, stall_after=2, stall_s=5), Answer(tokens=10, first_token_delay=5))
        fo.default = Answer(tokens=2)
        engine, pool, d, states = await _run(
            tmp_path, nats_server, fo, swarm__first_token_timeout_s=0.7, swarm__max_retries=2
        )
        assert engine.state.results[job_id(d.id, 0)].state == "done"
        reasons = [r for s, r in states if s == "retrying"]
        assert any("stalled within 0.7s" in r for r in reasons), reasons
        assert any("no first token within 0.7s" in r for r in reasons), reasons
        for rec in fo.requests[:2]:  # the stalled streams were closed by the client in time
            assert rec["closed_by_client"] and rec["t_end"] - rec["t_start"] < 3


async def test_first_token_timeout_fails_with_the_reason_when_retries_run_out(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, first_token_delay=3)
        engine, pool, d, states = await _run(
            tmp_path, nats_server, fo, swarm__first_token_timeout_s=0.5, swarm__max_retries=0
        )
        r = engine.state.results[job_id(d.id, 0)]
        assert r.state == "failed" and "no first token within 0.5s" in r.reason

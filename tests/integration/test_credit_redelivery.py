"""402 as OpenRouter means it, and JetStream's last delivery: every job ends with a result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Result, WorkerEvent, job_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.pool import Pool
from swarm_tui.engine.swarm.run import MAX_DELIVER
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import approve, build_engine, events, make_job, swarm_config


async def _engine(
    tmp_path: Path, nats_server: EmbeddedServer, fo: FakeOpenRouter, **values: Any
) -> tuple[Config, Bus, Engine, Pool]:
    cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, **values)
    bus = await Bus(cfg).connect()
    engine, pool = build_engine(cfg, bus)
    await engine.start()
    return cfg, bus, engine, pool


async def test_a_402_for_one_request_retries_with_the_max_tokens_it_can_afford(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=402, afford=60))
        fo.default = Answer(tokens=5)
        cfg, bus, engine, pool = await _engine(tmp_path, nats_server, fo)
        try:
            d = await approve(bus, 1, max_tokens=100)
            await until(lambda: job_id(d.id, 0) in engine.state.results, 15, "result")
            blocked = pool.cloud_blocked()
        finally:
            await engine.stop()
        r = engine.state.results[job_id(d.id, 0)]
        assert r.state == "done" and blocked is None  # one request's 402 does not stop dispatch
        assert [q["max_tokens"] for q in fo.requests] == [100, 60]
        states = [(e.state, e.reason) for e in await events(cfg) if isinstance(e, WorkerEvent)]
        assert any(s == "retrying" and "affords only 60" in why and "max_tokens 60" in why for s, why in states)


async def test_a_402_that_affords_too_little_fails_that_job_only(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=402, afford=10))
        fo.default = Answer(tokens=5)
        cfg, bus, engine, pool = await _engine(tmp_path, nats_server, fo, swarm__scale=1)
        try:
            d = await approve(bus, 2, max_tokens=100)
            await until(lambda: len(engine.state.results) == 2, 15, "two results")
        finally:
            await engine.stop()
        first, second = (engine.state.results[job_id(d.id, i)] for i in range(2))
        assert first.state == "failed" and "affords only 10 tokens" in first.reason and "402" in first.reason
        assert second.state == "done"  # the next job went on: not "out of credit"
        assert len(fo.requests) == 2


async def test_an_account_out_of_credit_stops_dispatch_until_a_call_goes_through(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=402))  # "Insufficient credits": the account, not this request
        fo.default = Answer(tokens=3)
        cfg, bus, engine, pool = await _engine(tmp_path, nats_server, fo, swarm__scale=1)
        try:
            d = await approve(bus, 2)
            await until(lambda: (pool.cloud_blocked() or "").startswith("out of credit"), 10, "blocked")
            await asyncio.sleep(0.5)
            assert len(fo.requests) == 1  # nothing is sent while the account is out of credit
            pool._credit_at -= 61  # the pool's own re-check (no spend guard): one call is let through
            await until(lambda: len(engine.state.results) == 2, 15, "results")
            after = pool.cloud_blocked()
        finally:
            await engine.stop()
        assert after is None and all(r.state == "done" for r in engine.state.results.values())
        assert d.id


def test_a_call_sent_after_the_block_clears_it(cfg: Config) -> None:
    pool = build_pool(cfg, bus=None)  # type: ignore[arg-type]
    pool.mark_out_of_credit("402 Insufficient credits")
    at = pool._credit_at
    pool.credit_ok(at - 1)  # a call sent before the 402: says nothing
    assert (pool.cloud_blocked() or "").startswith("out of credit")
    pool.credit_ok(at)
    assert pool.cloud_blocked() is None


async def _burn(bus: Bus, n: int, *, ask_again: bool = False) -> None:
    """Take the job from the cloud lane's consumer n times without finishing it (each a delivery); with
    ``ask_again`` pull once more: JetStream then finds it has no delivery left (and says so)."""
    sub = await bus.jetstream.pull_subscribe_bind(durable=S.jobs_consumer("cloud"), stream=S.JOBS_STREAM)
    for _ in range(n):
        (m,) = await sub.fetch(1, timeout=5)
        await m.nak()
    if ask_again:
        with contextlib.suppress(Exception):
            await sub.fetch(1, timeout=1)
    await sub.unsubscribe()


async def test_the_last_delivery_ends_with_a_result_when_the_engine_stops(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=500, tps=20)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        job = make_job()
        await bus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
        await _burn(bus, MAX_DELIVER - 1)
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            await fo.wait_open(1, 15)
            delivered = next(iter(pool.runs.values())).delivered
        finally:
            await engine.stop()  # during the last allowed delivery: no further one would come
        evs = await events(cfg)
        bus2 = await Bus(cfg).connect()
        try:
            left = (await bus2.jetstream.stream_info(S.JOBS_STREAM)).state.messages
        finally:
            await bus2.close()
    (res,) = [e for e in evs if isinstance(e, Result)]
    assert delivered == MAX_DELIVER
    assert res.state == "failed" and "last allowed delivery" in res.reason and res.text.startswith("tok0")
    assert left == 0  # acked: not left hanging in the work queue


async def test_a_stop_and_restart_use_one_delivery_and_the_job_finishes(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=60, tps=30)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        seen: list[int] = []
        d = None
        for _ in range(3):  # stopped mid-call twice, then left to finish
            bus = await Bus(cfg).connect()
            engine, pool = build_engine(cfg, bus)
            accept = pool._accept

            async def spy(m: Msg, accept: Callable[[Msg], Awaitable[None]] = accept) -> None:
                seen.append(int(m.metadata.num_delivered))
                await accept(m)

            pool._accept = spy  # type: ignore[method-assign]
            await engine.start()
            try:
                if d is None:
                    d = await approve(bus, 1)
                n = len(fo.requests)
                await until(lambda: len(fo.requests) > n and fo.open == 1, 15, "streaming")  # noqa: B023 - awaited in this iteration
                if len(seen) < 3:
                    await asyncio.sleep(0.3)
                    continue
                jid, results = job_id(d.id, 0), engine.state.results
                await until(lambda: jid in results, 15, "result")  # noqa: B023 - awaited in this iteration
                res = results[jid]
            finally:
                await engine.stop()
    assert seen == [1, 2, 3]  # each stop used exactly the delivery it interrupted
    assert res.state == "done"


async def test_a_job_whose_deliveries_ran_out_elsewhere_gets_a_failed_result(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=0)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)  # scale 0: this pool takes no job, it only listens
        await engine.start()
        try:
            job = make_job()
            await bus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
            await _burn(bus, MAX_DELIVER, ask_again=True)  # a worker that died on every delivery, the last too
            await until(lambda: job.id in engine.state.results, 10, "a failed result")
            await until(lambda: pool.counts["max_deliveries"] == 1, 5, "counted")
            left = (await bus.jetstream.stream_info(S.JOBS_STREAM)).state.messages
        finally:
            await engine.stop()
    r = engine.state.results[job.id]
    assert r.state == "failed" and f"delivered {MAX_DELIVER} times without a result" in r.reason
    assert left == 0 and fo.requests == []

"""`swarm-tui worker` processes: a kill -9 mid-stream loses nothing, two share the queue, demo end to end."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Result, WorkerEvent, new_id
from swarm_tui.engine.guards.ceiling_kv import publish_base
from tests.support.env import base_env, make_config, spawn_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, approve, events, make_job


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError:
        proc.kill()
        _out, err = await proc.communicate()
    return proc.returncode or 0, err.decode(errors="replace")


async def _queue_jobs(bus: Bus, n: int) -> list[str]:
    """Jobs queued as an engine queues them, its ceiling published as it does when it starts (a worker spends
    only under an engine's)."""
    await publish_base(bus, 1.0, time.time())
    d = new_id("d")
    ids = []
    for i in range(n):
        job = make_job(d, i)
        await bus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
        ids.append(job.id)
    return ids


def _env(tmp_path: Path, url: str, base: str, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path, SWARM_NATS_URL=url, OPENROUTER_API_BASE=base, OPENROUTER_API_KEY=KEY, SWARM_ACK_WAIT_S="3", **extra
    )


async def test_a_worker_killed_mid_stream_its_job_is_redelivered_and_stored_once(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=400, tps=20))  # 20 s: it is killed long before the end
        fo.default = Answer(tokens=5)
        env = _env(tmp_path, nats_server.url, fo.base)
        cfg = make_config(tmp_path, nats_server.url, SWARM_ACK_WAIT_S="3")
        bus = await Bus(cfg).connect()
        [jid] = await _queue_jobs(bus, 1)
        first = await spawn_cli(env, "worker")
        second = None
        try:
            await fo.wait_open(1, 30)
            await until(lambda: fo.requests[0]["tokens_sent"] >= 10, 10, "streaming")
            first.kill()  # SIGKILL: no goodbye, no nak
            await first.wait()
            t_kill = time.monotonic()
            second = await spawn_cli(env, "worker")
            await until(lambda: len(fo.requests) == 2 and fo.requests[1]["t_end"] is not None, 30, "redelivery")
            redelivered_after = fo.requests[1]["t_start"] - t_kill
            await asyncio.sleep(0.5)
            evs = await events(cfg)
        finally:
            for p in (first, second):
                if p is not None:
                    await _stop(p)
            await bus.close()
        print(f"kill -9: redelivered {redelivered_after:.2f}s after the kill (ack wait 3 s)")
        results = [e for e in evs if isinstance(e, Result) and e.job_id == jid]
        assert len(results) == 1 and results[0].state == "done"
        assert results[0].text == "tok0 tok1 tok2 tok3 tok4 "
        assert fo.requests[0]["closed_by_client"]  # the killed process's stream ended with it
        assert len(fo.requests) == 2  # exactly one more call
        assert redelivered_after >= 1.0  # not before the ack wait ran out (heartbeats kept it until the kill)


async def test_two_worker_processes_share_the_queue_and_no_job_runs_twice(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, tps=10)  # 1 s a job
        env = _env(tmp_path, nats_server.url, fo.base)
        cfg = make_config(tmp_path, nats_server.url, SWARM_ACK_WAIT_S="3")
        bus = await Bus(cfg).connect()
        ids = await _queue_jobs(bus, 12)
        procs = [await spawn_cli(env, "worker", "--concurrency", "3") for _ in range(2)]
        try:
            await until(lambda: len([r for r in fo.requests if r["t_end"]]) == 12, 40, "12 calls")
            t0 = time.monotonic()
            while True:
                evs = await events(cfg)
                if sum(isinstance(e, Result) for e in evs) >= 12 or time.monotonic() - t0 > 15:
                    break
                await asyncio.sleep(0.2)
            stored_after = time.monotonic() - t0
            await asyncio.sleep(0.5)
            evs = await events(cfg)
            left = (await bus.jetstream.stream_info(S.JOBS_STREAM)).state.messages
        finally:
            codes = [await _stop(p) for p in procs]
            await bus.close()
        print(
            f"two workers x concurrency 3: max open streams {fo.max_open}, "
            f"last results stored {stored_after:.2f}s after the last call ended"
        )
        results = Counter(e.job_id for e in evs if isinstance(e, Result))
        assert set(results) == set(ids) and max(results.values()) == 1
        calls = Counter(r["body"]["messages"][-1]["content"] for r in fo.requests)
        twice = {
            k: [
                (round(r["t_start"] - fo.requests[0]["t_start"], 2), r["closed_by_client"])
                for r in fo.requests
                if r["body"]["messages"][-1]["content"] == k
            ]
            for k, n in calls.items()
            if n > 1
        }
        assert len(fo.requests) == 12, (twice, [err[-3000:] for _, err in codes])  # no job was called twice
        assert 4 <= fo.max_open <= 6  # both processes worked (one alone holds at most 3)
        assert left == 0
        assert all(code == 0 for code, _ in codes), codes
        assert all(KEY not in err for _, err in codes)
        done = [e for e in evs if isinstance(e, WorkerEvent) and e.state == "done"]
        assert len(done) == 12


async def test_headless_demo_runs_offline_end_to_end(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, SWARM_DEMO_TPS="100")
    cfg = make_config(tmp_path, nats_server.url)
    bus = await Bus(cfg).connect()
    proc = await spawn_cli(env, "run", "--headless", "--demo")
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        assert b"DEMO" in line, line
        d = await approve(bus, 2, demo=True)
        results: list[Result] = []

        async def poll() -> None:
            while len(results) < 2:
                await asyncio.sleep(0.3)
                results[:] = [e for e in await events(cfg) if isinstance(e, Result) and e.decision_id == d.id]

        await asyncio.wait_for(poll(), 40)
    finally:
        code, err = await _stop(proc)
        await bus.close()
    assert code == 0, err[-500:]
    assert all(r.state == "done" and r.demo and r.cost_usd > 0 and r.text for r in results)

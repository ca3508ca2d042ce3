"""The swarm on a 3-node JetStream cluster (replicas 3): the work queue's leader killed mid-swarm, a second node
restarted; an engine and two ``swarm-tui worker`` processes against the cluster, the fake OpenRouter billing.

Every task gets exactly one result, the spend recorded equals what the provider billed and stays under the
ceiling. The figures (time for work to resume after the kill) are printed for docs/performance.md.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.topology import describe
from swarm_tui.engine.bus.wire import Result, SpendEntry
from tests.fault.test_faults import (
    _spawn_engine,
    _status,
    _stop_proc,
    completed_cost,
    per_job,
    plan_decision,
    stored,
    tag_of,
)
from tests.support.cluster import Cluster
from tests.support.env import base_env, make_config, run_cli, spawn_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, events

pytestmark = pytest.mark.fault


async def test_cluster_leader_killed_and_a_node_restarted_mid_swarm_loses_nothing(tmp_path: Path) -> None:
    t_start = time.monotonic()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.monotonic() - t_start, 1)

    cluster = Cluster(tmp_path / "cluster").start()
    procs: list[asyncio.subprocess.Process] = []
    engine = None
    ceiling = 0.05
    try:
        await cluster.jetstream_ready()
        async with FakeOpenRouter() as fo:
            fo.default = Answer(tokens=30, tps=15, cost=0.0004)  # 2 s a job
            env = base_env(
                tmp_path,
                SWARM_NATS_URL=cluster.url,
                SWARM_NATS_REPLICAS="3",
                OPENROUTER_API_BASE=fo.base,
                OPENROUTER_API_KEY=KEY,
                SWARM_SCALE="2",
            )  # the default ack wait (30 s): a leader election does not outlast it, so no job is run twice
            cfg = make_config(tmp_path, cluster.url, SWARM_NATS_REPLICAS="3")
            engine = await _spawn_engine(env)
            res = await asyncio.to_thread(run_cli, ["budget", str(ceiling)], env)
            assert res.returncode == 0, res.stderr
            procs = [await spawn_cli(env, "worker", "--concurrency", "2") for _ in range(2)]
            for p in procs:
                line = await asyncio.wait_for(p.stdout.readline(), 30)  # type: ignore[union-attr]
                assert b"worker running" in line, line
            bus = await Bus(cfg).connect()
            try:
                shape = await describe(bus)
                assert shape["kind"] == "cluster" and shape["replicas"] == 3, shape
                tags = [f"job-{i}" for i in range(30)]
                mark("ready")
                await plan_decision(bus, tags)
                await until(lambda: sum(1 for r in fo.requests if r.get("cost")) >= 6, 60, "six jobs done")
                await fo.wait_open(4, 15)
                leader = (await describe(bus))["work_queue_leader"]
                cluster.node(leader).kill()  # kill -9 the node that leads the work queue
                t_kill = time.monotonic()
                started_before = len(fo.requests)
                await until(lambda: len(fo.requests) > started_before, 60, "a job started after the kill")
                resumed = fo.requests[started_before]["t_start"] - t_kill
                after = await describe(bus)
                for _ in range(60):  # the consumer's new leader, once elected
                    if after.get("work_queue_leader") not in ("", leader):
                        break
                    await asyncio.sleep(0.25)
                    after = await describe(bus)
                await asyncio.sleep(1.0)
                cluster.node(leader).start()  # the killed node comes back with its store and catches up
                cluster.node(leader).wait_ready(20)
                second = next(n for n in ("n1", "n2", "n3") if n not in (leader, after.get("work_queue_leader")))
                await until(lambda: sum(1 for r in fo.requests if r.get("cost")) >= 18, 90, "eighteen jobs done")
                await asyncio.to_thread(cluster.restart, second)  # SIGTERM and start again, mid-swarm
                await until(
                    lambda: {tag_of(r["body"]) for r in fo.requests if r.get("cost")} >= set(tags), 120, "all done"
                )
                t_all = time.monotonic() - t_kill
                mark("all called")

                evs = await asyncio.wait_for(stored(cfg, len(tags)), 30)
                for _ in range(120):  # a cut attempt is reconciled with GET /generation
                    final = await _status(env)
                    if not final["spend"].get("reconciling") and abs(final["spend"]["today_usd"] - fo.billed) < 1e-9:
                        break
                    await asyncio.sleep(0.5)
                evs = await events(cfg)
                end_shape = await describe(bus)
                mark("reconciled")
            finally:
                await bus.close()
    finally:
        errs = [await _stop_proc(p) for p in procs] + [await _stop_proc(engine)]
        cluster.stop()
    mark("stopped")
    results = per_job(evs, Result)
    cut = [r for r in fo.requests if r["closed_by_client"]]
    print(
        f"\ncluster R3: 30 jobs on an engine + 2 worker processes; work-queue leader {leader} killed (kill -9): "
        f"a job started {resumed:.2f} s later (new leader {after.get('work_queue_leader')}); {second} restarted; "
        f"all done {t_all:.1f} s after the kill; {len(fo.requests)} calls ({len(cut)} cut); recorded "
        f"${final['spend']['today_usd']:.6f} = billed ${fo.billed:.6f} <= ceiling ${ceiling}; timeline {marks}"
    )
    logged = {e.id: e.cost_usd for e in evs if isinstance(e, SpendEntry)}
    if abs(final["spend"]["today_usd"] - fo.billed) >= 1e-9:  # say where the money went before failing
        print(f"the log's SpendEntries sum to ${sum(logged.values()):.6f}: {sorted(logged.items())}")
        print("billed:", sorted((tag_of(r["body"]), r.get("cost"), r.get("id")) for r in fo.requests))
        for who, err in zip(("worker 1", "worker 2", "engine"), errs, strict=False):  # what each process said
            said = [x for x in err.splitlines() if ("WARNING" in x or "ERROR" in x) and "route" not in x]
            print(f"--- {who}:", "\n".join(said)[-3000:])
    assert all(KEY not in e for e in errs)
    assert after.get("work_queue_leader") not in ("", leader), after  # the work queue moved to a live node
    assert len(results) == len(tags) and set(results.values()) == {1}, results  # one result per task
    assert all(e.state == "done" for e in evs if isinstance(e, Result))
    assert not final["spend"].get("reconciling")
    assert abs(final["spend"]["today_usd"] - fo.billed) < 1e-9 and fo.billed >= completed_cost(fo) > 0
    assert final["spend"]["today_usd"] <= ceiling + 1e-12
    assert end_shape["replicas"] == 3 and not [p for p in end_shape["peers"] if p["offline"]], end_shape

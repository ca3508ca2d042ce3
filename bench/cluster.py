"""Figure 7: the swarm on a 3-node JetStream cluster (replicas 3) against one server (replicas 1), in one run.

- **jobs per second** two remote worker processes (``swarm-tui worker --demo``) sustain through the bus: 100 jobs
  queued at once, short demo answers at a high rate, so the figure is the bus's cost per job (fetch, events,
  result, spend ledger, ack) more than the streaming's; the same on one server gives the ratio;
- **work resumes after the leader is killed**: mid-run, ``kill -9`` the node that leads the work queue; seconds
  until a job is taken again (its first worker event on the bus after the kill) and until the next result.

The cluster is ``tests/support/cluster.py``'s: three nats-server processes from the wheel, routes on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, Figure
from .harness import nats, stop_proc, swarm_env, until

N_JOBS = 100
CONCURRENCY = 25  # per worker process
DEMO = {"SWARM_DEMO_TPS": "400"}  # the jobs ask for 20 tokens: ~0.05 s of streaming a job


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [sys.executable, "-m", "swarm_tui", "worker", "--demo", "--concurrency", str(CONCURRENCY)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    if b"worker running" not in line:
        stop_proc(p)
        raise RuntimeError(f"the worker did not start: {line!r}")
    return p


class Watch:
    """Results and worker events as they are published (a core subscription: it sees every publish at once)."""

    def __init__(self) -> None:
        self.results: dict[str, float] = {}  # worker id -> its result's arrival
        self.taken: dict[str, float] = {}  # worker id -> when its job was taken (the "running" event)

    def taken_after(self, t: float) -> list[str]:
        return [w for w, at in self.taken.items() if at > t]

    async def start(self, bus: Any) -> None:
        from swarm_tui.engine.bus.wire import Result, WorkerEvent, decode

        async def cb(msg: Any) -> None:
            try:
                ev = decode(msg.data)
            except Exception:  # noqa: BLE001
                return
            if isinstance(ev, Result):
                self.results.setdefault(ev.worker_id, time.monotonic())
            elif isinstance(ev, WorkerEvent) and ev.state == "running":  # a job taken: its call starts
                self.taken.setdefault(ev.worker_id, time.monotonic())

        await bus.nc.subscribe("swarm.evt.>", cb=cb)


async def _queue(bus: Any, n: int, tag: str) -> list[str]:
    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.bus.wire import ChatMessage, Job, job_id, new_id, worker_id

    d = new_id("d")
    ids = []
    for i in range(n):
        msgs = [ChatMessage(role="user", content=f"bench-{tag}-{i}: a short answer")]
        job = Job(
            id=job_id(d, i),
            worker_id=worker_id(d, i),
            decision_id=d,
            task_id="t-bench",
            role="research",
            model="openrouter/google/gemini-2.5-flash-lite",
            max_tokens=20,
            messages=msgs,
            created_at=time.time(),
            demo=True,
        )
        await bus.publish(S.job("cloud", job.id), job.to_bytes(), msg_id=job.id)
        ids.append(job.id)
    return ids


async def _one(url: str, replicas: int, tmp: Path, kill: Any = None, n_jobs: int = N_JOBS) -> dict[str, float]:
    """``n_jobs`` through two worker processes on ``url``; with ``kill``, the leader is killed after a third."""
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.topology import describe
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.guards.ceiling_kv import publish_base

    env = swarm_env(tmp, nats_url=url, SWARM_NATS_REPLICAS=str(replicas), **DEMO)
    cfg = load_config(None, env)
    bus = await Bus(cfg).connect()
    # the ceiling an engine publishes when it starts: a worker spends only under an engine's (no engine runs here)
    await publish_base(bus, cfg.budget.daily_usd, time.time(), demo=True)
    workers = [_worker(env), _worker(env)]
    out: dict[str, float] = {}
    try:
        w = Watch()
        await w.start(bus)
        t0 = time.monotonic()
        ids = await _queue(bus, n_jobs, f"{replicas}-{t0:.0f}")
        if kill is not None:
            await until(lambda: len(w.results) >= n_jobs // 3, 60, "a third of the results")
            leader = (await describe(bus)).get("work_queue_leader", "")
            kill(leader)
            t_kill = time.monotonic()
            await until(lambda: w.taken_after(t_kill), 60, "a job taken after the kill")
            out["resume_taken"] = min(w.taken[x] for x in w.taken_after(t_kill)) - t_kill
            await until(lambda: any(x in w.results for x in w.taken_after(t_kill)), 60, "its result")
            out["resume_result"] = min(w.results[x] for x in w.taken_after(t_kill) if x in w.results) - t_kill
        if kill is None:
            await until(lambda: len(w.results) >= len(ids), 180, f"{len(ids)} results", every=0.01)
            out["jobs_per_s"] = len(ids) / (max(w.results.values()) - t0)
        # after a kill the figures are taken: the rest of the queue is not waited for (a job whose ack was lost
        # with the leader comes back after the ack wait, 30 s; tests/fault/test_cluster.py sees every one end)
    finally:
        for p in workers:
            stop_proc(p)
        await bus.close()
    return out


def _killer(cluster: Any) -> Any:
    return lambda name: cluster.node(name).kill()


async def cluster_figures(runs: int, figs: dict[str, Figure], n_jobs: int = N_JOBS) -> None:
    from tests.support.cluster import Cluster

    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as d:
            srv = nats(Path(d) / "single")
            try:
                one = await _one(srv.url, 1, Path(d) / "single-app", n_jobs=n_jobs)
            finally:
                srv.stop()
            figs["jobs_single"].samples.append(one["jobs_per_s"])
            cluster = Cluster(Path(d) / "cluster").start()
            try:
                await cluster.jetstream_ready()
                three = await _one(cluster.url, 3, Path(d) / "cluster-app", n_jobs=n_jobs)
                figs["jobs_cluster"].samples.append(three["jobs_per_s"])
                figs["jobs_ratio"].samples.append(three["jobs_per_s"] / one["jobs_per_s"])
                killed = await _one(cluster.url, 3, Path(d) / "cluster-kill", kill=_killer(cluster), n_jobs=n_jobs)
                figs["resume_taken"].samples.append(killed["resume_taken"])
                figs["resume_result"].samples.append(killed["resume_result"])
            finally:
                cluster.stop()
        print(json.dumps({k: round(v, 3) for k, v in {**one, **three, **killed}.items()}), flush=True)


def figures(n_jobs: int = N_JOBS) -> list[Figure]:
    w = f"2 `swarm-tui worker --demo` processes × {CONCURRENCY}, {n_jobs} jobs of 20 tokens"
    return [
        Figure("jobs_single", f"7. jobs per second, one nats-server (R1): {w}", "jobs/s"),
        Figure("jobs_cluster", f"7. jobs per second, 3-node JetStream cluster (R3): {w}", "jobs/s"),
        Figure("jobs_ratio", "7. cluster (R3) / one server (R1), jobs per second", "x"),
        Figure("resume_taken", "7. work-queue leader killed (-9) mid-run: kill → a job taken again", "s"),
        Figure(
            "resume_result", "7. work-queue leader killed (-9) mid-run: kill → a result of a job taken after it", "s"
        ),
    ]

"""Fault suite: the real engine on a real nats-server and the loopback fakes, with faults injected.

1. nats-server kill -9 and restart (same port, same store) three times mid-swarm;
2. the engine process (``run --headless``) kill -9 mid-swarm and started again;
3. the provider fault matrix at load under a spend ceiling;
4. a laptop sleep (the conductor's clocks jump forward).

Each test prints its figures (``pytest -m fault -s``); docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus import trust
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Result, SpendEntry, Task, WorkerEvent, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.spend import SpendGuard
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.settings import Clocks, ConductorGuards, ConductorSettings
from tests.support.env import base_env, make_config, run_cli, spawn_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, MODEL, events, swarm_config

pytestmark = pytest.mark.fault

FINAL = ("done", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tag_of(body: dict[str, Any]) -> str:
    """The job a chat request belongs to: each test's task texts are unique ("job-<n> ...")."""
    return str(body["messages"][-1]["content"]).split()[0]


def completed_cost(fo: FakeOpenRouter) -> float:
    return sum(r.get("cost") or 0.0 for r in fo.requests)


async def plan_decision(
    bus: Bus, tags: list[str], *, approve: bool = True, max_tokens: int = 100, expires_in: float = 900.0
) -> tuple[Decision, list[str]]:
    """One task per tag (text "<tag> ..."), one decision with a plan item for each, approved or pending."""
    now = time.time()
    tids = []
    for tag in tags:
        t = Task(id=new_id("t"), text=f"{tag} please do this", created_at=now)
        await bus.publish_event(t, msg_id=t.id)
        tids.append(t.id)
    plan = [PlanItem(task_id=tid, role="research", model=MODEL, max_tokens=max_tokens) for tid in tids]
    d = Decision(id=new_id("d"), task_ids=tids, plan=plan, source="rules", created_at=now, expires_at=now + expires_in)
    await bus.publish_event(d, msg_id=d.id)
    if approve:
        await bus.publish_event(Approval(decision_id=d.id, action="approved", at=time.time()), msg_id=f"{d.id}-final")
    return d, tids


async def stored(cfg: Config, n: int) -> list[Any]:
    """The log once it holds results of ``n`` jobs."""
    while True:
        evs = await events(cfg)
        if len({e.job_id for e in evs if isinstance(e, Result)}) >= n:
            return evs
        await asyncio.sleep(0.2)


def per_job(evs: list[Any], kind: type) -> Counter[str]:
    """Results per job id; SpendEntries per entry id (an OpenRouter call is an attempt: ``<job>-a<hex>``)."""
    if kind is Result:
        return Counter(e.job_id for e in evs if isinstance(e, Result))
    return Counter(e.id for e in evs if isinstance(e, SpendEntry))


def job_of(spend_id: str) -> str:
    """The job a SpendEntry belongs to: an attempt's id is the job's with ``-a<hex>`` (reconcile.attempt_id)."""
    return spend_id.rsplit("-a", 1)[0]


# ---------------------------------------------------------------------------------------------- 1. nats kill -9
async def test_nats_server_killed_three_times_mid_swarm_loses_nothing(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "nats-store", port=free_port(), memory_mb=64, disk_mb=1024).run()
    engine = None
    try:
        async with FakeOpenRouter() as fo:
            fo.default = Answer(tokens=24, tps=30, cost=0.00011)  # ~0.8 s a job
            cfg = swarm_config(
                make_config,
                tmp_path,
                srv.url,
                fo.base,
                swarm__scale=6,
                swarm__ack_wait_s=3.0,
                approval__mode="auto",
                approval__auto_max_usd=10.0,
                budget__daily_usd=50.0,
                heartbeat__debounce_s=0.2,
                heartbeat__max_workers_per_task=1,
            )
            bus = Bus(cfg)
            await bus.connect()
            engine = assemble(cfg, bus)
            await engine.start()
            state = engine.state
            submitted: list[str] = []

            async def submit(n: int) -> None:
                for _ in range(n):
                    t = Task(id=new_id("t"), text=f"job-{len(submitted)} write a haiku", created_at=time.time())
                    submitted.append(t.id)
                    await bus.publish_event(t, msg_id=t.id)

            def results_past(n: int) -> Callable[[], bool]:
                return lambda: len(state.results) > n

            outages: list[float] = []
            recoveries: list[float] = []
            await submit(6)
            for _round in range(3):
                # mid-swarm: streams are open and results are being stored
                await submit(2)
                stored = len(state.results)
                await until(results_past(stored), 30, "a result before the kill")
                # streams open right now: on a slow machine the round's jobs may all be done already, so
                # keep the swarm busy with one more task while none is streaming
                end, fed = time.monotonic() + 45, time.monotonic()
                while fo.open < 1:
                    assert time.monotonic() < end, "no stream ever opened"
                    if time.monotonic() - fed > 1.5:
                        await submit(1)
                        fed = time.monotonic()
                    await asyncio.sleep(0.01)
                srv.kill()  # kill -9: no goodbye
                t_kill = time.monotonic()
                await asyncio.sleep(0.7)  # the outage
                publishing = asyncio.create_task(submit(4))  # submitted during the outage: retried, stored once
                srv.start()
                await srv.await_ready()
                outages.append(time.monotonic() - t_kill)
                t_up = time.monotonic()
                await until(lambda: bus.state == "connected", 15, "reconnected")
                n_res = len(state.results)
                await until(results_past(n_res), 30, "a result after the restart")
                recoveries.append(time.monotonic() - t_up)
                await publishing

            def all_final() -> bool:
                if len(state.tasks) < len(submitted):
                    return False
                return all(state.tasks[t].state in FINAL for t in submitted if t in state.tasks)

            await until(all_final, 90, "every task final")
            await asyncio.sleep(0.5)
            jobs = {w.job_id for w in state.workers.values()}
            n_decisions = len(state.decisions)
            dup = dict(state.duplicate_results)
            total = state.spend.total
            await engine.stop()
            engine = None
            evs = await events(cfg)
    finally:
        if engine is not None:
            await engine.stop()
        srv.stop()
    results, spends = per_job(evs, Result), per_job(evs, SpendEntry)
    reported = completed_cost(fo)
    stored_spend = sum(e.cost_usd for e in evs if isinstance(e, SpendEntry))
    cut = sum(1 for r in fo.requests if r["closed_by_client"] or r.get("dropped"))
    print(
        f"\nnats kill -9 x3: {len(submitted)} tasks, {n_decisions} decisions, {len(jobs)} jobs, "
        f"{len(fo.requests)} calls ({cut} cut), outages {[round(x, 2) for x in outages]} s, "
        f"first result after restart {[round(x, 2) for x in recoveries]} s, spend ${stored_spend:.6f} "
        f"= provider ${reported:.6f}"
    )
    assert len(submitted) >= 24  # 6 + 3 rounds x (2 + 4 during the outage), plus any fed to keep it busy
    decided = {tid for e in evs if isinstance(e, Decision) for tid in e.task_ids}
    assert decided >= set(submitted)  # every task decided
    assert not dup
    assert set(results) == jobs and set(results.values()) == {1}  # every job's result stored exactly once
    assert all(e.state == "done" for e in evs if isinstance(e, Result))
    # one SpendEntry per call (each call is an attempt, recorded under its own id), each stored once
    assert {job_of(s) for s in spends} == jobs and len(spends) == len(fo.requests) and set(spends.values()) == {1}
    assert abs(stored_spend - reported) < 1e-9 and abs(total - reported) < 1e-9
    assert len(fo.requests) == len(jobs)  # no job was called twice
    assert not [r for r in fo.requests if r["closed_by_client"]]  # no call was cut


# ---------------------------------------------------------------------------------------------- 2. engine kill -9
async def _spawn_engine(env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await spawn_cli(env, "run", "--headless")
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"engine running" in line, line
    return proc


async def _stop_proc(proc: asyncio.subprocess.Process | None) -> str:
    if proc is None:
        return ""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError:
        proc.kill()
        _out, err = await proc.communicate()
    return err.decode(errors="replace")


async def _status(env: dict[str, str]) -> dict[str, Any]:
    res = await asyncio.to_thread(run_cli, ["status", "--json"], env)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


async def test_engine_process_killed_mid_swarm_and_started_again(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=40, tps=20, cost=0.0002)  # 2 s a job
        env = base_env(
            tmp_path,
            SWARM_NATS_URL=nats_server.url,
            OPENROUTER_API_BASE=fo.base,
            OPENROUTER_API_KEY=KEY,
            SWARM_ACK_WAIT_S="3",
            SWARM_SCALE="3",
        )
        cfg = make_config(tmp_path, nats_server.url, SWARM_ACK_WAIT_S="3")
        bus = await Bus(cfg).connect()
        first = second = None
        try:
            first = await _spawn_engine(env)
            res = await asyncio.to_thread(run_cli, ["budget", "2.5"], env)
            assert res.returncode == 0, res.stderr
            pending, _ = await plan_decision(bus, ["pend-0", "pend-1"], approve=False)
            tags = [f"job-{i}" for i in range(9)]
            d, _ = await plan_decision(bus, tags)
            # mid-swarm: some results stored, three streams open and streaming, the rest queued
            await until(lambda: sum(1 for r in fo.requests if r.get("cost")) >= 2, 30, "two jobs done")
            await fo.wait_open(3, 15)
            await until(lambda: min(r["tokens_sent"] for r in fo.requests if r["t_end"] is None) >= 3, 10, "streaming")
            first.kill()  # kill -9
            await first.wait()
            t_kill = time.monotonic()
            cut = {tag_of(r["body"]) for r in fo.requests if r["t_end"] is None or r["closed_by_client"]}
            await until(lambda: fo.open == 0, 5, "the killed engine's streams closed")
            before = await _status(env)  # the log as the kill left it
            second = await _spawn_engine(env)
            after = await _status(env)
            await until(
                lambda: {tag_of(r["body"]) for r in fo.requests if r.get("cost")} >= set(tags), 60, "every job done"
            )
            t_all = time.monotonic() - t_kill
            redelivered = [r["t_start"] - t_kill for r in fo.requests if tag_of(r["body"]) in cut][len(cut) :]

            evs = await asyncio.wait_for(stored(cfg, len(tags)), 15)
            # the cut attempts are reconciled with GET /generation once the killed engine's records are orphans
            for _ in range(120):
                final = await _status(env)
                if not final["spend"].get("reconciling") and abs(final["spend"]["today_usd"] - fo.billed) < 1e-9:
                    break
                await asyncio.sleep(0.5)
            evs = await events(cfg)
        finally:
            await _stop_proc(first)
            err = await _stop_proc(second)
            await bus.close()
    calls = Counter(tag_of(r["body"]) for r in fo.requests)
    print(
        f"\nengine kill -9: {len(tags)} jobs, {len(cut)} cut mid-stream, re-run "
        f"{[round(x, 2) for x in redelivered]} s after the kill (ack wait 3 s), all done {t_all:.1f} s after "
        f"the kill; {len(fo.requests)} calls; recorded ${final['spend']['today_usd']:.6f} = billed by the "
        f"provider ${fo.billed:.6f} (completed calls ${completed_cost(fo):.6f})"
    )
    assert KEY not in err
    # pending decisions, the ceiling and the spend are as they were
    pend_before = {x["id"] for x in before["decisions"] if x["status"] == "pending"}
    pend_after = {x["id"] for x in after["decisions"] if x["status"] == "pending"}
    assert pending.id in pend_before and pend_after == pend_before
    assert before["spend"]["ceiling_usd"] == after["spend"]["ceiling_usd"] == final["spend"]["ceiling_usd"] == 2.5
    assert after["spend"]["today_usd"] >= before["spend"]["today_usd"] > 0
    assert before["spend"]["by_decision"][d.id] >= 2 * 0.0002 - 1e-9
    # running jobs re-run exactly once, queued ones run once, nothing dispatched or charged twice
    assert len(cut) == 3
    assert {t: n for t, n in calls.items() if n != 1} == dict.fromkeys(cut, 2)
    assert all(x >= 1.0 for x in redelivered) and len(redelivered) == len(cut)
    results, spends = per_job(evs, Result), per_job(evs, SpendEntry)
    assert len(results) == len(tags) and set(results.values()) == {1}
    assert all(e.state == "done" for e in evs if isinstance(e, Result))
    # one SpendEntry per call: each job's, and each cut attempt's (its cost from GET /generation: a Google model
    # bills a cancelled stream in full)
    assert len(spends) == len(tags) + len(cut) == len(fo.requests) and set(spends.values()) == {1}
    assert abs(final["spend"]["today_usd"] - fo.billed) < 1e-9 and fo.billed > completed_cost(fo)
    assert final["decisions"] and {x["status"] for x in final["decisions"] if x["id"] == pending.id} == {"pending"}


# ---------------------------------------------------------------------------------------------- 3. fault matrix
KINDS = ("ok", "429-storm", "5xx-then-ok", "stall", "drop", "error-chunk", "slow-first", "5xx-always", "402")


def kind_of(i: int) -> str:
    """Job i's fault; job 39 gets 429s without end (it must fail after MAX_RATE_LIMITED, not spin)."""
    return "429-forever" if i == 39 else KINDS[i % len(KINDS)]


class Matrix:
    """Scripted answers by job tag and attempt: each kind of fault, repeated over 40 jobs."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> Answer:
        tag = tag_of(body)
        n = self.attempts[tag]
        self.attempts[tag] += 1
        kind = kind_of(int(tag.split("-")[1]))
        ok = Answer(tokens=6, tps=60, cost=0.00003)
        fault: Answer | None = None
        if kind == "429-storm" and n < 3:
            fault = Answer(status=429, retry_after=0.3)
        elif kind == "429-forever":
            fault = Answer(status=429, retry_after=0.05)
        elif kind == "5xx-then-ok" and n < 2:
            fault = Answer(status=(500, 502, 503)[n])
        elif kind == "5xx-always":
            fault = Answer(status=503)
        elif kind == "stall" and n == 0:
            fault = Answer(tokens=6, stall_after=2, stall_s=10)
        elif kind == "drop" and n == 0:
            fault = Answer(tokens=6, drop_after=3)
        elif kind == "error-chunk":
            fault = Answer(tokens=6, error_after=2, error_code=400)  # a code that is not retried
        elif kind == "slow-first":
            return Answer(tokens=6, tps=60, cost=0.00003, first_token_delay=0.5)
        elif kind == "402" and n == 0:
            fault = Answer(status=402)
        if fault is None:
            return ok
        self.injected[kind] += 1
        return fault


async def test_provider_fault_matrix_at_load_every_job_ends_clearly_under_the_ceiling(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    ceiling = 0.0009  # room for about 25 of the 40 jobs' worst cases: the rest wait over budget
    async with FakeOpenRouter() as fo:
        matrix = Matrix()
        fo.default = matrix
        cfg = swarm_config(
            make_config,
            tmp_path,
            nats_server.url,
            fo.base,
            swarm__scale=20,
            swarm__max_retries=2,
            swarm__first_token_timeout_s=1.5,
            budget__daily_usd=ceiling,
            openrouter__key_poll_s=0.4,
            swarm__ack_wait_s=5.0,
        )
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus, conductor=False)
        await engine.start()
        state = engine.state
        tags = [f"job-{i}" for i in range(40)]
        try:
            t0 = time.monotonic()
            d, _ = await plan_decision(bus, tags, max_tokens=200)

            def settled() -> bool:  # every job final, or held back by the ceiling
                ws = [w for w in state.workers.values() if w.decision_id == d.id]
                return len(ws) == 40 and all(w.state in FINAL or w.state == "over_budget" for w in ws)

            await until(settled, 90, "every job final or over budget")
            t_settled = time.monotonic() - t0
            spend = engine.get(SpendGuard)
            assert spend is not None
            over = [w.worker_id for w in state.workers.values() if w.state == "over_budget"]
            ledger = spend.ledger()
            peak_used = ledger["spent"] + sum(r["usd"] for r in ledger["reserved"].values())
            await engine.controls.handle("cancel", {"all": True})
            await until(lambda: sum(1 for r in state.results.values() if r.decision_id == d.id) == 40, 15, "40 results")
            t_all = time.monotonic() - t0
            await asyncio.sleep(0.3)
            # attempts cut without usage.cost (stall, drop, error chunk) are reconciled with GET /generation
            await until(lambda: abs(state.spend.total - fo.billed) < 1e-9, 30, "every attempt reconciled")
            total = state.spend.total
            await spend.refresh()
            ledger = spend.ledger()
        finally:
            await engine.stop()
        evs = await events(cfg)
    results = {r.job_id: r for r in evs if isinstance(r, Result)}
    states = Counter(r.state for r in results.values())
    calls = len(fo.requests)
    print(
        f"\nfault matrix: 40 jobs, {calls} calls, faults injected {dict(matrix.injected)}; states {dict(states)}; "
        f"{len(over)} held over budget then cancelled; settled in {t_settled:.1f} s, all final {t_all:.1f} s; "
        f"recorded ${total:.6f} = billed ${fo.billed:.6f} <= ceiling ${ceiling}, peak ledger "
        f"${peak_used:.6f}"
    )
    assert len(results) == 40 and set(per_job(evs, Result).values()) == {1}
    for r in results.values():
        assert r.state in FINAL
        if r.state != "done":
            assert r.reason, r
    assert total <= ceiling + 1e-12 and ledger["spent"] <= ceiling + 1e-12 and peak_used <= ceiling + 1e-12
    assert abs(total - fo.billed) < 1e-9 and abs(ledger["spent"] - fo.billed) < 1e-9
    # the ceiling held jobs back; cancel ended each one clearly, unless an attempt reconciled below its worst case
    # freed money first and the held job went on to run (the guard's design: over budget waits, then goes)
    assert over
    for wid in over:
        seen = [e.state for e in evs if isinstance(e, WorkerEvent) and e.worker_id == wid]
        held_then = seen[len(seen) - 1 - seen[::-1].index("over_budget") :]
        (res,) = [r for r in results.values() if r.worker_id == wid]
        assert res.state == "cancelled" or "running" in held_then, (wid, seen, res.state)
    for r in results.values():
        tv = state.tasks[r.task_id]
        kind = kind_of(int(tv.task.text.split()[0].split("-")[1]))
        if r.state == "cancelled":
            assert "cancelled" in r.reason
        elif kind in ("error-chunk",):
            assert r.state == "failed" and "error mid-stream" in r.reason
        elif kind == "5xx-always":
            assert r.state == "failed" and "after 2 retries" in r.reason
        elif kind == "429-forever":
            assert r.state == "failed" and "429" in r.reason
        else:
            assert r.state == "done", (kind, r.reason)
    assert sum(matrix.injected.values()) >= 30


# ---------------------------------------------------------------------------------------------- 4. laptop sleep
async def test_laptop_sleep_one_beat_on_wake_and_each_due_decision_expired_once(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    jump = [0.0]
    # Only the engine's clocks jump here; JetStream stores with the real one, so the engine's events would be
    # dated 8 h after their storage and refused. On a real laptop both jump together.
    monkeypatch.setattr(trust, "CLOCK_SKEW_S", 9 * 3600.0)
    cfg: Config = make_config(tmp_path, nats_server.url).replace(
        heartbeat__debounce_s=0.2, heartbeat__interval_s=5.0, heartbeat__review_s=60.0, approval__expire_s=30.0
    )
    bus = Bus(cfg)
    await bus.connect()
    wall = lambda: time.time() + jump[0]  # noqa: E731
    mono = lambda: time.monotonic() + jump[0]  # noqa: E731
    engine = Engine(cfg, bus, clock=wall)
    cond = engine.add(
        Conductor(
            ConductorSettings.of(cfg, use_ollama=False, tick_s=0.05),
            bus,
            engine.state,
            guards=ConductorGuards(lane=LocalLane()),
            clocks=Clocks(wall=wall, monotonic=mono),
        )
    )
    await engine.start()
    try:
        stale = [await plan_decision(bus, [f"old-{i}"], approve=False, expires_in=20) for i in range(3)]
        await until(lambda: len(engine.state.pending_decisions()) == 3, 5, "three pending decisions")
        await asyncio.sleep(0.4)
        beats_before = cond.beats
        jump[0] += 8 * 3600.0  # the lid was closed overnight: both clocks jump 8 hours
        t0 = time.monotonic()
        await until(lambda: cond.beats > beats_before, 5, "a beat on wake")
        t_wake = time.monotonic() - t0
        await until(lambda: not any(engine.state.decisions[d.id].status == "pending" for d, _ in stale), 5, "expired")
        await asyncio.sleep(1.0)  # a backlog would show here: 8 h / 5 s = 5760 beats
        beats = cond.beats - beats_before
        nxt = cond.info()["next_beat_s"]
    finally:
        await engine.stop()
    evs = await events(cfg)
    expired = Counter(e.decision_id for e in evs if isinstance(e, Approval) and e.action == "expired")
    print(
        f"\nlaptop sleep 8 h: {beats} beat(s) on wake after {t_wake:.2f}s, {len(expired)} decisions expired "
        f"{set(expired.values())} time(s) each, next beat in {nxt}s"
    )
    assert beats == 1
    assert {d.id for d, _ in stale} <= set(expired) and set(expired.values()) == {1}
    assert nxt is not None and nxt > 3  # the next beat is a period after the wake, not overdue

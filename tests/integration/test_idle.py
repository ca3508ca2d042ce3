"""An idle engine and app sleep until something happens, and wake at once when it does (idle CPU, issue 16).

The timers that used to tick at rest now wait longer or for an event: the pool's pull request is a long poll,
the spend guard's ledger is re-read on events, the notifier looks on events and bus changes, the conductor
sleeps until a beat or an expiry is due, the RAM guard tells of real moves, and the app polls the engine's info
every ``idle_tick_s`` at rest but at once on an event, a key or a RAM move. Each test checks the "at once".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.attention.notifier import IDLE_TICK_S, Notifier
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.nats_compat import ask_flow_control, count_delivered, flow_control_task
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards import memory
from swarm_tui.engine.guards.ceiling_kv import publish_base
from swarm_tui.engine.guards.memory import MOVE_MB, RamGuard, meminfo_mb
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.protocols import RamReading
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.settings import ConductorSettings
from swarm_tui.engine.swarm import fetch as fetch_mod
from swarm_tui.engine.swarm import pool as pool_mod
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.tui import app as app_mod
from swarm_tui.tui.render_scheduler import RenderTuning
from tests.support.env import make_config
from tests.support.polling import timed, until
from tests.support.swarm_kit import approve, make_job
from tests.support.tui import SIZE, make_app, started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- the bus
async def test_event_follower_heartbeats_every_15s_and_answers_flow_control_when_asked(bus: Bus) -> None:
    seen: list[int] = []
    follower = await bus.replay(lambda subject, ev, seq: seen.append(seq), follow=True)
    psub = follower.subscription
    assert psub is not None
    try:
        info = await psub.consumer_info()
        assert info.config.idle_heartbeat == 15.0
        fc_task = flow_control_task(psub)
        assert fc_task is not None and fc_task.get_name() == "events-flow-control"  # not nats-py's 0.25 s poll
        assert bus.nc is not None
        replies: list[str] = []

        async def on_reply(msg: Any) -> None:
            replies.append(msg.subject)

        sub = await bus.nc.subscribe("fc.test.>", cb=on_reply)
        # the server asks for a reply once the messages before its request are handed over: here at once
        ask_flow_control(psub, "fc.test.one")
        await until(lambda: replies == ["fc.test.one"], 3, "the flow-control reply")
        # ... and here only after one more message is delivered (nats-py's own test, looked at every 0.25 s)
        ask_flow_control(psub, "fc.test.two", after=1)
        await asyncio.sleep(0.6)
        assert replies == ["fc.test.one"]
        count_delivered(psub)
        await until(lambda: replies == ["fc.test.one", "fc.test.two"], 3, "the held flow-control reply")
        await sub.unsubscribe()
        # events still flow
        t = Task(id=new_id("t"), text="after", created_at=time.time())
        await bus.publish_event(t, msg_id=t.id)
        await until(lambda: seen, 5, "the event")
    finally:
        task = flow_control_task(psub)
        await follower.stop()
    await asyncio.sleep(0)
    assert task is not None and (task.cancelled() or task.done())  # unsubscribing ends it


# ---------------------------------------------------------------------------------------------- the pool
async def test_an_idle_pool_takes_a_job_at_once_and_pulls_again_right_after_a_reconnect(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "nats-store", port=free_port(), memory_mb=64, disk_mb=1024).run()
    engine = None
    try:
        cfg = make_config(tmp_path, srv.url, SWARM_DEMO_TPS="400").replace(demo__tokens=5)
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus, demo=True, conductor=False)
        await engine.start()
        pool = engine.get(pool_mod.Pool)
        assert pool is not None
        await until(lambda: pool.fetches["cloud"].pending is not None, 5, "the idle pull request")
        await asyncio.sleep(0.3)

        def running(d_id: str) -> bool:
            return any(w.decision_id == d_id and w.state != "queued" for w in engine.state.workers.values())

        d = await approve(bus, 1, demo=True)
        took = await timed(lambda: running(d.id), 10, "the job taken")
        assert took < 2.0, (
            f"an idle pool took {took:.2f}s to take a job (its pull lasts {fetch_mod.FETCH_IDLE_WAIT_S}s)"
        )
        await until(lambda: len(engine.state.results) == 1, 20, "the result")
        # a cluster's failover: the consumer's new leader does not have our pull request; its advisory re-pulls
        pending = await until(lambda: pool.fetches["cloud"].pending, 5, "the next pull request")
        assert bus.nc is not None
        await bus.nc.publish(pool_mod.leader_elected("cloud"), b"{}")
        await until(lambda: pending.cancelled(), 3, "the pull request dropped on the advisory")
        await until(
            lambda: pool.fetches["cloud"].pending is not None and pool.fetches["cloud"].pending is not pending,
            3,
            "a new pull request",
        )
        srv.kill()
        await until(lambda: bus.state != "connected", 10, "the loss")
        srv.start()
        await srv.await_ready()
        await until(lambda: bus.state == "connected", 15, "reconnected")
        await asyncio.sleep(0.5)
        d2 = await approve(bus, 1, demo=True)
        took = await timed(lambda: running(d2.id), 20, "the job after the reconnect")
        assert took < 5.0, f"{took:.2f}s after a reconnect: the dead pull request was waited out"
        await until(lambda: len(engine.state.results) == 2, 20, "the second result")
    finally:
        if engine is not None:
            await engine.stop()
        srv.stop()


async def test_jobs_beyond_the_free_slots_of_a_long_pull_are_held(cfg: Config) -> None:
    bus = await Bus(cfg).connect()
    p = build_pool(cfg.replace(swarm__scale=1, openrouter__api_key="k"), bus, host="test")
    accepted: list[str] = []
    held: list[str] = []

    async def accept(m: Any) -> None:
        accepted.append(m)

    async def hold(m: Any) -> None:
        held.append(m)

    class Psub:
        def __init__(self) -> None:
            self.calls = 0

        async def fetch(self, n: int, timeout: float) -> list[str]:
            self.calls += 1
            if self.calls > 1:
                await asyncio.sleep(3600)
            p.set_scale(1)  # the scale went down from 3 during the wait
            return ["a", "b", "c"]

    p.scale = 3
    p.fetches["cloud"].psub = Psub()  # type: ignore[assignment]  # a pull subscription that only fetches
    p._accept = accept  # type: ignore[method-assign]
    p.fetches["cloud"].hold = hold  # type: ignore[method-assign]  # seen, not heartbeated
    task = asyncio.create_task(p._fetch_loop("cloud"))
    try:
        await until(lambda: accepted and held, 3, "the split")
        assert accepted == ["a"] and held == ["b", "c"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.close()


# ---------------------------------------------------------------------------------------------- the guards
async def test_the_spend_guard_at_rest_rereads_the_ledger_on_the_next_event(cfg: Config) -> None:
    bus = await Bus(cfg).connect()
    other = await Bus(cfg).connect()
    guard = SpendGuard(SpendSettings.of(cfg), bus, None, PriceBook(cfg.openrouter, cfg.paths), refresh_s=0.05)
    writer = SpendGuard(SpendSettings.of(cfg), other, None, PriceBook(cfg.openrouter, cfg.paths))
    await guard.start()
    try:
        await asyncio.sleep(0.5)  # three quiet refreshes: now at rest (IDLE_REFRESH_S)
        await publish_base(other, cfg.budget.daily_usd, time.time())  # an engine's ceiling: a worker spends under it
        res = await writer.reserve(make_job("d-1"))  # another process reserves
        assert res.ok, res.reason
        await asyncio.sleep(0.5)
        assert not guard.ledger()["reserved"]  # at rest: not re-read on a timer
        guard.on_event(Task(id="t-1", text="x", created_at=time.time()))  # its event reaches this engine
        await until(lambda: guard.ledger()["reserved"], 3, "the ledger re-read on the event")
    finally:
        await guard.stop()
        await writer.stop()
        await bus.close()
        await other.close()


async def test_the_notifier_at_rest_looks_at_once_when_the_bus_changes(cfg: Config) -> None:
    cfg = cfg.replace(notify__bus_grace_s=0.3)
    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    notifier = engine.add(Notifier(cfg.notify, bus, engine.state))
    await engine.start()
    try:
        await until(lambda: notifier.attention._started, 5, "the baseline look")
        assert notifier._tick() == IDLE_TICK_S  # nothing happened: at rest
        await bus.set_state("reconnecting")
        took = await timed(lambda: "bus" in notifier.attention.since, 5, "the bus need")
        assert took < 2.0
        await bus.set_state("connected")
        await until(lambda: "bus" not in notifier.attention.since, 2, "the bus back")
    finally:
        await engine.stop()


async def test_the_conductor_expires_a_decision_on_time_without_ticking(tmp_path: Path, nats_server: Any) -> None:
    cfg = make_config(tmp_path, nats_server.url, OLLAMA_HOST="http://127.0.0.1:9").replace(
        approval__expire_s=1.0, heartbeat__debounce_s=0.05
    )
    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    cond = engine.add(Conductor(ConductorSettings.of(cfg, use_ollama=False), bus, engine.state))  # the default tick_s
    assert cond.tick_s >= 5.0
    await engine.start()
    try:
        t = Task(id=new_id("t"), text="waits", created_at=time.time())
        await bus.publish_event(t, msg_id=t.id)
        d = (await until(lambda: engine.state.pending_decisions(), 10, "the decision"))[0]
        left = d.decision.expires_at - time.time()
        took = await timed(lambda: engine.state.decisions[d.id].status == "expired", 10, "the expiry")
        assert took < left + 1.0, f"expired {took - left:.2f}s late"
    finally:
        await engine.stop()


class Machine:
    def __init__(self, available_mb: float) -> None:
        self.available_mb = available_mb

    def __call__(self) -> RamReading:
        return RamReading(total_mb=8192, available_mb=self.available_mb, own_rss_mb=90, children_rss_mb=20)


async def test_the_ram_guard_tells_of_real_moves_only(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)  # headroom 1536 MB
    m = Machine(4000)
    g = RamGuard(cfg.ram, cfg.ollama, source=m, ollama_ps=None)
    told: list[float] = []
    g.on_move(lambda: told.append(g.reading().available_mb))
    await g.sample()  # the first reading is the baseline
    for _ in range(3):  # drifts smaller than MOVE_MB, adding up to more than it: told once
        m.available_mb -= MOVE_MB * 0.4
        await g.sample()
    assert len(told) == 1 and told[0] < 4000 - MOVE_MB
    m.available_mb = 1500  # below the headroom
    await g.sample()
    m.available_mb = 1540  # back above it: a small move, but the low state changed
    await g.sample()
    assert told[1:] == [1500, 1540]


async def test_the_ram_guard_reads_meminfo_on_the_loop_and_rss_at_rest_seldom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    total, avail = meminfo_mb()
    vm = psutil.virtual_memory()
    assert total == pytest.approx(vm.total / memory.MB, rel=0.001)
    assert avail == pytest.approx(vm.available / memory.MB, rel=0.05)
    calls: list[float] = []
    real = memory.own_rss_mb

    def counted() -> tuple[float, float]:
        calls.append(time.monotonic())
        return real()

    monkeypatch.setattr(memory, "own_rss_mb", counted)
    cfg = make_config(tmp_path)
    g = RamGuard(cfg.ram, cfg.ollama, ollama_ps=None, sample_s=0.2)
    for _ in range(5):
        r = await g.sample()
    assert len(calls) == 1 and r.own_rss_mb > 10  # read once, kept for RSS_REFRESH_S


# ---------------------------------------------------------------------------------------------- the app
async def test_the_app_polls_info_seldom_at_rest_and_at_once_on_an_event_a_key_or_a_ram_move(
    engine: Engine, observer: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_mod, "TUNING", RenderTuning(active_s=0.3, idle_tick_s=30.0))
    m = Machine(4000)
    engine.add(RamGuard(engine.cfg.ram, engine.cfg.ollama, source=m, ollama_ps=None, sample_s=0.1))
    app = make_app(engine)
    polls: list[float] = []
    refresh = app.link.refresh_info

    async def counted() -> Any:
        polls.append(time.monotonic())
        return await refresh()

    app.link.refresh_info = counted  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await asyncio.sleep(1.5)  # the tick set before the engine was ready has passed: at rest now
        n = len(polls)
        await asyncio.sleep(1.5)
        assert len(polls) == n, "polled at rest"

        t = Task(id=new_id("t"), text="something happens", created_at=time.time())
        await observer.publish_event(t, msg_id=t.id)
        await until(lambda: len(polls) > n, 1.5, "a poll on the event")
        await asyncio.sleep(1.5)  # one more tick a second later, then at rest again
        n = len(polls)
        await asyncio.sleep(1.5)
        assert len(polls) == n, "polled at rest after the event"

        await pilot.press("down")
        await until(lambda: len(polls) > n, 1.5, "a poll on the key")
        await asyncio.sleep(1.5)
        n = len(polls)
        m.available_mb -= 500  # a real RAM move (the guard samples every 0.1 s)
        await until(lambda: len(polls) > n, 1.5, "a poll on the RAM move")
        await until(lambda: dict(app.info.get("ram") or {}).get("available_mb") == 3500, 2, "the new reading shown")

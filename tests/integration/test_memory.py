"""The RAM guard: a simulated 6 GB machine, Ollama's /api/ps, psutil readings, and who is held back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.memory import RamGuard, parse_ps, psutil_reading, ram_snapshot
from swarm_tui.engine.guards.protocols import RamReading
from swarm_tui.engine.heartbeat.envelope import ReadyTask, RoleSpec, compute_envelope
from swarm_tui.engine.heartbeat.local_model import Advisor
from swarm_tui.engine.info import RamInfo, usable
from tests.support.env import make_config
from tests.support.fake_ollama import FakeOllama


class Machine:
    """A simulated 6 GB machine whose available memory the test moves."""

    def __init__(self, available_mb: float) -> None:
        self.available_mb = available_mb
        self.reads = 0

    def __call__(self) -> RamReading:
        self.reads += 1
        return RamReading(total_mb=6144, available_mb=self.available_mb, own_rss_mb=90, children_rss_mb=20)


async def test_low_headroom_on_a_6gb_machine_and_recovery(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)  # headroom 1536 MB by default
    m = Machine(1200)
    now = [1000.0]
    g = RamGuard(cfg.ram, cfg.ollama, source=m, ollama_ps=None, clock=lambda: now[0], sample_s=0.05)
    await g.start()
    try:
        assert g.low and not g.headroom_ok()
        info = g.info()
        assert info["total_mb"] == 6144 and info["available_mb"] == 1200 and info["low"] is True
        assert info["headroom_mb"] == 1536 and info["own_rss_mb"] == 90 and info["children_rss_mb"] == 20
        waiter = asyncio.create_task(g.wait_headroom(extra_mb=500, timeout=5))
        await asyncio.sleep(0.15)
        assert not waiter.done()  # still low: local work waits
        m.available_mb = 3000  # memory frees
        assert await asyncio.wait_for(waiter, 2) is True
        assert g.headroom_ok() and g.headroom_ok(extra_mb=1400) and not g.headroom_ok(extra_mb=1500)
        assert g.info()["low"] is False and g.low_since is None
        assert await g.wait_headroom(timeout=0) is True
        m.available_mb = 100
        await g.sample()
        assert await g.wait_headroom(timeout=0.2) is False
        assert m.reads >= 3  # the timer samples
        assert {mb for _, mb in g.history()} >= {1200, 3000}
    finally:
        await g.stop()


async def test_low_headroom_holds_local_work_only(tmp_path: Path) -> None:
    """What the conductor and the pool ask the guard: local inference deferred, cloud workers not held."""
    cfg = make_config(tmp_path)
    m = Machine(1200)
    g = RamGuard(cfg.ram, cfg.ollama, source=m, ollama_ps=None)
    await g.sample()
    advisor = Advisor(cfg.ollama, LocalLane(), ram=g)
    roles = [
        RoleSpec("research", "openrouter/google/gemini-2.5-flash-lite", 800),
        RoleSpec("local", "ollama_chat/gemma2:2b", 500),
    ]
    tasks = [ReadyTask("t-1", "summarise the docs")]

    def envelope() -> dict[str, object]:
        env = compute_envelope(
            roles,
            tasks,
            scale=10,
            live_workers=0,
            max_per_task=3,
            estimate=lambda model, chars, mt: (0.0, 0.0),
            remaining_usd=1.0,
            ram_ok=g.headroom_ok(),
            now=time.time(),
        )
        return {"roles": sorted(env.roles), "excluded": env.excluded}

    low = envelope()
    assert low["roles"] == ["research"] and "RAM headroom" in str(low["excluded"])
    assert advisor.keep_alive() == 0  # the heartbeat's model is unloaded after each call
    m.available_mb = 3000
    await g.sample()
    ok = envelope()
    assert ok["roles"] == ["local", "research"] and ok["excluded"] == {}
    assert advisor.keep_alive() == cfg.ollama.keep_alive


async def test_ollama_loaded_models_are_read(tmp_path: Path) -> None:
    async with FakeOllama() as fo:
        fo.loaded = [{"name": "gemma2:2b", "size": 2_000_000_000}]
        cfg = make_config(tmp_path, OLLAMA_HOST=fo.url)
        m = Machine(4000)
        g = RamGuard(cfg.ram, cfg.ollama, source=m)
        r = await g.sample()
        assert r.local_models == [{"name": "gemma2:2b", "size_mb": pytest.approx(1907.3, abs=0.1)}]
        assert g.loaded_mb("ollama_chat/gemma2:2b") == pytest.approx(1907.3, abs=0.1)
        assert g.loaded_mb("ollama_chat/llama3:8b") is None
        assert g.ollama_reachable is True
        asked = sum(1 for q in fo.requests if q["path"] == "/api/ps")
        await g.sample()  # at rest (available RAM did not move): the models known are kept, Ollama is not asked
        assert sum(1 for q in fo.requests if q["path"] == "/api/ps") == asked
        # size includes the part on a GPU (size_vram): only the rest takes RAM. A model moving moves available
        # RAM, and a move asks Ollama at once.
        fo.loaded = [{"name": "gemma2:2b", "size": 2_000_000_000, "size_vram": 1_500_000_000}]
        m.available_mb += 1430
        r = await g.sample()
        assert r.local_models == [{"name": "gemma2:2b", "size_mb": pytest.approx(476.8, abs=0.1)}]
        assert g.info()["local_models"][0]["name"] == "gemma2:2b"
        fo.loaded = []
        m.available_mb += 477
        assert (await g.sample()).local_models == []
        assert any(r["path"] == "/api/ps" for r in fo.requests)


async def test_unreachable_ollama_means_no_models(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)  # OLLAMA_HOST points at the discard port
    g = RamGuard(cfg.ram, cfg.ollama, source=Machine(4000))
    t0 = time.monotonic()
    r = await g.sample()
    assert r.local_models == [] and g.ollama_reachable is False
    assert time.monotonic() - t0 < 2.5
    assert parse_ps({"models": [{"name": "x", "size": "big"}, "junk", {"size": 5}]}) == []
    assert parse_ps("not a dict") == []


async def test_psutil_readings_include_children(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """The default source: the system, this process, and its children (here the nats-server we started)."""
    r = psutil_reading()
    assert r.total_mb > 0 and 0 < r.available_mb <= r.total_mb and r.own_rss_mb > 10
    assert r.children_rss_mb > 1  # the nats-server of the fixture is our child
    cfg = make_config(tmp_path, nats_server.url)
    g = RamGuard(cfg.ram, cfg.ollama, ollama_ps=None)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await g.start()  # the first reading runs in a thread
    await g.stop()
    assert loop.time() - t0 < 2
    assert g.reading().total_mb == pytest.approx(r.total_mb, rel=0.01)
    snap = ram_snapshot(cfg)
    assert snap["children_rss_mb"] > 1 and snap["headroom_mb"] == 1536 and snap["local_models"] == []


async def test_history_is_bounded(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    now = [0.0]
    g = RamGuard(cfg.ram, cfg.ollama, source=Machine(2000), ollama_ps=None, clock=lambda: now[0], sample_s=60)
    for _ in range(50):
        now[0] += 60
        await g.sample()
    h = g.history()
    assert len(h) == 11 and h[-1][0] == 3000.0 and h[0][0] == 2400.0  # ~10 minutes kept
    assert len(g.info()["history"]) == 11


async def test_pool_holds_local_workers_while_ram_is_low(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """The real pool: cloud jobs run, local (ollama_chat/) jobs wait for headroom, then run when RAM frees."""
    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.wire import ChatMessage, Job
    from tests.support.fake_openrouter import FakeOpenRouter

    # Ollama runs in its own thread and loop, as a real server would: litellm's ollama_chat success logging
    # makes a synchronous HTTP call to /api/show from the event loop, which would deadlock a fake on the same loop.
    fol, stop_ollama = _ollama_in_thread()
    fol.default = "a local answer"
    async with FakeOpenRouter() as fo:
        cfg = make_config(
            tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY="sk-test", OLLAMA_HOST=fol.url
        ).replace(ram__sample_s=0.2)
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus, conductor=False)
        m = Machine(1200)
        guard = engine.get(RamGuard)
        assert guard is not None
        guard.source = m  # a 6 GB machine with too little available
        await engine.start()
        state = engine.state
        try:
            models = ["openrouter/google/gemini-2.5-flash-lite"] * 3 + ["ollama_chat/gemma2:2b"] * 2
            for i, model in enumerate(models):
                j = Job(
                    id=f"d-r-j{i}",
                    worker_id=f"d-r-w{i}",
                    decision_id="d-r",
                    task_id="t-r",
                    role="r",
                    model=model,
                    max_tokens=50,
                    messages=[ChatMessage(role="user", content="hi")],
                    created_at=time.time(),
                )
                await bus.publish(
                    S.job("local" if model.startswith("ollama") else "cloud", j.id), j.to_bytes(), msg_id=j.id
                )
            for _ in range(200):
                cloud_done = sum(r.state == "done" for r in state.results.values() if r.model.startswith("openrouter"))
                held = [
                    w
                    for w in state.workers.values()
                    if w.model.startswith("ollama_chat") and w.state == "waiting" and "RAM headroom" in w.reason
                ]
                if cloud_done == 3 and len(held) == 2:
                    break
                await asyncio.sleep(0.05)
            assert cloud_done == 3 and len(held) == 2  # cloud workers are not held back by RAM
            assert fol.chats() == []  # no local inference while headroom is low
            m.available_mb = 3000  # memory frees
            for _ in range(200):
                if len(state.results) == 5:
                    break
                await asyncio.sleep(0.05)
            assert len(state.results) == 5 and all(r.state == "done" for r in state.results.values())
            assert len(fol.chats()) == 2
            info = usable(engine.info()["ram"])
            assert info is not None and "history" in info  # the guard's info, not a one-off reading
            info = cast(RamInfo, info)
            assert info["total_mb"] == 6144 and info["low"] is False and len(info["history"]) >= 2
        finally:
            await engine.stop()
            stop_ollama()


def _ollama_in_thread() -> tuple[FakeOllama, Callable[[], None]]:
    loop = asyncio.new_event_loop()
    fol = FakeOllama()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fol.__aenter__())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(fol.__aexit__(None, None, None))
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)

    return fol, stop

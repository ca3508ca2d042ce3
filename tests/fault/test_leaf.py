"""The laptop as a leaf node: the engine and its workers on a hub, the app on a leaf (the embedded server joins
the hub with ``nats.leaf_url``); the leaf's link cut and restored mid-swarm.

The swarm goes on on the hub while the link is down; the app shows the hub as lost, then catches up from the
log: its state equals the hub's afterwards, and nothing is lost. The CLI on the leaf uses the same local URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.topology import describe
from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.tui.link import RemoteLink
from tests.fault.test_faults import per_job, plan_decision
from tests.support.cluster import Cuttable, Hub
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, events, swarm_config

pytestmark = pytest.mark.fault


def digest(s: SwarmState) -> dict[str, Any]:
    """What the screen shows, without the clock: tasks, decisions, workers, results, spend."""
    return {
        "tasks": {t.id: (t.state, len(t.results)) for t in s.tasks.values()},
        "decisions": {d.id: d.status for d in s.decisions.values()},
        "workers": {w: e.state for w, e in s.workers.items()},
        "results": sorted(s.results),
        "spend": round(s.spend.total, 9),
        "spend_entries": sorted(s.spend_entries),
    }


async def test_leaf_link_cut_and_restored_mid_swarm_the_ui_catches_up(tmp_path: Path) -> None:
    hub = Hub(tmp_path).start()
    relay = await Cuttable(hub.leaf_port).start()
    engine = link = None
    try:
        async with FakeOpenRouter() as fo:
            fo.default = Answer(tokens=30, tps=15, cost=0.0003)  # 2 s a job
            cfg = swarm_config(make_config, tmp_path / "hub-engine", hub.url, fo.base, swarm__scale=3)
            bus = await Bus(cfg).connect()
            engine = assemble(cfg, bus, conductor=False)
            await engine.start()
            leaf_env = base_env(tmp_path / "laptop", SWARM_NATS_LEAF_URL=f"nats-leaf://127.0.0.1:{relay.port}")
            leaf_cfg = make_config(tmp_path / "laptop", SWARM_NATS_LEAF_URL=f"nats-leaf://127.0.0.1:{relay.port}")
            link = RemoteLink(leaf_cfg, None)
            t0 = time.monotonic()
            await link.start()
            attached = time.monotonic() - t0

            async def poll_info() -> None:  # as the app does (its info poll, every second)
                while True:
                    await link.refresh_info()
                    await asyncio.sleep(1.0)

            poller = asyncio.create_task(poll_info())
            assert link.bus is not None and link.bus.leaf and link.bus.kind == "embedded"
            shape = await describe(link.bus)
            assert shape["kind"] == "leaf", shape
            res = await asyncio.to_thread(run_cli, ["status", "--json"], leaf_env)  # the CLI: the same local URL
            assert res.returncode == 0, res.stderr
            st = json.loads(res.stdout)
            assert st["bus"]["kind"] == "embedded-shared" and st["bus"]["topology"]["kind"] == "leaf", st["bus"]
            assert st["engine"] is not None  # the hub's engine answers across the link
            # writes from the laptop reach the hub: an event (a task from the CLI) and a KV key (the leaf's mappings)
            res = await asyncio.to_thread(run_cli, ["submit", "from-the-laptop please"], leaf_env)
            assert res.returncode == 0, res.stderr
            await until(lambda: any(t.task.text.startswith("from-the-laptop") for t in engine.state.tasks.values()), 10)
            kv = await link.bus.kv(S.KV_STATE)
            await kv.put("leaf-probe", b"1")
            assert (await (await bus.kv(S.KV_STATE)).get("leaf-probe")).value == b"1"

            tags = [f"job-{i}" for i in range(18)]
            await plan_decision(bus, tags)
            await until(lambda: len(link.state.results) >= 3, 30, "the UI sees results")
            relay.cut()
            t_cut = time.monotonic()
            seen_at_cut = len(link.state.results)
            await until(lambda: len(engine.state.results) >= seen_at_cut + 6, 60, "the swarm goes on")
            # longer than the hub keeps an ephemeral consumer without interest (5 s): the UI's is gone
            await asyncio.sleep(max(0.0, 7.0 - (time.monotonic() - t_cut)))
            await until(lambda: link.bus_state == "hub lost", 5, "the UI shows the hub lost")
            state_while_cut = link.bus_state
            behind = len(engine.state.results) - len(link.state.results)
            relay.restore()
            t_back = time.monotonic()
            on_hub = set(engine.state.results)
            await until(lambda: set(link.state.results) >= on_hub, 30, "the UI has what the hub had")
            caught_up = time.monotonic() - t_back
            await until(lambda: len(engine.state.results) == len(tags), 60, "every job done on the hub")
            await until(lambda: digest(link.state) == digest(engine.state), 30, "the UI equals the hub")
            state_after = link.bus_state
            poller.cancel()
            evs = await events(cfg)
    finally:
        if link is not None:
            await link.stop()
        if engine is not None:
            await engine.stop()
        await relay.stop()
        hub.stop()
    print(
        f"\nleaf: attached in {attached:.2f} s; link cut {t_back - t_cut:.1f} s mid-swarm, the UI {behind} results "
        f"behind the hub and showing 'bus {state_while_cut}'; caught up {caught_up:.2f} s after the link came back"
    )
    assert state_while_cut == "hub lost" and state_after == "connected"
    assert behind >= 6
    results = per_job(evs, Result)
    assert len(results) == len(tags) and set(results.values()) == {1}
    assert abs(engine.state.spend.total - fo.billed) < 1e-9
    assert KEY not in res.stdout

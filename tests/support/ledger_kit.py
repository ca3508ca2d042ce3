"""Helpers of the hostile-ledger suites (tests/fault/test_hostile_ledger.py, test_hostile_reconcile.py): a clock
that jumps, a spend guard and an engine on a clock, one call billed by the fake, the attempt records."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from nats.js.errors import KeyNotFoundError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, ChatMessage, Decision, Job, PlanItem, Task, job_id, new_id, worker_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.ceiling_kv import publish_base
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.reconcile import Reconciler
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from tests.support.env import make_config
from tests.support.fake_openrouter import FakeOpenRouter

KEY = "sk-or-v1-test-secret-0123456789"
MODEL = "openrouter/google/gemini-2.5-flash-lite"  # google/: its provider bills a cancelled stream in full
BARE = MODEL.removeprefix("openrouter/")
DAY = 86400.0


class Clock:
    """A wall clock that runs from ``start`` and jumps when told."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def last_midnight() -> float:
    now = time.time()
    return now - now % DAY


def config(tmp_path: Path, srv: EmbeddedServer, base: str, ceiling: float, **values: Any) -> Config:
    cfg = make_config(
        tmp_path, srv.url, OPENROUTER_API_BASE=base, OPENROUTER_API_KEY=KEY, SWARM_BUDGET_USD=str(ceiling)
    )
    return cfg.replace(**values) if values else cfg


def a_job(i: int, *, decision: str = "d-1", max_tokens: int = 1000, created_at: float = 0.0) -> Job:
    return Job(
        id=job_id(decision, i),
        worker_id=worker_id(decision, i),
        decision_id=decision,
        task_id="t-1",
        role="research",
        model=MODEL,
        max_tokens=max_tokens,
        messages=[ChatMessage(role="user", content=f"hello {i}")],
        created_at=created_at or time.time(),
    )


async def guard_for(cfg: Config, bus: Bus, state: SwarmState | None = None, **kw: Any) -> SpendGuard:
    """A started spend guard with the prices the configured endpoint lists. One without a log (``state`` None)
    spends as a worker does, under the ceiling an engine publishes on the bus: this configuration's, published
    here as an engine started with it would."""
    prices = PriceBook(cfg.openrouter, cfg.paths)
    await prices.load()
    if state is None:
        await publish_base(bus, cfg.budget.daily_usd, time.time(), demo=bool(kw.get("demo", prices.demo)))
    g = SpendGuard(SpendSettings.of(cfg), bus, state, prices, **kw)
    await g.start()
    return g


async def guard(cfg: Config, bus: Bus, clock: Callable[[], float] = time.time, **kw: Any) -> SpendGuard:
    return await guard_for(cfg, bus, None, clock=clock, **kw)


async def call_fake(fo: FakeOpenRouter, j: Job) -> dict[str, Any]:
    """One call as a worker makes it, billed by the fake: its answer (``id``: the generation, ``usage.cost``)."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fo.base}/chat/completions",
            json={"model": BARE, "max_tokens": j.max_tokens, "messages": [m.model_dump() for m in j.messages]},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as resp,
    ):
        body: dict[str, Any] = await resp.json()
    return body


async def approve_at(bus: Bus, clock: Callable[[], float], n: int, *, max_tokens: int) -> Decision:
    """A task, a decision of n jobs and its approval, dated by ``clock``."""
    now = clock()
    task = Task(id=new_id("t"), text="do it", created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=max_tokens) for _ in range(n)]
    d = Decision(id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=d.id)
    await bus.publish_event(Approval(decision_id=d.id, action="approved", at=now), msg_id=f"{d.id}-final")
    return d


class Swarm:
    """An engine as the app runs one: the real spend guard (prices from the fake), the controller and the pool."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock

    async def start(self) -> Swarm:
        self.bus = await Bus(self.cfg).connect()
        self.engine = Engine(self.cfg, self.bus, clock=self.clock)
        prices = PriceBook(self.cfg.openrouter, self.cfg.paths)
        await prices.load()
        st = self.engine.state
        self.guard = self.engine.add(
            SpendGuard(SpendSettings.of(self.cfg), self.bus, st, prices, clock=self.clock, refresh_s=0.2)
        )
        self.engine.add(
            Controller(ControllerSettings.of(self.cfg), self.bus, st, spend=self.guard, host="test", clock=self.clock)
        )
        self.pool = self.engine.add(build_pool(self.cfg, self.bus, spend=self.guard, host="test", clock=self.clock))
        assert self.pool.reconciler is not None
        self.reconciler: Reconciler = self.pool.reconciler
        return self

    async def run(self) -> Swarm:
        await self.engine.start()
        return self

    async def stop(self) -> None:
        await self.engine.stop()


async def records(bus: Bus) -> dict[str, dict[str, Any]]:
    """The attempt records in swarm_reconcile."""
    kv = await bus.kv(S.KV_RECONCILE)
    try:
        keys = [k for k in await kv.keys() if k.startswith("a.")]
    except NoKeysError:  # only that: a timeout under load is not "no records" (it read as "nothing held")
        return {}
    out = {}
    for k in keys:
        try:
            out[k] = json.loads((await kv.get(k)).value or b"")
        except KeyNotFoundError:  # gone meanwhile
            continue
    return out


async def quiet(bus: Bus, fo: FakeOpenRouter) -> bool:
    """No attempt record left, no stream open."""
    return not await records(bus) and fo.open == 0

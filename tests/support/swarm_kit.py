"""Helpers for the swarm tests: an engine with only the controller and the pool, decisions, chunk capture."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Approval, Chunk, Decision, Job, PlanItem, Task, decode, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.protocols import Reservation
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from swarm_tui.engine.swarm.endpoint import Endpoint
from swarm_tui.engine.swarm.pool import Pool

KEY = "sk-or-v1-test-secret-key-0123456789"
MODEL = "openrouter/google/gemini-2.5-flash-lite"


def swarm_config(
    make_config: Callable[..., Config], tmp_path: Any, url: str, base: str, *, key: str = KEY, **values: Any
) -> Config:
    extra = {"OPENROUTER_API_BASE": base}
    if key:
        extra["OPENROUTER_API_KEY"] = key
    cfg = make_config(tmp_path, url, **extra)
    return cfg.replace(**values) if values else cfg


def build_engine(
    cfg: Config, bus: Bus, *, spend: Any = None, ram: Any = None, demo_endpoint: Any = None, demo: bool = False
) -> tuple[Engine, Pool]:
    engine = Engine(cfg, bus, demo=demo)
    endpoint: Endpoint | None = None
    if demo_endpoint is not None:
        endpoint = engine.add(demo_endpoint)
    engine.add(Controller(ControllerSettings.of(cfg, demo=demo), bus, engine.state, spend=spend, host="test"))
    pool = engine.add(build_pool(cfg, bus, endpoint=endpoint, spend=spend, ram=ram, host="test"))
    return engine, pool


def build_engine_with_spend(cfg: Config, bus: Bus) -> tuple[Engine, SpendGuard, Pool]:
    """An engine with its spend guard (the key's state, the ceiling), the controller and the pool."""
    engine = Engine(cfg, bus)
    spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, PriceBook(cfg.openrouter, cfg.paths)))
    engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=spend, host="test"))
    pool = engine.add(build_pool(cfg, bus, spend=spend, host="test"))
    return engine, spend, pool


async def approve(
    bus: Bus,
    n: int,
    *,
    model: str = MODEL,
    max_tokens: int = 100,
    text: str = "do it",
    demo: bool = False,
    roles: tuple[str, ...] = ("research",),
) -> Decision:
    """Publish a task, a decision with n plan items, and its approval."""
    now = time.time()
    task = Task(id=new_id("t"), text=text, created_at=now, demo=demo)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role=roles[i % len(roles)], model=model, max_tokens=max_tokens) for i in range(n)]
    d = Decision(
        id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900, demo=demo
    )
    await bus.publish_event(d, msg_id=d.id)
    await bus.publish_event(Approval(decision_id=d.id, action="approved", at=time.time()), msg_id=f"{d.id}-final")
    return d


class Chunks:
    """Collects swarm.chunk.* per worker."""

    def __init__(self) -> None:
        self.by_worker: dict[str, list[Chunk]] = defaultdict(list)
        self.sub: Any = None

    async def start(self, bus: Bus) -> Chunks:
        assert bus.nc is not None

        async def cb(msg: Any) -> None:
            c = decode(msg.data, expect="chunk")
            self.by_worker[c.worker_id].append(c)

        self.sub = await bus.nc.subscribe(S.CHUNK_ALL, cb=cb)
        return self

    def text(self, worker_id: str) -> str:
        return "".join(c.text for c in sorted(self.by_worker[worker_id], key=lambda c: c.seq))


async def events(cfg: Config) -> list[Any]:
    """Every event of the log, read on a connection of its own."""
    bus = await Bus(cfg).connect()
    out: list[Any] = []
    try:
        await bus.replay(lambda s, ev, seq: out.append(ev))
    finally:
        await bus.close()
    return out


def make_job(decision_id: str = "", index: int = 0, *, model: str = MODEL, created_at: float | None = None) -> Job:
    from swarm_tui.engine.bus.wire import ChatMessage, job_id, worker_id

    d = decision_id or new_id("d")
    msgs = [ChatMessage(role="user", content=f"hello from {job_id(d, index)}")]
    return Job(
        id=job_id(d, index),
        worker_id=worker_id(d, index),
        decision_id=d,
        task_id="t-x",
        role="research",
        model=model,
        max_tokens=100,
        messages=msgs,
        created_at=time.time() if created_at is None else created_at,
    )


class FakeSpend:
    """A SpendGuardP fake: ``allow`` decides reservations; records settle/release."""

    name = "spend"

    def __init__(self) -> None:
        self.allow = True
        self.reason = "over budget: today's ceiling $0.00 is reached"
        self.blocked = ""
        self.reserved: list[str] = []
        self.settled: dict[str, tuple[float, bool]] = {}
        self.released: list[str] = []
        self.reconciling: tuple[int, float] = (0, 0.0)

    def estimate(self, model: str, prompt_chars: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        return 0.0001, 0.001

    def worst_case(self, job: Job) -> float:
        return 0.001  # estimate's worst case: what the controller reserves a job at

    def unpriced(self, model: str) -> str | None:
        return None

    def credit_ok(self, since: float) -> None:
        return None

    def ledger_keys(self, job: Job) -> tuple[str, ...]:
        return ()  # no ledger: an attempt holds and settles nothing here

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        return 0.0

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        return False

    async def reserve(self, job: Job) -> Reservation:
        if not self.allow:
            return Reservation(False, 0.0, self.reason)
        self.reserved.append(job.id)
        return Reservation(True, 0.001)

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        self.settled[job.id] = (cost_usd, estimated)

    async def release(self, job: Job) -> None:
        self.released.append(job.id)

    def remaining_usd(self) -> float:
        return 1.0

    def cloud_blocked(self) -> str:
        return self.blocked

    def mark_out_of_credit(self, reason: str) -> None:
        self.blocked = reason

    def recheck_key(self, refused: bool = False) -> bool:
        return False

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens + completion_tokens) * 1e-6

    def info(self) -> dict[str, Any]:
        return {}

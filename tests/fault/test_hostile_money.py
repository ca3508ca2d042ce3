"""What a call may cost, and when money is held, against hostile text, price lists, gates and answers.

Each test runs the real pool, controller and spend guard on a real nats-server against the fake OpenRouter, and
ends with the promise it holds: "recorded = billed <= ceiling" (the spend entries in the log and the budget
ledger equal what the fake billed, and that is at most the ceiling) or "nothing applied". Each failed on the
code before the fix (e9f077b) with the figures in its docstring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import (
    Approval,
    ChatMessage,
    Chunk,
    Decision,
    Job,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    WorkerEvent,
    decode,
    new_id,
)
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import ControlError, Controls
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.ledger import read_ledger
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import SpendGuard
from swarm_tui.engine.heartbeat import envelope
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings, system_prompt
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, approve, events, swarm_config

pytestmark = pytest.mark.fault

BARE = MODEL.removeprefix("openrouter/")
EMOJI = "\U0001f600"  # 4 bytes in UTF-8, one character


def bill_by_bytes(fo: FakeOpenRouter, model: str = BARE, extra_usd: float = 0.0) -> Callable[[dict[str, Any]], Answer]:
    """An answer billed as a byte-level tokenizer can bill it: one prompt token per UTF-8 byte of the messages
    (design.md: such tokenizers take up to one token a byte), at the model's listed prices, plus ``extra_usd``
    (a per-request price). The fake reports it as ``usage.cost`` and bills it."""

    def answer(body: dict[str, Any]) -> Answer:
        p, c = (float(x) for x in fo.prices[model])
        prompt = sum(len(str(m.get("content") or "").encode()) for m in body.get("messages") or [])
        n = 5
        return Answer(tokens=n, prompt_tokens=prompt, cost=round(prompt * p + n * c + extra_usd, 9))

    return answer


class WatchedSpend(SpendGuard):
    """The spend guard, noting what each attempt held when its call started (0: nothing held)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.held: list[float | None] = []

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        held = await super().begin_attempt(job, attempt_id, keys)
        self.held.append(held)
        return held


async def start_swarm(cfg: Config, bus: Bus, clock: Callable[[], float] = time.time) -> tuple[Engine, WatchedSpend]:
    """The engine parts that spend: the spend guard (on ``clock``), the controller and the pool."""
    engine = Engine(cfg, bus)
    prices = PriceBook(cfg.openrouter, cfg.paths, clock=clock)
    await prices.load()
    spend = engine.add(WatchedSpend(cfg, bus, engine.state, prices, clock=clock))
    engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=spend, host="test"))
    engine.add(build_pool(cfg, bus, spend=spend, host="test"))
    await engine.start()
    return engine, spend


async def money(cfg: Config, spend: SpendGuard) -> tuple[float, float]:
    """(spend entries recorded in the log, the ledger's spent today), once every attempt is reconciled."""
    entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
    bus = await Bus(cfg).connect()
    try:
        doc = await read_ledger(bus, cfg, spend.clock())
    finally:
        await bus.close()
    assert doc is not None
    return round(sum(e.cost_usd for e in entries), 9), round(float(doc["spent"]), 9)


def states(engine: Engine, d: Decision) -> list[str]:
    return [w.state for w in engine.state.workers.values() if w.decision_id == d.id]


async def test_four_byte_prompts_are_reserved_by_their_bytes(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """Three tasks of 45,000 emoji at $10/Mtok under a $0.50 ceiling. Before: the worst case counted 3
    characters a token (15,090 tokens, $0.15 a job: all three fit) and the provider billed one token a byte
    (180,19x tokens): $5.40 billed. After: the bound is one token a byte, at most the context length the model
    list gives (131,072 tokens: $1.31 a job): every job waits "over budget" with the reason."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0.00001", "0.00001")
        fo.default = bill_by_bytes(fo)
        ceiling = 0.5
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=ceiling)
        bus = await Bus(cfg).connect()
        engine, spend = await start_swarm(cfg, bus)
        text = EMOJI * 45_000
        try:
            ds = [await approve(bus, 1, text=text, max_tokens=100) for _ in range(3)]

            def settled() -> bool:
                s = [st for d in ds for st in states(engine, d)]
                return len(engine.state.results) == 3 or (len(s) == 3 and all(x == "over_budget" for x in s))

            await until(settled, 30, "three results, or three jobs over budget")
            job = Job(
                id="j-x",
                worker_id="w-x",
                decision_id="d-x",
                task_id="t-x",
                role="research",
                model=MODEL,
                max_tokens=100,
                messages=[
                    ChatMessage(role="system", content=system_prompt("research")),
                    ChatMessage(role="user", content=text),
                ],
                created_at=time.time(),
            )
            worst = spend.worst_case(job)
            reasons = [w.reason for w in engine.state.workers.values()]
        finally:
            await engine.stop()
        recorded, ledger = await money(cfg, spend)
        await bus.close()
    billed = fo.billed
    print(f"4-byte prompts: worst case ${worst:.4f} a job; billed ${billed:.4f}, recorded ${recorded:.4f}")
    # recorded = billed <= ceiling
    assert recorded == ledger == billed <= ceiling
    assert worst > ceiling  # one token a byte: no job of such a prompt fits the ceiling
    assert all(r.startswith("over budget: needs $") and "worst case" in r for r in reasons), reasons
    # the conductor's estimate of a worker of this task (what a decision shows and auto-approval compares) is at
    # least the reservation the worker will make
    task_bytes = envelope.prompt_bytes(envelope.ReadyTask("t-x", text))
    assert spend.estimate(MODEL, task_bytes, 100)[1] >= worst


async def test_every_price_part_is_reserved(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """A model priced $0.01 a request (``pricing.request``) on top of its tokens, ten jobs under a $0.05 ceiling.
    Before: the request price was ignored (worst case $0.00006 a job): all ten ran, $0.10 billed. After: each
    reservation holds it; four run, six wait "over budget". A model with a part that cannot be read
    (``internal_reasoning: "-1"``) is refused with the reason, never priced at 0; a searching (``:online``) model
    holds the web search; reasoning is held at its own price when that is higher."""
    async with FakeOpenRouter() as fo:
        request_usd = 0.01
        fo.pricing_extra[BARE] = {"request": str(request_usd)}
        fo.prices["x/unpriced"] = ("0.0000001", "0.0000004")
        fo.pricing_extra["x/unpriced"] = {"internal_reasoning": "-1"}
        fo.prices["x/thinker"] = ("0.0000001", "0.0000004")
        fo.pricing_extra["x/thinker"] = {"internal_reasoning": "0.00001", "web_search": "0.005"}
        try:  # the names as OpenRouter's SDK types them (openrouter.components.PublicPricing), when installed
            from openrouter.components import PublicPricing

            for mid in fo.pricing_extra:
                PublicPricing.model_validate({"prompt": "0", "completion": "0", **fo.pricing_extra[mid]})
        except ImportError:
            pass
        fo.default = bill_by_bytes(fo, extra_usd=request_usd)
        ceiling = 0.05
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=ceiling)
        bus = await Bus(cfg).connect()
        engine, spend = await start_swarm(cfg, bus)
        try:
            d = await approve(bus, 10, max_tokens=100)
            await until(
                lambda: (
                    len(states(engine, d)) == 10
                    and all(s in ("done", "over_budget") for s in states(engine, d))
                    and fo.billed + request_usd > ceiling
                ),
                30,
                "every job done or over budget, with no room for another",
            )
            probe = Job(
                id="j-p",
                worker_id="w-p",
                decision_id="d-p",
                task_id="t-p",
                role="research",
                model=MODEL,
                max_tokens=100,
                messages=[ChatMessage(role="user", content="x" * 100)],
                created_at=time.time(),
            )
            worst = spend.worst_case(probe)
            unpriced = probe.model_copy(update={"model": "openrouter/x/unpriced"})
            refused = await spend.reserve(unpriced)
            thinker = probe.model_copy(update={"model": "openrouter/x/thinker"})
            online = probe.model_copy(update={"model": "openrouter/x/thinker:online"})
            info = spend.info()
        finally:
            await engine.stop()
        recorded, ledger = await money(cfg, spend)
        await bus.close()
    billed = fo.billed
    done = sum(1 for s in states(engine, d) if s == "done")
    print(f"request price: worst case ${worst:.6f} a job; {done} of 10 ran; billed ${billed:.6f}")
    # recorded = billed <= ceiling
    assert recorded == ledger == billed <= ceiling
    assert worst >= request_usd
    assert not refused.ok and "pricing.internal_reasoning = '-1'" in refused.reason
    assert spend.worst_case(unpriced) == float("inf")
    assert "openrouter/x/unpriced" in info.get("unpriced_models", {})
    assert spend.worst_case(thinker) == pytest.approx(136 * 1e-7 + 100 * 1e-5)  # reasoning's price, not 4e-7
    assert spend.worst_case(online) >= spend.worst_case(thinker) + 0.02  # the web plugin's $0.02 at least


async def test_a_job_waiting_at_the_model_gate_holds_no_money(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """Five jobs get a 429 (Retry-After 4 s): the model's limit halves to 1 and they wait at its gate. The spend
    guard's clock then passes its stale limit and five more jobs arrive. Before: the waiting jobs had reserved
    before the gate; their reservations went stale and were dropped, the new jobs reserved the freed room, and
    the first five called with nothing held: ten calls at $0.112, $1.12 billed under $1.00. After: a job reserves
    after the gates, right before its call: eight run, two wait "over budget", and every call held its money."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.002")  # worst case: 100 tokens x $0.002 = $0.20 a job
        fo.script(*[Answer(status=429, retry_after=4.0) for _ in range(5)])
        fo.default = Answer(tokens=3, cost=0.112)
        ceiling, worst = 1.0, 0.2
        offset = [0.0]
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=ceiling)
        bus = await Bus(cfg).connect()
        engine, spend = await start_swarm(cfg, bus, clock=lambda: time.time() + offset[0])
        try:
            a = await approve(bus, 5, max_tokens=100)
            await until(
                lambda: (
                    len(fo.chats()) >= 5
                    and all(w.state == "waiting" and "rate limited" in w.reason for w in engine.state.workers.values())
                ),
                20,
                "five jobs waiting at the model's gate",
            )
            offset[0] += spend.stale_s + 5  # they wait past the stale limit
            b = await approve(bus, 5, max_tokens=100)

            def settled() -> bool:
                s = states(engine, a) + states(engine, b)
                return len(s) == 10 and (
                    s.count("done") == 10
                    or (all(x in ("done", "over_budget") for x in s) and fo.billed + worst > ceiling + 1e-9)
                )

            await until(settled, 60, "every job done, or the rest over budget")
        finally:
            await engine.stop()
        recorded, ledger = await money(cfg, spend)
        await bus.close()
    billed = fo.billed
    empty = sum(1 for h in spend.held if h is None or h <= 0)
    print(f"stale at the gate: {len(spend.held)} attempts, {empty} with nothing held; billed ${billed:.3f}")
    # recorded = billed <= ceiling, and no call started with nothing held
    assert recorded == ledger == billed <= ceiling
    assert empty == 0


async def test_an_answer_over_the_message_limit_is_stored_once(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """An answer of 201,000 control characters: 1.2 MB as JSON, over NATS's 1 MiB. Before: publishing its Result
    failed, the job crashed before its ack and was redelivered, calling (and billed) again. After: the Result's
    text is cut to fit by its encoded bytes, the cut said at its end; one call, billed once."""
    async with FakeOpenRouter() as fo:
        fo.default = Answer(text=" ".join(["\x01" * 999] * 201), cost=0.0003)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__ack_wait_s=5.0)
        bus = await Bus(cfg).connect()
        engine, spend = await start_swarm(cfg, bus)
        try:
            d = await approve(bus, 1, max_tokens=100)
            await until(lambda: engine.state.results or len(fo.chats()) > 1, 90, "a result, or a second call")
            calls = len(fo.chats())
            await until(lambda: engine.state.results or calls > 1, 30, "the result")
            res = next(iter(engine.state.results.values()), None)
            raw = None if res is None else await bus.lookup.get_last_msg(S.EVENTS_STREAM, S.evt("result", res.job_id))
        finally:
            await engine.stop()
        recorded, ledger = await money(cfg, spend)
        await bus.close()
    billed = fo.billed
    size = len(raw.data or b"") if raw is not None else 0
    print(f"a 1.2 MB answer: {len(fo.chats())} call(s), result {size} bytes, billed ${billed:.6f}")
    assert len(fo.chats()) == 1  # billed once: no redelivery called again
    assert res is not None and raw is not None and d.id == res.decision_id and res.state == "done"
    assert res.text.endswith("over the message size limit]")
    assert isinstance(decode(raw.data or b""), Result) and size <= 1_000_000
    # 4-byte characters fit whole: 200,000 of them take 800 KB
    whole = Result.of(
        Job.model_validate(_job_dict()), "done", text=EMOJI * 200_000, started_at=0, ended_at=0, demo=False
    )
    assert whole.text == EMOJI * 200_000 and len(whole.to_bytes()) <= 1_000_000
    # recorded = billed <= ceiling
    assert recorded == ledger == billed <= cfg.budget.daily_usd


def _job_dict() -> dict[str, Any]:
    return {
        "id": "j-1",
        "worker_id": "w-1",
        "decision_id": "d-1",
        "task_id": "t-1",
        "role": "research",
        "model": MODEL,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "created_at": 0,
    }


async def test_approve_workers_is_bounded_by_max_scale(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """``approve ID --workers 200`` with swarm.max_scale 50. Before: approved with 200 workers. After: the CLI
    refuses it (exit 2, one line) and so does the control verb; nothing applied."""
    cfg = make_config(tmp_path, nats_server.url)
    bus = await Bus(cfg).connect()
    now = time.time()
    task = Task(id=new_id("t"), text="do it", created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=100)]
    d = Decision(id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=d.id)
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    cli = await asyncio.to_thread(run_cli, ["approve", d.id, "--workers", "200"], env)
    state = SwarmState()
    for ev in await events(cfg):
        state.apply(ev)
    controls = Controls(bus, state, max_scale=cfg.swarm.max_scale)
    refusals = []
    for n in (200, -1, True, "7"):
        try:
            await controls.do_approve({"id": d.id, "workers": n})
        except ControlError as exc:
            refusals.append(str(exc))
    applied = [e for e in await events(cfg) if isinstance(e, Approval)]
    workers = [e for e in await events(cfg) if isinstance(e, WorkerEvent)]
    await bus.close()
    print(f"approve --workers 200 (max_scale 50): exit {cli.returncode}: {cli.stderr.strip()}")
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1 and "max_scale" in cli.stderr
    assert "Traceback" not in cli.stderr and len(refusals) == 4
    assert all("0..50" in r for r in refusals)
    # nothing applied
    assert applied == [] and workers == [] and state.decisions[d.id].status == "pending"


async def test_a_flush_over_the_message_limit_reaches_the_screen_in_pieces(bus: Bus) -> None:
    """What streamed between two flushes is published in pieces a message holds. Before: 200,000 control
    characters in one flush were one 1.2 MB chunk, over NATS's limit, and were dropped without a word (the card
    never showed them)."""
    from types import SimpleNamespace

    from swarm_tui.engine.swarm.job import JobRun
    from swarm_tui.engine.swarm.run import Run

    assert bus.nc is not None
    got: list[Chunk] = []

    async def on_chunk(msg: Any) -> None:
        got.append(decode(msg.data, "chunk"))

    job = Job.model_validate(_job_dict())
    await bus.nc.subscribe(S.chunk(job.worker_id), cb=on_chunk)
    run = Run(job=job, msg=None)  # type: ignore[arg-type]
    run.buf, run.buf_tokens = ["\x01" * 1000] * 200, 200
    await JobRun(SimpleNamespace(bus=bus)).flush(run)
    await until(lambda: sum(len(c.text) for c in got) == 200_000, 10, "every character on the chunk subject")
    print(f"\n200,000 control characters in one flush: {len(got)} chunk messages, {sum(c.tokens for c in got)} tokens")
    assert sum(c.tokens for c in got) == 200 and [c.seq for c in got] == list(range(len(got)))
    # nothing lost on the way to the screen

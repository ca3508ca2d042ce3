"""One job from the queue to its stored result: gates, the call with retries, chunks, result, spend, ack.

Used by the pool (``pool.py``); split out so each file stays readable. Order at the end of a job: the last
chunk, the Result (``result-<job>``), the SpendEntry (``spend-<job>``), the reservation settled or released,
the final WorkerEvent, then the ack. A redelivered job whose result is stored is acked without a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nats.aio.msg import Msg as NatsMsg
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from . import subjects as S
from .llm import CallError, Progress, stream_call
from .messages import MAX_TEXT, Chunk, Job, Result, SpendEntry, Usage, WorkerEvent, WorkerState

if TYPE_CHECKING:
    from .pool import Pool

log = logging.getLogger(__name__)

MAX_DELIVER = 5
MAX_RATE_LIMITED = 20  # 429s in a row before a job fails


@dataclass
class Run:
    job: Job
    msg: NatsMsg
    task: asyncio.Task[None] | None = None
    call: asyncio.Task[Any] | None = None
    cancel_reason: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    progress: Progress = field(default_factory=Progress)
    state: str = "fetched"
    reason: str = ""
    buf: list[str] = field(default_factory=list)
    buf_tokens: int = 0
    sent_at: float = 0.0
    seq: int = 0
    reserved: bool = False
    cost: float = 0.0
    estimated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    called: bool = False
    acked: bool = False
    started_at: float = field(default_factory=time.time)

    def cancel(self, reason: str) -> int:
        if self.cancel_reason or self.acked:
            return 0
        self.cancel_reason = reason
        self.wake.set()
        if self.call is not None and not self.call.done():
            self.call.cancel()
        return 1


class JobRun:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ reporting
    async def event(self, run: Run, state: WorkerState, reason: str = "") -> None:
        if (state, reason) == (run.state, run.reason):
            return
        run.state, run.reason = state, reason
        j, p = run.job, self.pool
        ev = WorkerEvent(worker_id=j.worker_id, job_id=j.id, decision_id=j.decision_id, task_id=j.task_id,
                         model=j.model, role=j.role, state=state, reason=reason[:1000], tokens=run.progress.tokens,
                         cost_usd=run.cost, host=p.host[:128], at=p.clock(), demo=j.demo or p.demo)
        final = state in ("done", "failed", "cancelled")
        await p.bus.publish_event(ev, msg_id=f"{state}-{j.id}" if final else None)

    async def flush(self, run: Run) -> None:
        if not run.buf or self.pool.bus.nc is None:
            return
        text, n = "".join(run.buf), run.buf_tokens
        run.buf.clear()
        run.buf_tokens = 0
        c = Chunk(worker_id=run.job.worker_id, seq=run.seq, text=text[:MAX_TEXT], tokens=n, sent_at=run.sent_at)
        run.seq += 1
        with contextlib.suppress(Exception):
            await self.pool.bus.nc.publish(S.chunk(run.job.worker_id), c.to_bytes())

    # ------------------------------------------------------------------ the job
    async def process(self, run: Run) -> None:
        p, job = self.pool, run.job
        if await p.bus.last_event(S.evt("result", job.id)) is not None:
            p.counts["already_done"] += 1
            await self._ack(run)
            return
        mark = await self.cancel_mark(job)
        if mark:
            run.cancel_reason = mark
            await self.finish(run, "cancelled", mark)
            return
        retries = rate_limited = 0
        max_retries = int(p.cfg["swarm.max_retries"])
        while True:
            if not await self.gates(run) or run.cancel_reason:
                await self.finish(run, "cancelled", run.cancel_reason or "cancelled")
                return
            try:
                await self.call(run)
            except CallError as e:
                if run.cancel_reason:
                    await self.finish(run, "cancelled", run.cancel_reason)
                    return
                if e.kind == "rate_limited":
                    p.on_rate_limited(job.model, e.retry_after)
                    rate_limited += 1
                    if rate_limited > MAX_RATE_LIMITED:
                        await self.finish(run, "failed", e.reason)
                        return
                    await self.event(run, "retrying", e.reason)
                    continue
                if e.kind == "out_of_credit":
                    p.mark_out_of_credit(e.reason)
                    await self.event(run, "waiting", e.reason)
                    continue
                if e.kind == "retryable" and retries < max_retries:
                    retries += 1
                    await self.event(run, "retrying", f"{e.reason} (retry {retries} of {max_retries})")
                    await self.pause(run, min(8.0, 0.25 * 2 ** retries))
                    continue
                reason = e.reason if e.kind != "retryable" else f"{e.reason} (after {retries} retries)"
                await self.finish(run, "failed", reason)
                return
            if run.cancel_reason:
                await self.finish(run, "cancelled", run.cancel_reason)
                return
            p.on_success(job.model)
            await self.finish(run, "done", "")
            return

    async def pause(self, run: Run, seconds: float) -> None:
        run.wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run.wake.wait(), seconds)

    async def cancel_mark(self, job: Job) -> str:
        try:
            kv = await self.pool.bus.kv(S.KV_CANCEL)
        except Exception:  # noqa: BLE001
            return ""
        for key, why in ((job.worker_id, "cancelled before it started"),
                         (job.decision_id, f"cancelled with decision {job.decision_id}"), ("all", "")):
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                continue
            except Exception:  # noqa: BLE001
                continue
            if key != "all":
                return why
            try:
                if float((entry.value or b"0").decode()) >= job.created_at:
                    return "cancelled (all workers)"
            except ValueError:
                continue
        return ""

    async def gates(self, run: Run) -> bool:
        """Wait until the job may call; False when it was cancelled meanwhile."""
        p, job = self.pool, run.job
        local = job.model.startswith("ollama_chat/") and p.demo_endpoint is None
        while not run.cancel_reason:
            blocked = "" if local else p.cloud_blocked()
            if blocked:
                await self.event(run, "waiting", blocked)
                await self.pause(run, 1.0)
                continue
            if p.spend is not None and not run.reserved:
                res = await p.spend.reserve(job)
                if not res.ok:
                    credit = res.reason.startswith("out of credit")
                    await self.event(run, "waiting" if credit else "over_budget", res.reason)
                    await self.pause(run, 1.0)
                    continue
                run.reserved = True
            lim = p.limit_of(job.model)
            now = p.clock()
            if lim.backoff_until > now or (lim.limit is not None and lim.active >= lim.limit):
                wait = max(0.05, min(1.0, lim.backoff_until - now)) if lim.backoff_until > now else 0.2
                await self.event(run, "waiting", f"rate limited: {job.model} at {lim.limit} concurrent")
                await self.pause(run, wait)
                continue
            if local and p.ram is not None and not p.ram.headroom_ok():
                await self.event(run, "waiting", "RAM headroom is low: local worker waits")
                await self.pause(run, 1.0)
                continue
            return True
        return False

    def route(self, job: Job) -> tuple[str, str, str | None]:
        """(litellm model, api_base, api key) for a job."""
        p = self.pool
        if p.demo_endpoint is not None:
            bare = job.model.split("/", 1)[1] if "/" in job.model else job.model
            if job.model.startswith("ollama_chat/"):
                bare = "local/" + bare
            return "openrouter/" + bare, p.api_base, p.api_key
        if job.model.startswith("ollama_chat/"):
            host = str(p.cfg["ollama.host"]).rstrip("/")
            return job.model, host if "://" in host else f"http://{host}", None
        if job.model.startswith("openrouter/"):
            return job.model, p.api_base, p.api_key
        raise CallError("fatal", f"unsupported model {job.model!r}: expected openrouter/... or ollama_chat/...")

    async def call(self, run: Run) -> None:
        p, job = self.pool, run.job
        model, base, key = self.route(job)
        run.progress.reset()
        await self.event(run, "running", "")
        lim = p.limit_of(job.model)
        lim.active += 1

        def on_text(text: str, at: float) -> None:
            run.buf.append(text)
            run.buf_tokens += 1
            run.sent_at = at

        async def go() -> None:
            await stream_call(model=model, messages=[m.model_dump() for m in job.messages],
                              max_tokens=job.max_tokens, api_base=base, api_key=key,
                              timeout=float(p.cfg["swarm.request_timeout_s"]),
                              first_token_timeout=float(p.cfg["swarm.first_token_timeout_s"]),
                              progress=run.progress, on_text=on_text, secrets=p.cfg.secrets)

        run.called = True
        try:
            if model.startswith("ollama_chat/"):
                if p.lane.busy:
                    await self.event(run, "waiting", f"waiting for the local lane ({p.lane.holder})")
                async with p.lane.turn(job.worker_id):
                    await self._inner(run, go)
            else:
                await self._inner(run, go)
        finally:
            lim.active -= 1
            self.account(run)

    async def _inner(self, run: Run, go: Any) -> None:
        if run.cancel_reason:
            return
        run.call = asyncio.create_task(go())
        try:
            await run.call
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the pool is stopping
            # only the call was cancelled: a cancel request; the caller finishes the job as cancelled
        finally:
            run.call = None

    def account(self, run: Run) -> None:
        """Add the attempt's cost: the provider's usage.cost, else an estimate for the tokens seen."""
        p, job, pr = self.pool, run.job, run.progress
        completion = pr.completion_tokens or pr.tokens
        prompt = pr.prompt_tokens or (sum(len(m.content) for m in job.messages) // 4 if pr.tokens else 0)
        run.prompt_tokens += prompt
        run.completion_tokens += completion
        if pr.cost is not None:
            run.cost += pr.cost
            return
        if not completion and not pr.usage_seen:
            return
        if job.model.startswith("ollama_chat/") and p.demo_endpoint is None:
            return  # local inference costs no money
        run.cost += self.cost_of(job.model, prompt, completion)
        run.estimated = True

    def cost_of(self, model: str, prompt: int, completion: int) -> float:
        p = self.pool
        if p.spend is not None:
            with contextlib.suppress(Exception):
                return float(p.spend.cost_of(model, prompt, completion))
        c = p.cfg
        return (prompt * c["openrouter.fallback_prompt_usd_per_mtok"]
                + completion * c["openrouter.fallback_completion_usd_per_mtok"]) / 1e6

    async def finish(self, run: Run, state: Literal["done", "failed", "cancelled"], reason: str) -> None:
        p, job, pr = self.pool, run.job, run.progress
        await self.flush(run)
        now = p.clock()
        demo = job.demo or p.demo
        res = Result(job_id=job.id, worker_id=job.worker_id, decision_id=job.decision_id, task_id=job.task_id,
                     role=job.role, model=job.model, step=job.step, state=state,  # type: ignore[arg-type]
                     text=pr.text[:MAX_TEXT], reason=reason[:1000],
                     usage=Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens),
                     cost_usd=round(run.cost, 9), cost_estimated=run.estimated, started_at=run.started_at,
                     ended_at=now, demo=demo)
        await p.bus.publish_event(res, msg_id=f"result-{job.id}")
        if run.cost > 0 or run.completion_tokens or (run.called and state == "done"):
            se = SpendEntry(id=job.id, model=job.model, worker_id=job.worker_id, decision_id=job.decision_id,
                            task_id=job.task_id, prompt_tokens=run.prompt_tokens,
                            completion_tokens=run.completion_tokens, cost_usd=round(run.cost, 9),
                            estimated=run.estimated, demo=demo, at=now)
            await p.bus.publish_event(se, msg_id=f"spend-{job.id}")
        if p.spend is not None and run.reserved:
            try:
                if run.called:
                    await p.spend.settle(job, run.cost, estimated=run.estimated)
                else:
                    await p.spend.release(job)
            except Exception as exc:  # noqa: BLE001 - the ledger reconciles from the log later
                log.warning("could not settle job %s: %s", job.id, type(exc).__name__)
        await self.event(run, state, reason)
        p.counts[state] += 1
        await self._ack(run)

    async def _ack(self, run: Run) -> None:
        try:
            await run.msg.ack_sync(timeout=5)
        except Exception:  # noqa: BLE001 - a lost ack: redelivery finds the stored result and acks again
            with contextlib.suppress(Exception):
                await run.msg.ack()
        run.acked = True

"""One job from the queue to its stored result: gates, the call with retries, chunks, result, spend, ack.

Used by the pool (``pool.py``); split out so each file stays readable. Order at the end of a job: the last
chunk, the Result (``result-<job>``), the SpendEntry (``spend-<job>``), the reservation settled or released,
the final WorkerEvent, then the ack. A redelivered job whose result is stored is acked without a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nats.aio.msg import Msg as NatsMsg
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.wire import MAX_TEXT, Chunk, Job, SpendEntry, Usage, WorkerEvent, WorkerState
from swarm_tui.engine.guards.tokens import messages_bytes, prompt_tokens_bound
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.swarm.gates import NotHeld, hold_after_lane, result_stored, wait_for_turn
from swarm_tui.engine.swarm.job_result import store_result
from swarm_tui.engine.swarm.routing import attribution, extras
from swarm_tui.engine.swarm.worker_call import CallError, Progress, stream_call

if TYPE_CHECKING:
    from swarm_tui.engine.swarm.pool import Pool

log = logging.getLogger(__name__)

MAX_DELIVER = 5
MAX_RATE_LIMITED = 20  # 429s in a row before a job fails
CHUNK_PIECE = 40_000  # characters of one chunk message: 240 KB of JSON at worst (6 bytes a control character)


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
    rbuf: list[str] = field(default_factory=list)  # reasoning text not yet published (shown dimmed)
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
    delivered: int = 1  # JetStream's num_delivered of this message
    max_tokens: int = 0  # 0: the job's; lower after a 402 "can only afford N tokens"
    attempt: str = ""  # the attempt in flight (engine/guards/reconcile.py), its ledger keys and worst case
    attempt_keys: tuple[str, ...] = ()
    attempt_worst: float = 0.0
    attempts: int = 0  # attempts settled in the ledger one by one (not by the job's settle at its end)
    recorded: bool = False  # its calls were attempts: each has its own SpendEntry, the job has none
    pending: int = 0  # attempts whose cost OpenRouter has not told yet (reconciled after the job ends)
    gen_noted: str = ""
    noting: asyncio.Task[None] | None = None

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
        ev = WorkerEvent.of(
            j,
            state,
            reason=reason,
            tokens=run.progress.tokens,
            cost_usd=run.cost,
            host=p.host,
            at=p.clock(),
            demo=j.demo or p.demo,
        )
        final = state in ("done", "failed", "cancelled")
        await p.bus.publish_event(ev, msg_id=f"{state}-{j.id}" if final else None)

    async def flush(self, run: Run) -> None:
        """Publish what streamed since the last flush, in pieces a message holds whatever the characters (a
        control character takes 6 bytes as JSON: a whole buffer of them was over NATS's limit and was dropped)."""
        if not (run.buf or run.rbuf) or self.pool.bus.nc is None:
            return
        text, n, thought = "".join(run.buf)[:MAX_TEXT], run.buf_tokens, "".join(run.rbuf)[-CHUNK_PIECE:]
        run.buf.clear()
        run.rbuf.clear()
        run.buf_tokens = 0
        pieces = [text[i : i + CHUNK_PIECE] for i in range(0, len(text), CHUNK_PIECE)] or [""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            c = Chunk(
                worker_id=run.job.worker_id,
                seq=run.seq,
                text=piece,
                tokens=n if last else 0,
                sent_at=run.sent_at,
                reasoning=thought if last else "",
            )
            run.seq += 1
            with contextlib.suppress(Exception):
                await self.pool.bus.nc.publish(S.chunk(run.job.worker_id), c.to_bytes())

    # ------------------------------------------------------------------ the job
    async def process(self, run: Run) -> None:
        p, job = self.pool, run.job
        if await result_stored(self, run):
            return
        mark = await self.cancel_mark(job)
        if mark:
            run.cancel_reason = mark
            await self.finish(run, "cancelled", mark)
            return
        retries = rate_limited = shrinks = 0
        max_retries = p.cfg.swarm.max_retries
        while True:
            if not await wait_for_turn(self, run):  # the gates, then the money (swarm/gates.py)
                if not run.acked:  # acked: another run of the job stored its result while this one waited
                    await self.finish(run, "cancelled", run.cancel_reason or "cancelled")
                return
            try:
                await self.call(run)
            except NotHeld:
                continue  # no call was made: it waits at the gates, "over budget"
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
                if e.kind == "cannot_afford":  # this request only: retry smaller when that is still useful
                    asked = run.max_tokens or job.max_tokens
                    useful = min(p.cfg.openrouter.min_afford_tokens, max(1, asked // 2))
                    if e.afford is not None and useful <= e.afford < asked and shrinks < 3:
                        shrinks += 1
                        run.max_tokens = e.afford
                        await self.event(run, "retrying", f"{e.reason}: retrying with max_tokens {e.afford}")
                        continue
                    await self.finish(run, "failed", e.reason)
                    return
                if e.kind == "retryable" and retries < max_retries:
                    retries += 1
                    await self.event(run, "retrying", f"{e.reason} (retry {retries} of {max_retries})")
                    wait = min(8.0, 0.25 * 2**retries)
                    if e.retry_after is not None:  # a 503 with Retry-After: wait that long (bounded)
                        wait = min(300.0, max(wait, e.retry_after))
                    await self.pause(run, wait)
                    continue
                reason = e.reason if e.kind != "retryable" else f"{e.reason} (after {retries} retries)"
                await self.finish(run, "failed", reason)
                return
            if run.cancel_reason:
                await self.finish(run, "cancelled", run.cancel_reason)
                return
            p.on_success(job.model, run.progress.started)
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
        for key, why in (
            (job.worker_id, "cancelled before it started"),
            (job.decision_id, f"cancelled with decision {job.decision_id}"),
            ("all", ""),
        ):
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

    def route(self, job: Job) -> tuple[str, str, str | None]:
        """(litellm model, api_base, api key) for a job."""
        p = self.pool
        if p.demo_endpoint is not None:
            bare = job.model.split("/", 1)[1] if "/" in job.model else job.model
            if is_local_chat(job.model):
                bare = "local/" + bare
            return "openrouter/" + bare, p.api_base, p.api_key
        if is_local_chat(job.model):
            host = p.cfg.ollama.host.rstrip("/")
            return job.model, host if "://" in host else f"http://{host}", None
        if job.model.startswith("openrouter/"):
            return job.model, p.api_base, p.api_key
        raise CallError("fatal", f"unsupported model {job.model!r}: expected openrouter/... or ollama_chat/...")

    def call_options(self, job: Job, model: str) -> dict[str, Any]:
        """The role's limit to the first content token, and for OpenRouter the attribution headers and the
        role's reasoning / provider / fallback options with ``max_price`` from the spend guard's price."""
        cfg = self.pool.cfg
        role = cfg.roles.get(job.role)
        first = role.first_token_timeout_s if role is not None else None
        # The whole call ends at swarm.request_timeout_s however long the first content may take: the spend
        # guard's stale-reservation limit is built on it, so no call may outlive its reservation.
        limit = first or cfg.swarm.first_content_timeout_s
        opts: dict[str, Any] = {"first_content_timeout": min(limit, cfg.swarm.request_timeout_s)}
        if model.startswith("openrouter/"):
            opts["headers"] = attribution(cfg.openrouter.referer, cfg.openrouter.title)
            opts["extra_body"] = extras(role, model, self.price_per_mtok(job.model)) or None
        if self.pool.demo_endpoint is not None:  # the demo's synthetic answer is seeded by the job, in its role
            opts["headers"] = {**opts.get("headers", {}), "X-Swarm-Job": job.id, "X-Swarm-Role": job.role}
        return opts

    def price_per_mtok(self, model: str) -> tuple[float, float] | None:
        """(prompt, completion) USD per million tokens the spend guard prices ``model`` at; None: no guard."""
        cost_of = getattr(self.pool.spend, "cost_of", None)
        if cost_of is None:
            return None
        try:
            return float(cost_of(model, 1_000_000, 0)), float(cost_of(model, 0, 1_000_000))
        except Exception:  # noqa: BLE001 - no price: no max_price rather than no call
            return None

    async def call(self, run: Run) -> None:
        p, job = self.pool, run.job
        model, base, key = self.route(job)
        lim = p.limit_of(job.model)
        lim.active += 1  # before any await: no other job passes the model's gate in between (swarm/gates.py)
        run.progress.reset()

        def on_text(text: str, at: float) -> None:
            run.buf.append(text)
            run.buf_tokens += 1
            run.sent_at = at

        def on_reasoning(text: str, at: float) -> None:
            run.rbuf.append(text)

        def on_generation(gid: str) -> None:  # the header or the first chunk of any kind: noted before content
            if run.attempt and gid != run.gen_noted:
                self.note_generation(run)  # one skipped while another is written: the pool's flush loop retries

        opts = self.call_options(job, model)

        async def go() -> None:
            await stream_call(
                model=model,
                messages=[m.model_dump() for m in job.messages],
                max_tokens=run.max_tokens or job.max_tokens,
                api_base=base,
                api_key=key,
                timeout=p.cfg.swarm.request_timeout_s,
                first_token_timeout=p.cfg.swarm.first_token_timeout_s,
                progress=run.progress,
                on_text=on_text,
                secrets=p.cfg.secrets,
                on_reasoning=on_reasoning,
                on_generation=on_generation,
                via_litellm=p.cfg.openrouter.via_litellm,
                session=p.http_session() if model.startswith("openrouter/") else None,
                **opts,
            )

        try:
            await self.event(run, "running", "")
            await self.begin_attempt(run)
        except BaseException:
            lim.active -= 1
            raise
        run.called = True
        outcome: BaseException | None = None
        try:
            if is_local_chat(model):
                waited = p.lane.busy
                if waited:
                    await self.event(run, "waiting", f"waiting for the local lane ({p.lane.holder})")
                async with p.lane.turn(job.worker_id):
                    if waited:
                        await hold_after_lane(self, run)
                    await self._inner(run, go)
            else:
                await self._inner(run, go)
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            lim.active -= 1
            if isinstance(outcome, asyncio.CancelledError):  # the pool is stopping: the attempt is cut off
                if run.attempt and p.reconciler is not None:
                    p.reconciler.abandon(run.attempt)  # reconciled from its record (here after a restart)
                run.attempt = ""
            else:
                await self.account(run, outcome)

    # ------------------------------------------------------------------ attempts (see reconcile.py)
    def reconciled(self, job: Job) -> bool:
        """OpenRouter calls are attempts reconciled with GET /generation (not the demo endpoint, not Ollama)."""
        p = self.pool
        return p.reconciler is not None and p.demo_endpoint is None and job.model.startswith("openrouter/")

    def worst_of(self, run: Run) -> float:
        p, job = self.pool, run.job
        mt = run.max_tokens or job.max_tokens
        j = job if mt == job.max_tokens else job.model_copy(update={"max_tokens": mt})
        if p.spend is not None and hasattr(p.spend, "worst_case"):
            with contextlib.suppress(Exception):
                worst = float(p.spend.worst_case(j))
                if math.isfinite(worst):  # infinite: its price list entry changed since it was reserved
                    return worst
        size = messages_bytes(m.content for m in job.messages)
        return self.cost_of(job.model, prompt_tokens_bound(size, len(job.messages)), mt)

    async def begin_attempt(self, run: Run) -> None:
        """The attempt's record before its call; the job's reservation becomes the attempt's."""
        rec, job = self.pool.reconciler, run.job
        if rec is None or not self.reconciled(job):
            return
        run.attempt, run.attempt_keys, run.attempt_worst = await rec.begin(
            job, worst=self.worst_of(run), max_tokens=run.max_tokens or job.max_tokens
        )
        run.gen_noted = ""
        run.recorded = True
        if run.attempt_keys:  # the ledger moved the job's reservation to the attempt: it holds it now
            run.attempts += 1
            run.reserved = False  # a retry reserves anew: this attempt holds its money until it is reconciled

    def note_generation(self, run: Run) -> None:
        rec, gen = self.pool.reconciler, run.progress.generation_id
        if rec is None or not gen or (run.noting is not None and not run.noting.done()):
            return
        run.gen_noted = gen
        run.noting = asyncio.create_task(rec.note_generation(run.attempt, gen))

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

    async def account(self, run: Run, outcome: BaseException | None = None) -> None:
        """Add the attempt's cost: the provider's usage.cost; for an OpenRouter attempt without it, what the
        reconciler says (later: pending); else (demo, local) an estimate for the tokens seen."""
        p, job, pr = self.pool, run.job, run.progress
        completion = pr.completion_tokens or pr.tokens
        prompt = pr.prompt_tokens or (sum(len(m.content) for m in job.messages) // 4 if pr.tokens else 0)
        if run.attempt and p.reconciler is not None:
            aid, run.attempt = run.attempt, ""
            # nothing was billed when the provider never took the request (an HTTP error, no connection)
            billed = pr.opened or bool(pr.generation_id) or pr.tokens > 0
            end: dict[str, Any] = {
                "job": job,
                "cost": pr.cost,
                "gen": pr.generation_id,
                "billed": billed,
                "worst": run.attempt_worst,
                "tokens": (prompt, completion),
            }
            try:
                if run.noting is not None:
                    with contextlib.suppress(Exception):
                        await run.noting
                got = await p.reconciler.end(aid, run.attempt_keys, **end)
            except asyncio.CancelledError:  # the pool is stopping: the reconciler's stop still writes this end
                p.reconciler.end_later(aid, run.attempt_keys, **end)
                raise
            except Exception as exc:  # noqa: BLE001 - the bus is away: its end is written when it is back
                log.warning("attempt %s not accounted yet: %s", aid, type(exc).__name__)
                p.reconciler.end_later(aid, run.attempt_keys, **end)
                got = None
            if got is None:
                run.pending += 1  # its SpendEntry comes from the reconciler, with the provider's figures
                return
            run.prompt_tokens += prompt
            run.completion_tokens += completion
            run.cost += got[0]
            run.estimated = run.estimated or got[1]
            return
        run.prompt_tokens += prompt
        run.completion_tokens += completion
        if pr.cost is not None:
            run.cost += pr.cost
            return
        if not completion and not pr.usage_seen:
            return
        if is_local_chat(job.model) and p.demo_endpoint is None:
            return  # local inference costs no money
        run.cost += self.cost_of(job.model, prompt, completion)
        run.estimated = True

    def cost_of(self, model: str, prompt: int, completion: int) -> float:
        p = self.pool
        if p.spend is not None:
            with contextlib.suppress(Exception):
                return float(p.spend.cost_of(model, prompt, completion))
        c = p.cfg
        return (
            prompt * c.openrouter.fallback_prompt_usd_per_mtok
            + completion * c.openrouter.fallback_completion_usd_per_mtok
        ) / 1e6

    async def finish(self, run: Run, state: Literal["done", "failed", "cancelled"], reason: str) -> None:
        p, job, pr = self.pool, run.job, run.progress
        await self.flush(run)
        now = p.clock()
        demo = job.demo or p.demo
        if pr.cut_note:  # the provider sent more than a result keeps: say so where the answer is read
            reason = f"{reason}; {pr.cut_note}" if reason else pr.cut_note
        state, reason = await store_result(  # fitted to the bus's limit; a small failed one if it cannot be stored
            p.bus,
            job,
            state,
            text=pr.text,
            reason=reason,
            usage=Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens),
            cost_usd=round(run.cost, 9),
            cost_estimated=run.estimated,
            started_at=run.started_at,
            ended_at=now,
            demo=demo,
        )
        # a job whose calls were attempts is recorded attempt by attempt (reconcile.py): a job run twice (a
        # redelivery while the first run still streamed) is billed twice, and recorded twice
        if not run.recorded and (run.cost > 0 or run.completion_tokens or (run.called and state == "done")):
            se = SpendEntry(
                id=job.id,
                model=job.model,
                worker_id=job.worker_id,
                decision_id=job.decision_id,
                task_id=job.task_id,
                prompt_tokens=run.prompt_tokens,
                completion_tokens=run.completion_tokens,
                cost_usd=round(run.cost, 9),
                estimated=run.estimated,
                demo=demo,
                at=now,
            )
            await p.bus.publish_event(se, msg_id=f"spend-{job.id}")
        # a job that was called settles its cost even if it holds no reservation now (one given back at a gate)
        if p.spend is not None and (run.reserved or (run.called and not run.attempts)):
            try:
                if run.called and not run.attempts:
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

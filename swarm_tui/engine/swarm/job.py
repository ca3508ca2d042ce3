"""One job from the queue to its stored result: gates, the call with retries, chunks, result, spend, ack.

Used by the pool (``pool.py``) through ``PoolContext`` (``context.py``); the call is in ``job_call.py``, its cost
in ``attempts.py``. Order at the end of a job: the last chunk, the Result (``result-<job>``), the SpendEntry
(``spend-<job>``), the reservation settled or released, the final WorkerEvent, then the ack. A redelivered job
whose result is stored is acked without a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Literal

from nats.js.errors import KeyDeletedError, KeyNotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.wire import MAX_TEXT, Chunk, Job, SpendEntry, Usage, WorkerEvent
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.lifecycle import within
from swarm_tui.engine.states import WorkerState
from swarm_tui.engine.swarm.attempts import Attempts
from swarm_tui.engine.swarm.call_errors import CallError
from swarm_tui.engine.swarm.context import PoolContext
from swarm_tui.engine.swarm.gates import NotHeld, result_stored, wait_for_turn
from swarm_tui.engine.swarm.job_call import JobCall
from swarm_tui.engine.swarm.job_result import store_result
from swarm_tui.engine.swarm.run import Run
from swarm_tui.engine.telemetry.seam import tracer

log = logging.getLogger(__name__)

MAX_RATE_LIMITED = 20  # 429s in a row before a job fails
MAX_KEY_WAITS = 3  # 401s a job waits out while the provider cap replaces its runtime key (1 s, 2 s, 3 s)
CHUNK_PIECE = 40_000  # characters of one chunk message: 240 KB of JSON at worst (6 bytes a control character)


class JobRun:
    def __init__(self, ctx: PoolContext) -> None:
        self.ctx = ctx
        self.attempts = Attempts(ctx)
        self.caller = JobCall(self, self.attempts)

    # ------------------------------------------------------------------ reporting
    async def event(self, run: Run, state: WorkerState, reason: str = "") -> None:
        if (state, reason) == (run.state, run.reason):
            return
        run.state, run.reason = state, reason
        j, p = run.job, self.ctx
        ev = WorkerEvent.of(
            j,
            state,
            reason=reason,
            tokens=run.progress.tokens,
            cost_usd=run.cost,
            host=p.host,
            at=p.clock(),
            demo=j.demo or p.endpoint.is_demo,
        )
        final = state in ("done", "failed", "cancelled")
        await p.bus.publish_event(ev, msg_id=f"{state}-{j.id}" if final else None)

    async def flush(self, run: Run) -> None:
        """Publish what streamed since the last flush, in pieces a message holds whatever the characters (a
        control character takes 6 bytes as JSON: a whole buffer of them was over NATS's limit and was dropped)."""
        if not (run.buf or run.rbuf) or self.ctx.bus.nc is None:
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
            with contextlib.suppress(Exception):  # a piece lost while the bus is away: the Result has the text
                await self.ctx.bus.nc.publish(S.chunk(run.job.worker_id), c.to_bytes())

    async def flush_loop(self, runs: Mapping[str, Run], busy: asyncio.Event) -> None:
        """Publish what the running jobs streamed every ``swarm.chunk_flush_ms``; asleep while none runs."""
        every = self.ctx.settings.swarm.chunk_flush_ms / 1000
        while True:
            if not runs:  # idle: no 20 wake-ups a second (idle CPU); a new run sets busy
                busy.clear()
                await busy.wait()
            await asyncio.sleep(every)
            for r in list(runs.values()):
                if r.buf or r.rbuf:
                    await self.flush(r)
                if r.attempt and r.progress.generation_id != r.gen_noted:  # from a header, or reasoning only
                    self.attempts.note_generation(r)

    # ------------------------------------------------------------------ the job
    async def process(self, run: Run) -> None:
        with tracer().job(run.job) as span:  # a no-op unless traces are on (engine/telemetry)
            try:
                await self._process(run)
            finally:  # cut off by a stop too: the span says where the job was
                span.job_done(run)

    async def _process(self, run: Run) -> None:
        p, job = self.ctx, run.job
        if await result_stored(self, run):
            return
        mark = await self.cancel_mark(job)
        if mark:
            run.cancel_reason = mark
            await self.finish(run, "cancelled", mark)
            return
        retries = rate_limited = shrinks = key_waits = 0
        max_retries = p.settings.swarm.max_retries
        while True:
            if not await wait_for_turn(self, run):  # the gates, then the money (swarm/gates.py)
                if not run.acked:  # acked: another run of the job stored its result while this one waited
                    await self.finish(run, "cancelled", run.cancel_reason or "cancelled")
                return
            try:
                await self.caller.call(run)
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
                if e.status == 401 and key_waits < MAX_KEY_WAITS and p.key_refused():  # a new key comes at once
                    key_waits += 1
                    await self.event(run, "waiting", f"{e.reason}: a new runtime key is being made")
                    await self.pause(run, float(key_waits))
                    continue
                if e.kind == "out_of_credit":
                    p.mark_out_of_credit(e.reason)
                    await self.event(run, "waiting", e.reason)
                    continue
                if e.kind == "cannot_afford":  # this request only: retry smaller when that is still useful
                    asked = run.max_tokens or job.max_tokens
                    useful = min(p.settings.openrouter.min_afford_tokens, max(1, asked // 2))
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
            await within(run.wake.wait(), seconds)

    async def cancel_mark(self, job: Job) -> Refusal | None:
        """Why the job was cancelled before it started (a mark in the cancel store), else None."""
        try:
            kv = await self.ctx.bus.kv(S.KV_CANCEL)
        except Exception:  # noqa: BLE001 - the bus is away: no mark known, the job runs
            return None
        for key, why in (
            (job.worker_id, "cancelled before it started"),
            (job.decision_id, f"cancelled with decision {job.decision_id}"),
            ("all", ""),
        ):
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                continue
            except Exception:  # noqa: BLE001 - the bus is away: this mark is not known
                continue
            if key != "all":
                return Refusal(why)
            try:
                if float((entry.value or b"0").decode()) >= job.created_at:
                    return Refusal("cancelled (all workers)")
            except ValueError:
                continue
        return None

    async def finish(self, run: Run, state: Literal["done", "failed", "cancelled"], reason: str) -> None:
        p, job, pr = self.ctx, run.job, run.progress
        await self.flush(run)
        now = p.clock()
        demo = job.demo or p.endpoint.is_demo
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
        await self.ack(run)

    async def ack(self, run: Run) -> None:
        try:
            await run.msg.ack_sync(timeout=5)
        except Exception:  # noqa: BLE001 - a lost ack: redelivery finds the stored result and acks again
            with contextlib.suppress(Exception):  # the redelivery acks it, as above
                await run.msg.ack()
        run.acked = True

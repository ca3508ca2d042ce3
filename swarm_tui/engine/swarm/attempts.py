"""What a job's calls cost: each OpenRouter call an attempt reconciled with GET /generation (guards/reconcile.py),
any other call priced from what it reported, or estimated for the tokens seen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.guards.tokens import messages_bytes, prompt_tokens_bound
from swarm_tui.engine.swarm.context import PoolContext
from swarm_tui.engine.swarm.run import Run

log = logging.getLogger(__name__)


class Attempts:
    def __init__(self, ctx: PoolContext) -> None:
        self.ctx = ctx

    def reconciled(self, job: Job) -> bool:
        """OpenRouter calls are attempts reconciled with GET /generation (not the demo endpoint's, not Ollama's)."""
        p = self.ctx
        return p.reconciler is not None and p.endpoint.reconciles and job.model.startswith("openrouter/")

    def worst_of(self, run: Run) -> float:
        p, job = self.ctx, run.job
        mt = run.max_tokens or job.max_tokens
        j = job if mt == job.max_tokens else job.model_copy(update={"max_tokens": mt})
        if p.spend is not None:
            with contextlib.suppress(Exception):  # no price from the guard: bounded from the price list below
                worst = float(p.spend.worst_case(j))
                if math.isfinite(worst):  # infinite: its price list entry changed since it was reserved
                    return worst
        size = messages_bytes(m.content for m in job.messages)
        return self.cost_of(job.model, prompt_tokens_bound(size, len(job.messages)), mt)

    async def begin(self, run: Run) -> None:
        """The attempt's record before its call; the job's reservation becomes the attempt's."""
        rec, job = self.ctx.reconciler, run.job
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
        rec, gen = self.ctx.reconciler, run.progress.generation_id
        if rec is None or not gen or (run.noting is not None and not run.noting.done()):
            return
        run.gen_noted = gen
        run.noting = asyncio.create_task(rec.note_generation(run.attempt, gen), name=f"note-generation-{run.job.id}")

    async def account(self, run: Run, outcome: BaseException | None = None) -> None:
        """Add the attempt's cost: the provider's usage.cost; for an OpenRouter attempt without it, what the
        reconciler says (later: pending); else (demo, local) an estimate for the tokens seen."""
        p, job, pr = self.ctx, run.job, run.progress
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
                    with contextlib.suppress(Exception):  # a generation id not noted: the end carries it too
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
        if p.endpoint.runs_locally(job.model):
            return  # local inference costs no money
        run.cost += self.cost_of(job.model, prompt, completion)
        run.estimated = True

    def cost_of(self, model: str, prompt: int, completion: int) -> float:
        p = self.ctx
        if p.spend is not None:
            with contextlib.suppress(Exception):  # no price from the guard: the configured fallback price
                return float(p.spend.cost_of(model, prompt, completion))
        o = p.settings.openrouter
        return (prompt * o.fallback_prompt_usd_per_mtok + completion * o.fallback_completion_usd_per_mtok) / 1e6

"""One call of a job: where it goes, its options, the local lane, and its cost accounted whatever ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.swarm.attempts import Attempts
from swarm_tui.engine.swarm.call_errors import CallError
from swarm_tui.engine.swarm.context import RunSteps
from swarm_tui.engine.swarm.gates import hold_after_lane
from swarm_tui.engine.swarm.routing import attribution, extras
from swarm_tui.engine.swarm.run import Run
from swarm_tui.engine.swarm.worker_call import stream_call

# Ollama's keep_alive for an ant (an ollama_chat/ worker's model): unloaded as soon as it answers, so the RAM is
# free when the local lane passes to the heart or to another ant's model (docs.ollama.com/api/chat, keep_alive)
ANT_KEEP_ALIVE = 0


class JobCall:
    def __init__(self, steps: RunSteps, attempts: Attempts) -> None:
        self.steps = steps
        self.attempts = attempts

    def route(self, job: Job) -> tuple[str, str, str | None]:
        """(litellm model, api_base, api key) for a job."""
        p = self.steps.ctx
        own = p.endpoint.own_model(job.model)
        if own is not None:
            return own, p.endpoint.api_base, p.endpoint.api_key
        if is_local_chat(job.model):
            host = p.settings.ollama_host.rstrip("/")
            return job.model, host if "://" in host else f"http://{host}", None
        if job.model.startswith("openrouter/"):
            return job.model, p.endpoint.api_base, p.endpoint.api_key
        raise CallError("fatal", f"unsupported model {job.model!r}: expected openrouter/... or ollama_chat/...")

    def call_options(self, job: Job, model: str) -> dict[str, Any]:
        """The role's limit to the first content token, for a local model Ollama's ``keep_alive`` (the ant is
        unloaded when it answers), and for OpenRouter the attribution headers and the role's reasoning / provider
        / fallback options with ``max_price`` from the spend guard's price."""
        p = self.steps.ctx
        s = p.settings
        role = s.roles.get(job.role)
        first = role.first_token_timeout_s if role is not None else None
        # The whole call ends at swarm.request_timeout_s however long the first content may take: the spend
        # guard's stale-reservation limit is built on it, so no call may outlive its reservation.
        limit = first or s.swarm.first_content_timeout_s
        opts: dict[str, Any] = {"first_content_timeout": min(limit, s.swarm.request_timeout_s)}
        if is_local_chat(model):
            opts["keep_alive"] = ANT_KEEP_ALIVE
        if model.startswith("openrouter/"):
            opts["headers"] = attribution(s.openrouter.referer, s.openrouter.title)
            opts["extra_body"] = extras(role, model, self.price_per_mtok(job.model)) or None
        if p.endpoint.seeds_answers:  # the demo's synthetic answer is seeded by the job, in its role
            opts["headers"] = {**opts.get("headers", {}), "X-Swarm-Job": job.id, "X-Swarm-Role": job.role}
        return opts

    def price_per_mtok(self, model: str) -> tuple[float, float] | None:
        """(prompt, completion) USD per million tokens the spend guard prices ``model`` at; None: no guard."""
        spend = self.steps.ctx.spend
        if spend is None:
            return None
        try:
            return float(spend.cost_of(model, 1_000_000, 0)), float(spend.cost_of(model, 0, 1_000_000))
        except Exception:  # noqa: BLE001 - no price: no max_price rather than no call
            return None

    async def call(self, run: Run) -> None:
        steps, p, job = self.steps, self.steps.ctx, run.job
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
                self.attempts.note_generation(run)  # one skipped while another is written: the flush loop retries

        opts = self.call_options(job, model)
        s = p.settings

        async def go() -> None:
            await stream_call(
                model=model,
                messages=[m.model_dump() for m in job.messages],
                max_tokens=run.max_tokens or job.max_tokens,
                api_base=base,
                api_key=key,
                timeout=s.swarm.request_timeout_s,
                first_token_timeout=s.swarm.first_token_timeout_s,
                progress=run.progress,
                on_text=on_text,
                secrets=list(s.secrets),
                on_reasoning=on_reasoning,
                on_generation=on_generation,
                via_litellm=s.openrouter.via_litellm,
                session=p.endpoint.session() if model.startswith("openrouter/") else None,
                **opts,
            )

        try:
            await steps.event(run, "running", "")
            await self.attempts.begin(run)
        except BaseException:  # re-raised: only the model's count is undone
            lim.active -= 1
            raise
        run.called = True
        outcome: BaseException | None = None
        try:
            if is_local_chat(model):
                await self._local(run, go)
            else:
                await self._inner(run, go)
        except BaseException as exc:  # re-raised: kept to tell a stop from a failed call below
            outcome = exc
            raise
        finally:
            lim.active -= 1
            if isinstance(outcome, asyncio.CancelledError):  # the pool is stopping: the attempt is cut off
                if run.attempt and p.reconciler is not None:
                    p.reconciler.abandon(run.attempt)  # reconciled from its record (here after a restart)
                run.attempt = ""
            else:
                await self.attempts.account(run, outcome)

    async def _local(self, run: Run, go: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A local call in its turn on the local lane. The wait for the lane is ``run.call`` until the turn comes,
        so a cancel ends it at once (the caller finishes the job as cancelled) and the turn goes to the next."""
        steps, p, job = self.steps, self.steps.ctx, run.job
        waited = p.lane.busy
        if waited:
            await steps.event(run, "waiting", f"waiting for the local lane: {p.lane.held_by()} holds it")

        async def in_turn() -> None:
            async with p.lane.turn(job.worker_id, job.model.removeprefix("ollama_chat/")):
                run.call = None
                await hold_after_lane(steps, run, waited)
                await self._inner(run, go)

        if run.cancel_reason:
            return
        turn = run.call = asyncio.create_task(in_turn(), name=f"lane-{job.id}")
        try:
            await turn
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the pool is stopping
            # a cancel request while it waited for the lane: no call was made
        finally:
            if run.call is turn:
                run.call = None

    async def _inner(self, run: Run, go: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if run.cancel_reason:
            return
        run.call = asyncio.create_task(go(), name=f"call-{run.job.id}")
        try:
            await run.call
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the pool is stopping
            # only the call was cancelled: a cancel request; the caller finishes the job as cancelled
        finally:
            run.call = None

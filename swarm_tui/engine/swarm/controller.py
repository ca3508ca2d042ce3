"""The swarm controller: an approved decision becomes jobs on the JOBS work queue, one per plan item.

Job ids are deterministic (``<decision>-j<n>``, worker ``<decision>-w<n>``) and published with the job id as
``Nats-Msg-Id``, so re-publishing is harmless. After a restart, approvals already handled create no second
job: a job is published only when its result is not stored and the pool has not touched it (its worker's
latest state is "queued" or absent) and it is not already waiting on the queue.

Roles of one task chain by ``PlanItem.step``: at approval only each task's first step goes out; a later step's
jobs go out when every job of the step before (same task, same decision) has a stored result (the controller
watches ``Result`` events), and they carry the earlier results as context, bounded to
``swarm.context_max_chars`` with the cut stated. Items of the same step run in parallel. When no earlier result
is "done", the later steps end without a call: a ``Result`` and a ``WorkerEvent`` "cancelled" with the reason,
so the task still reaches a final state. After a restart every approved decision is looked at again, so a step
that should have gone out and did not is released then (job ids and ``Nats-Msg-Id`` make this idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import (
    Approval,
    ChatMessage,
    Decision,
    Job,
    PlanItem,
    Result,
    WorkerEvent,
    job_id,
    worker_id,
)
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.protocols import SpendGuardP
from swarm_tui.engine.guards.tokens import CONTEXT_HEADINGS_CHARS
from swarm_tui.engine.info import ControllerInfo
from swarm_tui.engine.lifecycle import cancel_and_wait
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.projection.state import SwarmState

log = logging.getLogger(__name__)

ROLE_PROMPTS = {
    "research": "You are the research worker of a swarm. Gather the facts the task needs, say where you are "
    "unsure, and be concise.",
    "analysis": "You are the analysis worker of a swarm. Reason about the task step by step and give a clear, "
    "well-argued answer.",
    "code": "You are the code worker of a swarm. Write correct, minimal code for the task, with a short note "
    "on how to use it.",
}
DEFAULT_PROMPT = "You are the {role} worker of a swarm. Do the task below well and concisely."


def lane_of(model: str) -> str:
    return "local" if is_local_chat(model) else "cloud"


def system_prompt(role: str) -> str:
    return ROLE_PROMPTS.get(role, DEFAULT_PROMPT.format(role=role or "general"))


def bounded_context(results: list[Result], max_chars: int, chosen: str = "") -> str:
    """Earlier results as one text of at most about ``max_chars`` characters of output; each result gets an
    equal share (what a short one leaves goes to the others) and a cut is stated where it happens. ``chosen``:
    the job id of the answer a person promoted, said so in its heading. The whole text, headings included, is
    cut at ``max_chars`` + CONTEXT_HEADINGS_CHARS: the bound the job's worst case was counted with."""
    if not results:
        return ""
    share = max(1, max_chars // len(results))
    spare = sum(max(0, share - len(r.text)) for r in results)
    long = sum(1 for r in results if len(r.text) > share)
    if long:
        share += spare // long
    parts = []
    for r in results:
        text = r.text
        if len(text) > share:
            text = text[:share] + f"\n[... {len(r.text) - share} characters cut]"
        head = f"--- {r.role or 'worker'} (step {r.step}, {r.model}): {r.state}"
        if r.state != "done" and r.reason:
            head += f" ({r.reason[:200]})"
        if chosen and r.job_id == chosen:
            head += " [the answer the user chose as the task's answer]"
        parts.append(head + "\n" + (text or "(no output)"))
    out = "\n\n".join(parts)
    room = max_chars + CONTEXT_HEADINGS_CHARS
    if len(out) > room:  # many results: their headings alone would pass the bound
        keep = room - 40  # room for the note
        out = out[:keep] + f"\n[... {len(out) - keep} characters cut]"
    return out


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller reads of the configuration: ``context_max_chars`` (swarm section) bounds the earlier
    results a later step is given; ``has_api_key`` (openrouter section) says whether a cloud job can run at
    all; ``demo``: every job is a demo job (the demo endpoint answers, no key is needed)."""

    context_max_chars: int
    has_api_key: bool
    demo: bool = False

    @classmethod
    def of(cls, cfg: Config, *, demo: bool = False) -> ControllerSettings:
        return cls(
            context_max_chars=cfg.swarm.context_max_chars,
            has_api_key=bool(cfg.openrouter.api_key or cfg.openrouter.management_key),
            demo=demo,
        )


class Controller:
    name = "controller"

    def __init__(
        self,
        settings: ControllerSettings,
        bus: Bus,
        state: SwarmState,
        *,
        spend: SpendGuardP | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "",
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.state = state
        self.spend = spend
        self.clock = clock
        self.host = host
        self.published = 0
        self.skipped = 0
        self.errors = 0
        self._started = False
        self._handled: set[str] = set()
        self._released: set[str] = set()  # job ids this process queued or ended
        self.ended = 0  # later steps ended without a call (no earlier step succeeded)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ component
    async def start(self) -> None:
        self._started = True
        for dv in list(self.state.decisions.values()):
            if dv.status == "approved":
                self._spawn(dv.id)

    async def stop(self) -> None:
        self._started = False
        await cancel_and_wait(list(self._tasks))

    def info(self) -> ControllerInfo:
        return {
            "jobs_published": self.published,
            "jobs_skipped": self.skipped,
            "errors": self.errors,
            "decisions_handled": len(self._handled),
            "steps_ended_unrun": self.ended,
        }

    def on_event(self, ev: Any) -> None:
        if not self._started:
            return  # events replayed before start are handled by start()
        if isinstance(ev, Approval) and ev.action == "approved":
            self._spawn(ev.decision_id, live=True)
        elif isinstance(ev, Result) and ev.decision_id in self._handled:
            dv = self.state.decisions.get(ev.decision_id)
            if (
                dv is not None
                and dv.status == "approved"
                and any(p.task_id == ev.task_id and p.step > ev.step for p in dv.plan)
            ):
                self._spawn_release(ev.decision_id)

    def _spawn(self, decision_id: str, live: bool = False) -> None:
        if decision_id in self._handled:
            return
        self._handled.add(decision_id)
        t = asyncio.create_task(self._publish_decision(decision_id, live), name=f"controller-{decision_id}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _spawn_release(self, decision_id: str) -> None:
        """A result came in: the next step of its task may be due (only jobs not released yet go out)."""
        t = asyncio.create_task(self._publish_decision(decision_id, live=True), name=f"controller-step-{decision_id}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ jobs
    def _plan(self, decision: Decision) -> list[PlanItem]:
        dv = self.state.decisions.get(decision.id)
        return dv.plan if dv is not None else list(decision.plan)

    def earlier(self, decision: Decision, item: PlanItem) -> list[str]:
        """Job ids of the step just before ``item``'s (same task, same decision); [] for a first step."""
        plan = self._plan(decision)
        before = [p.step for p in plan if p.task_id == item.task_id and p.step < item.step]
        if not before:
            return []
        prev = max(before)
        return [job_id(decision.id, i) for i, p in enumerate(plan) if p.task_id == item.task_id and p.step == prev]

    def release_step(self, decision: Decision, item: PlanItem) -> bool:
        """Whether a plan item's job goes out now: a task's first step at once, a later step when every job of
        the step before has a stored result."""
        return all(j in self.state.results for j in self.earlier(decision, item))

    def context_results(self, decision: Decision, item: PlanItem) -> list[Result]:
        """What a job is given to build on: the stored results of its task's earlier steps in this decision,
        and for a follow-up (round > 0) the results of the task's earlier decisions first.

        When a person promoted one answer of the task, that answer stands for the rounds it belongs to: the
        earlier decisions' results are the promoted one alone, and an earlier step of this decision that
        holds it gives only it."""
        out = []
        for r in self.state.task_results(item.task_id):
            if r.decision_id == decision.id:
                if r.step < item.step:
                    out.append(r)
            elif decision.round > 0:
                d = self.state.decisions.get(r.decision_id)
                if d is not None and d.decision.created_at <= decision.created_at:
                    out.append(r)
        mine = sorted((r for r in out if r.decision_id == decision.id), key=lambda r: (r.step, r.job_id))
        before = [r for r in out if r.decision_id != decision.id]
        chosen = self.state.promoted_result(item.task_id)
        if chosen is not None and chosen in out:
            if chosen.decision_id != decision.id:
                before = [chosen]
            else:
                mine = [r for r in mine if r.step != chosen.step or r is chosen]
        return before + mine

    def build_job(self, decision: Decision, index: int, item: PlanItem) -> Job:
        task = self.state.tasks.get(item.task_id)
        text = task.task.text if task is not None else f"(task {item.task_id})"
        jid = job_id(decision.id, index)
        earlier = self.context_results(decision, item)
        if earlier or decision.round > 0:
            limit = self.settings.context_max_chars
            intro = (
                "Earlier results for this task follow (the work of other roles of the swarm); build on them."
                if item.step > 0 or not decision.round
                else f"This is follow-up round {decision.round} for this task; earlier results follow."
            )
            chosen = task.promoted if task is not None else ""
            context = bounded_context(earlier, limit, chosen) or "(none stored)"
            text = f"Task:\n{text}\n\n{intro}\n\n{context}"
            if decision.round > 0 and decision.reason:
                text += f"\n\nWhy the heartbeat asked for this follow-up: {decision.reason[:1000]}"
        messages = [
            ChatMessage(role="system", content=system_prompt(item.role)),
            ChatMessage(role="user", content=text),
        ]
        job = Job(
            id=jid,
            worker_id=worker_id(decision.id, index),
            decision_id=decision.id,
            task_id=item.task_id,
            role=item.role,
            model=item.model,
            max_tokens=item.max_tokens,
            messages=messages,
            step=item.step,
            created_at=self.clock(),
            demo=self.settings.demo or decision.demo or bool(task is not None and task.task.demo),
        )
        if self.spend is not None:
            try:
                worst = float(self.spend.worst_case(job))
                job.reserve_usd = round(worst, 9) if math.isfinite(worst) else 0.0  # no bound: the pool refuses it
            except Exception:  # noqa: BLE001 - an estimate is advisory; the pool reserves for real
                log.debug("no estimate for %s", job.model)
        return job

    async def _on_queue(self, job: Job) -> bool:
        try:
            return await self.bus.jobs.is_queued(S.job(lane_of(job.model), job.id))
        except Exception:  # noqa: BLE001 - unsure (bus down, timeout): assume absent; the msg id dedupes
            return False

    async def _needed(self, job: Job) -> bool:
        if job.id in self.state.results:
            return False
        w = self.state.workers.get(job.worker_id)
        if w is not None and w.state != "queued":
            return False  # the pool has it (or had it)
        if await self.bus.last_event(S.evt("result", job.id)) is not None:
            return False
        return not await self._on_queue(job)

    async def _publish_decision(self, decision_id: str, live: bool = False) -> None:
        """Queue a decision's jobs. ``live``: the approval just happened, so no job of it can exist yet
        (the Nats-Msg-Id still dedupes a race); after a restart each job is checked first."""
        dv = self.state.decisions.get(decision_id)
        if dv is None or dv.status != "approved":
            return

        async def one(job: Job) -> None:
            try:
                if job.id in self._released:
                    return
                if not live and not await self._needed(job):
                    self._released.add(job.id)
                    self.skipped += 1
                    return
                if live and (job.id in self.state.results or job.worker_id in self.state.workers):
                    self._released.add(job.id)  # queued before (a step released from an earlier result)
                    return
                self._released.add(job.id)
                why = self.unrun_reason(dv.decision, job)
                if why is not None:
                    await self.end_unrun(job, str(why))  # the event carries the text
                else:
                    await self.publish_job(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep going with the other jobs; say so in info()
                self.errors += 1
                self._released.discard(job.id)  # a later result or a restart tries again
                log.warning("could not queue job %s: %s", job.id, str(exc)[:200])

        async with self._lock:  # one decision at a time: the state's view of results does not move under us
            jobs = [
                self.build_job(dv.decision, i, item)
                for i, item in enumerate(dv.plan)
                if job_id(dv.id, i) not in self._released and self.release_step(dv.decision, item)
            ]
            for k in range(0, len(jobs), 25):  # in parallel, a bounded batch at a time
                await asyncio.gather(*(one(j) for j in jobs[k : k + 25]))

    def unrun_reason(self, decision: Decision, job: Job) -> Refusal | None:
        """Why a later step must not run: no job of the earlier steps of its task (this decision) is done.
        None: it may run."""
        if job.step == 0:
            return None
        plan = self._plan(decision)
        earlier = [job_id(decision.id, i) for i, p in enumerate(plan) if p.task_id == job.task_id and p.step < job.step]
        rs = [self.state.results[j] for j in earlier if j in self.state.results]
        if not earlier or any(r.state == "done" for r in rs):
            return None
        what = ", ".join(sorted({f"{r.role or 'worker'} {r.state}" for r in rs}))[:300]
        return Refusal(f"not run: no earlier step of this task succeeded ({what})")

    async def end_unrun(self, job: Job, reason: str) -> None:
        """End a later step without a call: its Result and final WorkerEvent, as a worker would write them."""
        now = self.clock()
        res = Result.of(job, "cancelled", reason=reason, started_at=now, ended_at=now, demo=job.demo)
        await self.bus.publish_event(res, msg_id=f"result-{job.id}")
        ev = WorkerEvent.of(job, "cancelled", reason=reason, host=self.host, at=now, demo=job.demo)
        await self.bus.publish_event(ev, msg_id=f"cancelled-{job.id}")
        self.ended += 1

    def queued_reason(self, job: Job) -> Refusal | None:
        """Why a queued cloud job cannot run as things stand (said on its "queued" event); None: it can."""
        if (
            job.model.startswith("openrouter/")
            and not self.settings.demo
            and not job.demo
            and not self.settings.has_api_key
        ):
            return Refusal("OPENROUTER_API_KEY is not set: set it, or start with --demo")
        return None

    async def publish_job(self, job: Job) -> None:
        why = self.queued_reason(job)
        ev = WorkerEvent.of(
            job, "queued", reason=str(why) if why else "", host=self.host, at=self.clock(), demo=job.demo
        )
        await self.bus.publish_event(ev, msg_id=f"queued-{job.id}")
        await self.bus.publish(S.job(lane_of(job.model), job.id), job.to_bytes(), msg_id=job.id)
        self.published += 1

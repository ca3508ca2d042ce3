"""The swarm controller: an approved decision becomes jobs on the JOBS work queue, one per plan item.

Job ids are deterministic (``<decision>-j<n>``, worker ``<decision>-w<n>``) and published with the job id as
``Nats-Msg-Id``, so re-publishing is harmless. After a restart, approvals already handled create no second
job: a job is published only when its result is not stored and the pool has not touched it (its worker's
latest state is "queued" or absent) and it is not already waiting on the queue.

Chaining roles by ``PlanItem.step`` comes later: ``release_step`` is the one place that decides which steps
go out now (all of them, for now).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.js.errors import NotFoundError

from . import subjects as S
from .bus import Bus
from .config import Config
from .guards import SpendGuardP
from .messages import Approval, ChatMessage, Decision, Job, PlanItem, WorkerEvent, job_id, worker_id
from .state import SwarmState

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
    return "local" if model.startswith("ollama_chat/") else "cloud"


def system_prompt(role: str) -> str:
    return ROLE_PROMPTS.get(role, DEFAULT_PROMPT.format(role=role or "general"))


class Controller:
    name = "controller"

    def __init__(self, cfg: Config, bus: Bus, state: SwarmState, *, spend: SpendGuardP | None = None,
                 demo: bool = False, clock: Callable[[], float] = time.time, host: str = "") -> None:
        self.cfg = cfg
        self.bus = bus
        self.state = state
        self.spend = spend
        self.demo = demo
        self.clock = clock
        self.host = host
        self.published = 0
        self.skipped = 0
        self.errors = 0
        self._started = False
        self._handled: set[str] = set()
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
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def info(self) -> dict[str, Any]:
        return {"jobs_published": self.published, "jobs_skipped": self.skipped, "errors": self.errors,
                "decisions_handled": len(self._handled)}

    def on_event(self, ev: Any) -> None:
        if not self._started:
            return  # events replayed before start are handled by start()
        if isinstance(ev, Approval) and ev.action == "approved":
            self._spawn(ev.decision_id, live=True)

    def _spawn(self, decision_id: str, live: bool = False) -> None:
        if decision_id in self._handled:
            return
        self._handled.add(decision_id)
        t = asyncio.create_task(self._publish_decision(decision_id, live), name=f"controller-{decision_id}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ jobs
    def release_step(self, decision: Decision, item: PlanItem) -> bool:
        """Whether a plan item's job goes out now (issue 7 will hold steps > 0 until earlier results exist)."""
        return True

    def build_job(self, decision: Decision, index: int, item: PlanItem) -> Job:
        task = self.state.tasks.get(item.task_id)
        text = task.task.text if task is not None else f"(task {item.task_id})"
        jid = job_id(decision.id, index)
        messages = [ChatMessage(role="system", content=system_prompt(item.role)),
                    ChatMessage(role="user", content=text)]
        job = Job(id=jid, worker_id=worker_id(decision.id, index), decision_id=decision.id, task_id=item.task_id,
                  role=item.role, model=item.model, max_tokens=item.max_tokens, messages=messages, step=item.step,
                  created_at=self.clock(),
                  demo=self.demo or decision.demo or bool(task is not None and task.task.demo))
        if self.spend is not None:
            try:
                job.reserve_usd = round(self.spend.estimate(job.model, len(text) + len(messages[0].content),
                                                            job.max_tokens)[1], 9)
            except Exception:  # noqa: BLE001 - an estimate is advisory; the pool reserves for real
                log.debug("no estimate for %s", job.model)
        return job

    async def _on_queue(self, job: Job) -> bool:
        try:
            await self.bus._js.get_last_msg(S.JOBS_STREAM, S.job(lane_of(job.model), job.id))
        except NotFoundError:
            return False
        except Exception:  # noqa: BLE001 - unsure: assume absent; the msg id dedupes within the window
            return False
        return True

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
        jobs = [self.build_job(dv.decision, i, item) for i, item in enumerate(dv.plan)
                if self.release_step(dv.decision, item)]

        async def one(job: Job) -> None:
            try:
                if not live and not await self._needed(job):
                    self.skipped += 1
                    return
                await self.publish_job(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep going with the other jobs; say so in info()
                self.errors += 1
                log.warning("could not queue job %s: %s", job.id, str(exc)[:200])

        async with self._lock:
            for k in range(0, len(jobs), 25):  # in parallel, a bounded batch at a time
                await asyncio.gather(*(one(j) for j in jobs[k:k + 25]))

    def queued_reason(self, job: Job) -> str:
        if job.model.startswith("openrouter/") and not self.demo and not job.demo \
                and not self.cfg["openrouter.api_key"]:
            return "OPENROUTER_API_KEY is not set"
        return ""

    async def publish_job(self, job: Job) -> None:
        ev = WorkerEvent(worker_id=job.worker_id, job_id=job.id, decision_id=job.decision_id, task_id=job.task_id,
                         model=job.model, role=job.role, state="queued", reason=self.queued_reason(job),
                         host=self.host, at=self.clock(), demo=job.demo)
        await self.bus.publish_event(ev, msg_id=f"queued-{job.id}")
        await self.bus.publish(S.job(lane_of(job.model), job.id), job.to_bytes(), msg_id=job.id)
        self.published += 1

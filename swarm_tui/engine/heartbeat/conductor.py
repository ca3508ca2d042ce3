"""The heartbeat conductor: wakes, computes the rules' envelope, asks the local model, clamps, decides.

It wakes on new tasks (debounced, so a burst makes one decision), on an interval and on a scheduled review. All
scheduling uses the monotonic clock, and the next wake is always "now + period", so a clock jump (a laptop
waking from sleep) gives at most one beat, never a backlog. While the swarm is paused (``state.paused``, set by
``swarm-tui pause``) no decision is made. Decisions go to the event log; approval is a person's (manual) or the
policy's (auto, under a cost limit); pending decisions expire.

Closing the loop: a beat also reviews finished tasks with new results (each set of results once). The local
model is given a bounded summary of them and may propose a follow-up decision for the same task (``round`` one
more than the task's last); it is clamped like any plan, plus the task's own limits (``budget.task_max_followups``
rounds, ``budget.task_max_usd`` total spend), and approved like any decision. A task at either limit is not
offered. The rules alone never propose follow-ups: they cannot judge results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Approval, ControlEvent, Decision, Result, Task, new_id
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards import tokens
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.heartbeat import follow_ups, learn
from swarm_tui.engine.heartbeat.advice import Advice
from swarm_tui.engine.heartbeat.clamp import Clamped, clamp, item_cost, limit_tasks, rules_advice
from swarm_tui.engine.heartbeat.envelope import Envelope, ReadyTask, RoleSpec, compute_envelope
from swarm_tui.engine.heartbeat.follow_ups import REVIEWABLE
from swarm_tui.engine.heartbeat.learn import Preference
from swarm_tui.engine.heartbeat.local_model import AdviceResult, Advisor
from swarm_tui.engine.heartbeat.merge import merge_plans
from swarm_tui.engine.heartbeat.settings import Clocks, ConductorGuards, ConductorSettings
from swarm_tui.engine.info import ConductorInfo, EnvelopeSummary, NoEnvelope
from swarm_tui.engine.lifecycle import cancel_and_wait, within
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.projection.recorder import Recorder
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import ConductorState
from swarm_tui.engine.telemetry.seam import tracer

NO_KEY_LOCAL_ONLY = "no OpenRouter key (OPENROUTER_API_KEY): local roles only"

log = logging.getLogger(__name__)


class Conductor:
    name = "conductor"

    def __init__(
        self,
        settings: ConductorSettings,
        bus: Bus,
        state: SwarmState,
        *,
        guards: ConductorGuards = ConductorGuards(),
        advisor: Advisor | None = None,
        clocks: Clocks = Clocks(),
        record: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.state = state
        self.spend = guards.spend
        self.ram = guards.ram
        self.rate_limits = guards.rate_limits
        self.lane = guards.lane or LocalLane()
        self.clock = clocks.wall
        self.monotonic = clocks.monotonic
        self.use_ollama = settings.use_ollama
        self.advisor = advisor
        self.record = record or Recorder(bus, state)  # publishes a decision or an approval and applies it
        self.demo = settings.demo
        self.tick_s = settings.tick_s
        self.roles = {n: RoleSpec(r.name, r.model, r.max_tokens) for n, r in settings.roles.items()}
        # OpenRouter may bill a role's call at any of its fallback models: the spend guard reserves the dearest
        self.fallbacks: dict[str, set[str]] = {}
        for r in settings.roles.values():
            if r.model.startswith("openrouter/"):
                self.fallbacks.setdefault(r.model, set()).update(r.fallback_models)
        self.beats = 0
        self.decisions = 0
        self.status: ConductorState = "idle"
        self.last_decision = ""
        self.last_trigger = ""
        self.note = ""  # why the last beat published nothing
        self.reachable: bool | None = None  # None: not asked yet
        self.last_error = ""
        self.last_warning = ""  # the last model call's warning (its prompt filled the window)
        self.last_envelope: EnvelopeSummary | NoEnvelope = {}  # {} until the first beat
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._debounce_at: float | None = None
        self._burst_start: float | None = None
        self._next_interval = math.inf
        self._next_review = math.inf
        self.reviewed: dict[str, int] = {}  # task id -> how many results it had when it was last reviewed
        self._results_due = False
        self.followups = 0
        self.review_note = ""  # what the last review of finished tasks came to

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.advisor is None and self.use_ollama:
            self.advisor = Advisor(self.settings.ollama, self.lane, ram=self.ram, monotonic=self.monotonic)
        now = self.monotonic()
        self._next_interval = now + self.settings.heartbeat.interval_s
        self._next_review = now + self.settings.heartbeat.review_s
        self._started = True
        for tv in self.state.tasks.values():  # results stored before this start are not reviewed again
            if tv.state in REVIEWABLE:
                self.reviewed[tv.id] = len(tv.results)
        if self.state.pending_tasks():  # tasks left from before a restart
            self._schedule_debounce()
        self._task = asyncio.create_task(self._run(), name="conductor")

    async def stop(self) -> None:
        self._started = False
        await cancel_and_wait([self._task])
        self._task = None
        if self.advisor is not None:
            await self.advisor.close()

    def on_event(self, ev: Any) -> None:
        if not self._started:
            return  # replayed history before start: start() looks at the state once
        if isinstance(ev, Task):
            self._schedule_debounce()
        elif isinstance(ev, Result):
            tv = self.state.tasks.get(ev.task_id)
            if tv is not None and tv.state in REVIEWABLE and self.reviewed.get(tv.id) != len(tv.results):
                self._results_due = True  # the task is finished with new results: review them soon
                self._schedule_debounce()
        elif isinstance(ev, ControlEvent) and ev.what in ("resume", "scale"):
            if self.state.pending_tasks():
                self._schedule_debounce()
        if isinstance(ev, ControlEvent) and ev.what in ("pause", "resume"):
            self.status = "paused" if self.state.paused else "idle"
        if isinstance(ev, Decision):
            self._wake.set()  # a new pending decision: the loop's next wake counts its expiry

    def _schedule_debounce(self) -> None:
        now = self.monotonic()
        d = self.settings.heartbeat.debounce_s
        if self._burst_start is None:
            self._burst_start = now
        # trailing debounce, but never later than 4 debounce periods after the burst began
        self._debounce_at = min(now + d, self._burst_start + 4 * d)
        self._wake.set()

    def beat_now(self, trigger: str = "requested") -> None:
        """Ask for a beat as soon as possible (the TUI's "decide now")."""
        self._debounce_at = self.monotonic()
        self.last_trigger = trigger
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    def _due(self) -> float:
        return min(
            self._debounce_at if self._debounce_at is not None else math.inf, self._next_interval, self._next_review
        )

    def _expires_in(self) -> float:
        """Seconds until the first pending decision expires (wall clock), inf when none waits."""
        pending = self.state.pending_decisions()
        if not pending:
            return math.inf
        return min(dv.decision.expires_at for dv in pending) - self.clock()

    async def _run(self) -> None:
        while True:
            # an overdue expiry whose record failed (the bus away) is tried again every 0.2 s, not in a busy loop
            wait = max(0.0, min(self._due() - self.monotonic(), max(self._expires_in(), 0.2), self.tick_s))
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), wait)
            self._wake.clear()
            try:
                await self._expire_due()
                trigger = self._take_trigger()
                if trigger:
                    await self.beat(trigger)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failed beat is logged and shown; the heartbeat beats again
                log.exception("heartbeat beat failed")
                self.note = f"last beat failed: {type(exc).__name__}: {str(exc)[:200]}"
                self.status = "paused" if self.state.paused else "idle"

    def _take_trigger(self) -> str:
        now = self.monotonic()
        triggers = []
        if self._debounce_at is not None and now >= self._debounce_at:
            news = (["new tasks"] if self.state.pending_tasks() or not self._results_due else []) + (
                ["new results"] if self._results_due else []
            )
            triggers.append(" + ".join(news))
            self._results_due = False
            self._debounce_at = self._burst_start = None
        if now >= self._next_review:
            triggers.append("scheduled review")
            self._next_review = now + self.settings.heartbeat.review_s
            self._next_interval = now + self.settings.heartbeat.interval_s
        elif now >= self._next_interval:
            triggers.append("interval")
            self._next_interval = now + self.settings.heartbeat.interval_s
        return " + ".join(triggers)

    # ------------------------------------------------------------------ one beat
    async def beat(self, trigger: str) -> Decision | None:
        """One decision round; returns the published decision, or None (``note`` says why)."""
        self.beats += 1
        self.last_trigger = trigger
        if self.state.paused:
            self.status = "paused"
            self.note = "paused: no decision (swarm-tui resume)"
            return None
        decision = await self._new_work(trigger)
        if self.state.paused:
            return decision
        follow = await follow_ups.review(self, trigger)
        return decision or (follow[0] if follow else None)

    async def _new_work(self, trigger: str) -> Decision | None:
        views = self.state.pending_tasks()[: self.settings.heartbeat.max_tasks_per_beat]
        if not views:
            self.note = "no pending tasks"
            return None
        tasks = [ReadyTask(v.id, v.task.text, v.task.priority) for v in views]
        env = self.envelope(tasks)
        self.last_envelope = env.summary()
        if env.max_workers <= 0:
            self.note = f"no decision: the envelope allows 0 workers ({env.why_zero()})"
            return None
        self.status = "deciding"
        try:
            return await self._decide(trigger, env)
        finally:
            self.status = "paused" if self.state.paused else "idle"

    async def _decide(self, trigger: str, env: Envelope) -> Decision | None:
        examples, prefs = self.learned()
        result: AdviceResult | None = None
        if self.advisor is not None:
            result = await self.advisor.advise(env, env.tasks, examples=examples)
            self.reachable = result.reachable
            self.last_error = result.error
            self.last_warning = result.warning
        if self.state.paused:
            self.note = "paused during the beat: no decision"
            return None
        still = {v.id for v in self.state.pending_tasks()}
        env.tasks = [t for t in env.tasks if t.id in still]
        raw = result.raw if result else ""
        latency = result.latency_ms if result else 0.0
        advice = result.advice if result is not None else None
        error = "the local model is off: the rules decide" if result is None else result.error
        # the rules' plan is the floor, the model adds (heartbeat/merge.py); the clamp fits what they make
        merged = merge_plans(env, rules_advice(env), advice, estimate=self.estimate, prefs=prefs)
        clamped = self.clamp_plan(env, merged.advice)
        source = result.source if (result is not None and advice is not None) else "rules"
        if not clamped.items:
            self.note = (
                "no decision: every planned worker was clamped away ("
                + "; ".join(c.reason for c in clamped.clamps[:3])
                + ")"
            )
            return None
        now = self.clock()
        task_ids = list(dict.fromkeys(p.task_id for p in clamped.items))
        # the examples the model's answer was given (none when there was no usable answer: nothing learned them)
        used = [e[:300] for e in result.examples_used] if result is not None and advice is not None else []
        summary = f"{trigger}: {len(clamped.items)} worker(s) for {len(task_ids)} task(s)"
        if advice is not None and advice.reason:
            summary += f"; model: {advice.reason[:300]}"
        decision = Decision(
            id=new_id("d"),
            task_ids=task_ids,
            plan=clamped.items,
            est_cost_min=clamped.est_min,
            est_cost_max=clamped.est_max,
            item_costs=[item_cost(c) for c in clamped.costs] if len(clamped.costs) == len(clamped.items) else [],
            source=source,
            clamps=clamped.clamps[:500],
            raw=raw,
            latency_ms=latency,
            error=error[:2000],
            reason=summary[:2000],
            created_at=now,
            expires_at=now + self.settings.approval.expire_s,
            demo=self.demo,
            warning=(result.warning if result is not None else "")[:500],
            merge=merged.choices[:200],
            examples=used[:8],
        )
        await self.record(decision, msg_id=decision.id)
        tracer().decision(decision, (result.prompt_tokens, result.eval_tokens) if result else (0, 0))  # traces on
        self.decisions += 1
        self.last_decision = decision.id
        self.note = ""
        await self.maybe_auto_approve(decision)
        return decision

    def learned(self) -> tuple[list[str], dict[str, Preference]]:
        """The person's recent words as prompt examples and learned worker counts (none with learn = false)."""
        if not self.settings.heartbeat.learn:
            return [], {}
        ls = learn.lessons(self.state)
        return learn.examples(ls), learn.preferences(ls)

    def clamp_plan(self, env: Envelope, advice: Advice, rounds: dict[str, int] | None = None) -> Clamped:
        """The envelope's clamp, then each task's own limits (spend so far, follow-up rounds)."""
        c = clamp(env, advice, self.estimate, self.roles)
        spent = {t.id: self.state.task_spend(t.id) for t in env.tasks}
        return limit_tasks(
            c,
            spent=spent,
            max_usd=self.settings.budget.task_max_usd,
            rounds=rounds,
            max_rounds=self.settings.budget.task_max_followups if rounds is not None else None,
        )

    def envelope(self, tasks: list[ReadyTask]) -> Envelope:
        scale = self.state.scale_figure(self.settings.swarm.scale).value
        remaining: float | None = None
        blocked: Refusal | None = None
        if self.spend is not None:
            remaining = float(self.spend.remaining_usd())
            blocked = self.spend.cloud_blocked()
        if self.settings.local_only:  # no OpenRouter key: a fully local swarm, its cloud roles left out
            blocked = Refusal(NO_KEY_LOCAL_ONLY)
        ram_ok = self.ram.headroom_ok() if self.ram is not None else None
        rl = self.rate_limits.rate_limits() if self.rate_limits is not None else None
        return compute_envelope(
            list(self.roles.values()),
            tasks,
            scale=scale,
            live_workers=len(self.state.live_workers()),
            max_per_task=self.settings.heartbeat.max_workers_per_task,
            estimate=self.estimate,
            remaining_usd=remaining,
            per_decision_usd=self.settings.budget.per_decision_usd,
            ram_ok=ram_ok,
            rate_limits=rl,
            now=self.clock(),
            cloud_blocked=blocked,
            unpriced=self.spend.unpriced if self.spend is not None else None,
            context_bytes=tokens.context_bytes_bound(self.settings.swarm.context_max_chars),
        )

    def estimate(self, model: str, prompt_bytes: int, max_tokens: int) -> tuple[float, float]:
        """(likely, worst) USD of one worker: the spend guard's (the worker's reservation), else the fallback's."""
        if is_local_chat(model):
            return 0.0, 0.0
        if self.spend is not None:
            likely, worst = self.spend.estimate(model, prompt_bytes, max_tokens)
            for m in sorted(self.fallbacks.get(model, ())):  # the worst case the spend guard will reserve
                worst = max(worst, self.spend.estimate(m, prompt_bytes, max_tokens)[1])
            return float(likely), float(worst)
        p = self.settings.openrouter.fallback_prompt_usd_per_mtok / 1e6
        c = self.settings.openrouter.fallback_completion_usd_per_mtok / 1e6
        prompt_tokens = tokens.prompt_tokens_bound(prompt_bytes)  # one token a UTF-8 byte at most
        return prompt_bytes / 4 * p + max_tokens / 2 * c, prompt_tokens * p + max_tokens * c

    # ------------------------------------------------------------------ approval
    async def maybe_auto_approve(self, d: Decision) -> None:
        if self.settings.approval.mode != "auto":
            return
        limit = self.settings.approval.auto_max_usd
        if d.est_cost_max > limit:
            self.note = f"{d.id} waits for approval: worst case ${d.est_cost_max:.4f} > auto limit ${limit:.4f}"
            return
        ev = Approval(
            decision_id=d.id,
            action="approved",
            by="auto",
            at=self.clock(),
            reason=f"worst case ${d.est_cost_max:.4f} <= ${limit:.4f}",
        )
        await self.record(ev, msg_id=f"{d.id}-final")

    async def _expire_due(self) -> None:
        now = self.clock()
        for dv in self.state.pending_decisions():
            if now < dv.decision.expires_at:
                continue
            ev = Approval(
                decision_id=dv.id,
                action="expired",
                by="conductor",
                at=now,
                reason=f"not approved within {self.settings.approval.expire_s:g} s",
            )
            await self.record(ev, msg_id=f"{dv.id}-final")

    # ------------------------------------------------------------------ status
    def info(self) -> ConductorInfo:
        mode = self.settings.approval.mode
        approval = f"auto (<= ${self.settings.approval.auto_max_usd:.4f})" if mode == "auto" else "manual"
        use = self.advisor is not None and self.reachable is not False
        source = self.advisor.source if (use and self.advisor is not None) else "rules"
        nxt = self._due() - self.monotonic() if self._started else None
        status = "paused" if self.state.paused and self.status != "deciding" else self.status
        return {
            "source": source,
            "state": status,
            "ollama_model": self.settings.ollama.model if self.use_ollama else None,
            "ollama_reachable": self.reachable,
            "ollama_error": self.last_error,
            "ollama_warning": self.last_warning,
            "next_beat_s": None if nxt is None or math.isinf(nxt) else round(max(0.0, nxt), 1),
            "last_decision": self.last_decision,
            "beats": self.beats,
            "decisions": self.decisions,
            "approval": approval,
            "last_trigger": self.last_trigger,
            "note": self.note,
            "envelope": self.last_envelope,
            "followups": self.followups,
            "review": self.review_note,
        }

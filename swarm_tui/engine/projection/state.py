"""The swarm's state, derived from the event log.

``SwarmState.apply`` folds one event in; replaying the whole log rebuilds the same state after any restart.
The CLI's ``status``, the conductor and the TUI all read this one projection.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.bus.timefmt import utc_text
from swarm_tui.engine.projection.derive import derive_task
from swarm_tui.engine.projection.figures import ScaleFigure, decision_estimate, scale_figure, task_counts
from swarm_tui.engine.states import FINAL_STATES, DecisionStatus, TaskState, WorkerState

if TYPE_CHECKING:  # the models arrive decoded; the screen builds its empty state before pydantic is imported
    from swarm_tui.engine.bus.wire import (
        Approval,
        ControlEvent,
        Decision,
        Event,
        PlanItem,
        Result,
        SpendEntry,
        Task,
        WorkerEvent,
    )


def resize_plan(plan: list[PlanItem], workers: int | None) -> list[PlanItem]:
    """The plan with ``workers`` items: the first n, or the items repeated in order to reach n."""
    if workers is None or not plan:
        return list(plan)
    if workers <= len(plan):
        return list(plan[:workers])
    out = list(plan)
    i = 0
    while len(out) < workers:
        out.append(plan[i % len(plan)].model_copy())
        i += 1
    return out


# The ranges of the control verbs (engine/control_requests.py): a scale or ceiling outside them is not applied,
# whoever wrote it. The readers of the log refuse them sooner, with the configured swarm.max_scale (bus/trust.py).
SCALE_LIMIT = 200  # swarm.max_scale's own upper bound


def _whole(v: float, limit: int) -> bool:
    return 0 <= v <= limit and v == int(v)


def utc_day(ts: float) -> str:
    return utc_text(ts, "%Y-%m-%d")  # any finite time (a date from the log is the publisher's word)


@dataclass
class DecisionView:
    decision: Decision
    status: DecisionStatus = "pending"
    workers: int | None = None  # edited worker count
    by: str = ""
    at: float = 0.0
    reason: str = ""

    @property
    def id(self) -> str:
        return self.decision.id

    @property
    def plan(self) -> list[PlanItem]:
        return resize_plan(self.decision.plan, self.workers)

    @property
    def estimate(self) -> tuple[float, float]:
        """(likely, worst case) USD of the plan as it stands: the proposal's, or re-priced after an edit."""
        return decision_estimate(self.decision, self.workers)


@dataclass
class TaskView:
    task: Task
    decisions: list[str] = field(default_factory=list)
    jobs: dict[str, WorkerState] = field(default_factory=dict)  # job_id -> latest worker state
    results: list[str] = field(default_factory=list)  # job ids with a stored result, in order
    spend_usd: float = 0.0
    state: TaskState = "pending"
    reason: str = ""
    promoted: str = ""  # the job id of the answer a person chose as the task's answer ("" until one is)
    promoted_by: str = ""
    promoted_at: float = 0.0

    @property
    def id(self) -> str:
        return self.task.id


@dataclass
class SpendTotals:
    today: float = 0.0
    session: float = 0.0
    total: float = 0.0
    estimated: float = 0.0  # part of the total that is an estimate (no usage.cost)
    by_model: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_decision: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    entries: int = 0


class SwarmState:
    def __init__(self, *, session_start: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.session_start = clock() if session_start is None else session_start
        self.tasks: dict[str, TaskView] = {}
        self.decisions: dict[str, DecisionView] = {}
        self.workers: dict[str, WorkerEvent] = {}  # worker_id -> latest event
        self.results: dict[str, Result] = {}  # job_id -> first stored result
        self.duplicate_results: Counter[str] = Counter()
        self.spend_entries: dict[str, SpendEntry] = {}
        self.duplicate_spend: Counter[str] = Counter()
        self.spend_days: dict[str, float] = defaultdict(float)
        self.spend = SpendTotals()
        self.scale: int | None = None  # the engine sets swarm.scale here at start until a command changes it
        self.commanded_scale: int | None = None  # the last scale command's (figures.scale_figure: where from)
        self.paused = False
        self.ceiling_usd: float | None = None
        self.seen: dict[str, float] = {}  # attention kind -> when a person last saw it (attention/needs.py)
        self.refused_controls: Counter[str] = Counter()  # a scale or ceiling out of range: counted, not applied
        self.last_seq = 0
        self.events = 0
        self.version = 0  # bumped on every change, so observers can tell cheaply that something moved
        # by the message's type tag (wire.EVENT_TYPES' keys): a test holds the two in step
        self._folds: dict[str, Callable[[Any], None]] = {
            "task": self._on_task,
            "decision": self._on_decision,
            "approval": self._on_approval,
            "worker": self._on_worker,
            "result": self._on_result,
            "spend": self._on_spend,
            "control": self._on_control,
            "job": self._ignore,
            "chunk": self._ignore,
        }

    # ------------------------------------------------------------------ folding
    def apply(self, ev: Event, seq: int = 0) -> None:
        """Fold one event in. Idempotent per event id, so the engine may apply its own write at once and again
        when the log delivers it; ``seq`` is the log position (0: not read from the log)."""
        if seq:
            self.last_seq = max(self.last_seq, seq)
        self.events += 1
        self.version += 1
        fold = self._folds.get(ev.type)
        if fold is None:  # decode() knows no other type: a new message type needs its fold here
            raise AssertionError(f"no fold for a {ev.type!r} event")
        fold(ev)

    def _ignore(self, _ev: Any) -> None:
        """Jobs and chunks are not log events (they have their own subjects): counted, nothing to fold."""

    def _on_task(self, t: Task) -> None:
        if t.id not in self.tasks:
            self.tasks[t.id] = TaskView(t)

    def _on_decision(self, d: Decision) -> None:
        if d.id in self.decisions:
            return
        self.decisions[d.id] = DecisionView(d)
        for tid in d.task_ids:
            tv = self.tasks.get(tid)
            if tv is not None and d.id not in tv.decisions:
                tv.decisions.append(d.id)
                self._derive_task(tv)

    def _on_approval(self, a: Approval) -> None:
        dv = self.decisions.get(a.decision_id)
        if dv is None:
            return
        if a.action == "edited":
            if dv.status == "pending":
                dv.workers = a.workers
            return
        if dv.status != "pending":
            return  # the first final word wins (two UIs may race)
        dv.status = a.action
        dv.by, dv.at, dv.reason = a.by, a.at, a.reason
        if a.action == "approved" and a.workers is not None:
            dv.workers = a.workers
        for tid in dv.decision.task_ids:
            if tid in self.tasks:
                self._derive_task(self.tasks[tid])

    def _on_worker(self, w: WorkerEvent) -> None:
        prev = self.workers.get(w.worker_id)
        if prev is not None and prev.state in FINAL_STATES and w.state not in FINAL_STATES:
            return  # a late "running" after the end (redelivery race) does not resurrect a worker
        self.workers[w.worker_id] = w
        tv = self.tasks.get(w.task_id)
        if tv is not None:
            if tv.jobs.get(w.job_id) not in FINAL_STATES:
                tv.jobs[w.job_id] = w.state
            self._derive_task(tv)

    def _on_result(self, r: Result) -> None:
        if r.job_id in self.results:
            self.duplicate_results[r.job_id] += 1
            return
        self.results[r.job_id] = r
        tv = self.tasks.get(r.task_id)
        if tv is not None:
            tv.results.append(r.job_id)
            tv.jobs[r.job_id] = r.state
            self._derive_task(tv)

    def _on_spend(self, s: SpendEntry) -> None:
        if s.id in self.spend_entries:
            self.duplicate_spend[s.id] += 1
            return
        self.spend_entries[s.id] = s
        t = self.spend
        t.entries += 1
        t.total += s.cost_usd
        if s.estimated:
            t.estimated += s.cost_usd
        t.by_model[s.model] += s.cost_usd
        t.by_decision[s.decision_id] += s.cost_usd
        self.spend_days[utc_day(s.at)] += s.cost_usd
        if s.at >= self.session_start:
            t.session += s.cost_usd
        tv = self.tasks.get(s.task_id)
        if tv is not None:
            tv.spend_usd += s.cost_usd

    def _on_control(self, c: ControlEvent) -> None:
        if c.what == "scale" and c.value is not None:
            if not _whole(c.value, SCALE_LIMIT):
                self.refused_controls["scale"] += 1
                return
            self.scale = self.commanded_scale = int(c.value)
        elif c.what == "pause":
            self.paused = True
        elif c.what == "resume":
            self.paused = False
        elif c.what == "ceiling" and c.value is not None:
            if not 0 <= c.value < CEILING_LIMIT_USD:  # NaN too: no comparison holds for it
                self.refused_controls["ceiling"] += 1
                return
            self.ceiling_usd = float(c.value)
        elif c.what == "promote":
            self._on_promote(c)
        elif c.what == "seen" and c.target:
            self.seen[c.target] = max(self.seen.get(c.target, 0.0), c.at)

    def _on_promote(self, c: ControlEvent) -> None:
        """The answer a person chose: one of the task's stored "done" results; a later promotion replaces it."""
        r = self.results.get(c.target)
        tv = self.tasks.get(r.task_id) if r is not None else None
        if r is None or tv is None or r.state != "done":
            return
        tv.promoted, tv.promoted_by, tv.promoted_at = r.job_id, c.by, c.at

    # ------------------------------------------------------------------ derived
    def _derive_task(self, tv: TaskView) -> None:
        views = [self.decisions[d] for d in tv.decisions if d in self.decisions]
        results = [self.results[j] for j in tv.results if j in self.results]
        tv.state, tv.reason = derive_task(tv.id, views, tv.jobs, results)

    def task_spend(self, task_id: str) -> float:
        """What a task has cost: its spend entries, or its results' costs when those are ahead (a result is
        stored just before its spend entry)."""
        tv = self.tasks.get(task_id)
        if tv is None:
            return 0.0
        return max(tv.spend_usd, sum(self.results[j].cost_usd for j in tv.results if j in self.results))

    def task_round(self, task_id: str) -> int:
        """The round of the newest decision that covers a task (0: its first decision; -1: none yet)."""
        tv = self.tasks.get(task_id)
        rounds = [self.decisions[d].decision.round for d in (tv.decisions if tv else []) if d in self.decisions]
        return max(rounds, default=-1)

    def scale_figure(self, configured: int) -> ScaleFigure:
        """The effective scale and where it came from: a scale command's, else the one the engine started at
        (``scale``, set from its swarm.scale), else ``configured`` (no engine seen: this configuration's)."""
        return scale_figure(self.commanded_scale, self.scale if self.scale is not None else configured)

    def today_spend(self, now: float | None = None) -> float:
        return self.spend_days.get(utc_day(self.clock() if now is None else now), 0.0)

    def pending_tasks(self) -> list[TaskView]:
        """Tasks that no live decision covers, by priority (high first), then age."""
        out = [t for t in self.tasks.values() if t.state == "pending"]
        return sorted(out, key=lambda t: (-t.task.priority, t.task.created_at))

    def pending_decisions(self) -> list[DecisionView]:
        return [d for d in self.decisions.values() if d.status == "pending"]

    def live_workers(self) -> list[WorkerEvent]:
        return [w for w in self.workers.values() if w.state not in FINAL_STATES]

    def task_results(self, task_id: str) -> list[Result]:
        tv = self.tasks.get(task_id)
        if tv is None:
            return []
        rs = [self.results[j] for j in tv.results if j in self.results]
        return sorted(rs, key=lambda r: (r.ended_at, r.step))

    def promoted_result(self, task_id: str) -> Result | None:
        """The task's promoted answer, None when nobody promoted one."""
        tv = self.tasks.get(task_id)
        return self.results.get(tv.promoted) if tv is not None and tv.promoted else None

    # ------------------------------------------------------------------ a JSON snapshot (status --json)
    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "tasks": [
                {
                    "id": t.id,
                    "text": t.task.text[:500],
                    "priority": t.task.priority,
                    "state": t.state,
                    "reason": t.reason,
                    "created_at": t.task.created_at,
                    "age_s": round(now - t.task.created_at, 1),
                    "decisions": list(t.decisions),
                    "results": len(t.results),
                    "spend_usd": round(t.spend_usd, 6),
                    "round": self.task_round(t.id),
                    "promoted": t.promoted or None,
                    "promoted_by": t.promoted_by or None,
                    "demo": t.task.demo,
                }
                for t in sorted(self.tasks.values(), key=lambda t: t.task.created_at)
            ],
            "task_counts": task_counts(t.state for t in self.tasks.values()),
            "decisions": [
                {
                    "id": d.id,
                    "status": d.status,
                    "task_ids": d.decision.task_ids,
                    "source": d.decision.source,
                    "workers": len(d.plan),
                    "plan": [p.model_dump() for p in d.plan],
                    "est_cost_usd": list(d.estimate),
                    "clamps": [c.model_dump() for c in d.decision.clamps],
                    "merge": [m.model_dump() for m in d.decision.merge],
                    "examples": list(d.decision.examples),
                    "error": d.decision.error,
                    "reason": d.decision.reason,
                    "latency_ms": d.decision.latency_ms,
                    "round": d.decision.round,
                    "created_at": d.decision.created_at,
                    "expires_at": d.decision.expires_at,
                    "by": d.by,
                    "decided_at": d.at or None,
                }
                for d in sorted(self.decisions.values(), key=lambda d: d.decision.created_at, reverse=True)
            ],
            "workers": [
                {
                    "id": w.worker_id,
                    "job_id": w.job_id,
                    "decision_id": w.decision_id,
                    "task_id": w.task_id,
                    "model": w.model,
                    "role": w.role,
                    "state": w.state,
                    "reason": w.reason,
                    "tokens": w.tokens,
                    "cost_usd": round(w.cost_usd, 6),
                    "host": w.host,
                    "at": w.at,
                }
                for w in self.workers.values()
                if w.state not in FINAL_STATES or now - w.at < 3600
            ],
            "results": len(self.results),
            "spend_log": {
                "today_usd": round(self.today_spend(now), 6),
                "session_usd": round(self.spend.session, 6),
                "total_usd": round(self.spend.total, 6),
                "estimated_usd": round(self.spend.estimated, 6),
                "by_model": {k: round(v, 6) for k, v in sorted(self.spend.by_model.items())},
                "by_decision": {k: round(v, 6) for k, v in sorted(self.spend.by_decision.items())},
                "entries": self.spend.entries,
            },
            "control": {"scale": self.scale, "paused": self.paused, "ceiling_usd": self.ceiling_usd},
            "log": {"events": self.events, "last_seq": self.last_seq},
        }

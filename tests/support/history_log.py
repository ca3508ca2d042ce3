"""A small stored log for the replay's tests: a task, its decision, the approval, a worker that runs and ends
with a result, a second task after an idle hour. Times are the log's (``T0`` on)."""

from __future__ import annotations

from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.bus.wire import Approval, Decision, LogEvent, PlanItem, Result, Task, WorkerEvent
from swarm_tui.engine.history.source import MemoryLog, Stored

T0 = 1_900_000_000.0
ANSWER = "Queues wait in line / messages hum through the night / acked before the dawn"


def history_events() -> list[Stored]:
    model = "openrouter/x/y"
    plan = [PlanItem(task_id="t-1", role="research", model=model, max_tokens=100)]
    w = WorkerEvent(
        worker_id="w-1",
        job_id="j-1",
        decision_id="d-1",
        task_id="t-1",
        model=model,
        role="research",
        state="running",
        at=T0 + 12,
    )
    events: list[LogEvent] = [
        Task(id="t-1", text="write a haiku about queues", created_at=T0),
        Decision(id="d-1", task_ids=["t-1"], plan=plan, source="rules", created_at=T0 + 5, expires_at=T0 + 900),
        Approval(decision_id="d-1", action="approved", by="tui", at=T0 + 10),
        w,
        w.model_copy(update={"state": "done", "at": T0 + 40, "tokens": 30}),
        Result(
            job_id="j-1",
            worker_id="w-1",
            decision_id="d-1",
            task_id="t-1",
            role="research",
            model=model,
            state="done",
            text=ANSWER,
            started_at=T0 + 12,
            ended_at=T0 + 40,
        ),
        Task(id="t-2", text="after an idle hour", created_at=T0 + 3640),
    ]
    times = [T0, T0 + 5, T0 + 10, T0 + 12, T0 + 40, T0 + 40, T0 + 3640]
    return [
        Stored(n, t, event_subject(ev), ev.to_bytes()) for n, (ev, t) in enumerate(zip(events, times, strict=True), 1)
    ]


def history_log() -> MemoryLog:
    return MemoryLog(history_events())

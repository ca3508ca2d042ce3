"""A log of every event type, as stored events (``Stored``): for the tests of the fold, its checkpoints and ``--at``."""

from __future__ import annotations

from typing import Literal

from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.bus.wire import (
    Approval,
    Clamp,
    ControlEvent,
    Decision,
    LogEvent,
    MergeChoice,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    Usage,
    WorkerEvent,
)
from swarm_tui.engine.history.source import Stored

T0 = 1_900_000_000.0
MODEL = "openrouter/google/gemini-2.5-flash-lite"


FILLER = "A swarm keeps its memory in one log; every view is a fold over it. "


def round_events(i: int, t: float, *, answer_chars: int = 0) -> list[LogEvent]:
    """Task ``i`` from start to its answer: a decision (clamps, merge, item costs), an edit and an approval, two
    workers running then done or failed, their results (one twice), spend, and a few controls."""
    tid, did = f"t-p{i:05d}", f"d-p{i:05d}"
    plan = [PlanItem(task_id=tid, role=r, model=MODEL, max_tokens=800, step=s) for s, r in enumerate(["a", "b"])]
    out: list[LogEvent] = [
        Task(id=tid, text=f"question {i}: how do swarms remember?", priority=i % 10, created_at=t),
        Decision(
            id=did,
            task_ids=[tid],
            plan=plan,
            est_cost_min=0.01,
            est_cost_max=0.02,
            item_costs=[(0.005, 0.01), (0.005, 0.01)],
            source="rules",
            clamps=[Clamp(what="workers", reason="scale", before=3, after=2)],
            merge=[MergeChoice(task_id=tid, kept="rules", what="role", reason="r")],
            examples=["e"],
            created_at=t,
            expires_at=t + 900,
        ),
        Approval(decision_id=did, action="edited", workers=2, by="tui", at=t + 1),
        Approval(decision_id=did, action="approved", by="tui", at=t + 2),
    ]
    ends: list[Literal["done", "failed"]] = ["done", "failed"]
    for k, end in enumerate(ends):
        jid, wid = f"j-p{i:05d}{k}", f"w-p{i:05d}{k}"
        out.append(
            WorkerEvent(
                worker_id=wid,
                job_id=jid,
                decision_id=did,
                task_id=tid,
                model=MODEL,
                role="a",
                state="running",
                tokens=10,
                at=t + 3,
            )
        )
        out.append(
            WorkerEvent(
                worker_id=wid,
                job_id=jid,
                decision_id=did,
                task_id=tid,
                model=MODEL,
                role="a",
                state=end,
                tokens=90,
                cost_usd=0.001,
                at=t + 4,
            )
        )
        r = Result(
            worker_id=wid,
            job_id=jid,
            decision_id=did,
            task_id=tid,
            model=MODEL,
            state=end,
            text=f"answer {i}.{k} " + (FILLER * (answer_chars // len(FILLER) + 1))[:answer_chars],
            usage=Usage(prompt_tokens=5, completion_tokens=7),
            cost_usd=0.001,
            started_at=t + 3,
            ended_at=t + 4,
        )
        out += [r, r]
        out.append(
            SpendEntry(id=jid, model=MODEL, worker_id=wid, decision_id=did, task_id=tid, cost_usd=0.001, at=t + 4)
        )
    if i % 3 == 0:
        out.append(ControlEvent(what="promote", target=f"j-p{i:05d}0", by="tui", at=t + 5))
        out.append(ControlEvent(what="seen", target="decision", by="tui", at=t + 5))
    if i % 5 == 0:
        out.append(ControlEvent(what="scale", value=3 + i % 4, by="cli", at=t + 5))
        out.append(ControlEvent(what="pause" if i % 10 else "resume", by="cli", at=t + 5))
        out.append(ControlEvent(what="ceiling", value=5.0 + i, by="cli", at=t + 5))
    return out


def stored_log(rounds: int, *, t0: float = T0, garbage: bool = True, answer_chars: int = 0) -> list[Stored]:
    """``rounds`` task rounds as the log stores them (one second apart each), with a line that does not decode."""
    out: list[Stored] = []
    for i in range(rounds):
        t = t0 + 10 * i
        for ev in round_events(i, t, answer_chars=answer_chars):
            out.append(Stored(len(out) + 1, t + 5, event_subject(ev), ev.to_bytes()))
        if garbage and i == 1:
            out.append(Stored(len(out) + 1, t + 5, "swarm.evt.task.x", b"{not json"))
    return out

"""The projection (engine/projection.py) as a pure function: event lists in, state out, no server.

tests/integration/test_loop.py covers a chain's later steps that have no job yet; test_bus.py a replay after a
kill. Here: one task's whole life, replay order and duplicates, the final word on a decision, expiry, edits,
follow-up rounds, cancellation, spend totals and the settings the log remembers.
"""

from __future__ import annotations

from typing import Any

from swarm_tui.engine.bus.wire import (
    Approval,
    ChatMessage,
    Chunk,
    ControlEvent,
    Decision,
    Event,
    Job,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    WorkerEvent,
    job_id,
    worker_id,
)
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import TaskState, WorkerState

NOW = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC: far from midnight, so NOW +- minutes is one UTC day
# costs are exact binary fractions, so sums compare exactly
MODEL = "openrouter/google/gemini-2.5-flash-lite"
CHEAP = "openrouter/deepseek/deepseek-chat-v3.1"


def state() -> SwarmState:
    return SwarmState(session_start=NOW, clock=lambda: NOW + 60)


def task(tid: str = "t-a", priority: int = 5, at: float = NOW) -> Task:
    return Task(id=tid, text=f"do {tid}", priority=priority, created_at=at)


def decision(
    did: str = "d-a", tid: str = "t-a", n: int = 2, rnd: int = 0, models: tuple[str, ...] = (MODEL,)
) -> Decision:
    plan = [PlanItem(task_id=tid, role="research", model=models[i % len(models)], max_tokens=100) for i in range(n)]
    return Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=NOW, expires_at=NOW + 900, round=rnd)


def approval(did: str, action: str = "approved", workers: int | None = None, reason: str = "") -> Approval:
    return Approval(decision_id=did, action=action, workers=workers, reason=reason, at=NOW + 1)  # type: ignore[arg-type]


def worker(did: str, i: int, st: WorkerState, tid: str = "t-a", model: str = MODEL) -> WorkerEvent:
    return WorkerEvent(
        worker_id=worker_id(did, i),
        job_id=job_id(did, i),
        decision_id=did,
        task_id=tid,
        model=model,
        state=st,
        at=NOW + 2,
    )


def result(did: str, i: int, st: str = "done", tid: str = "t-a", cost: float = 0.0, reason: str = "") -> Result:
    return Result(
        job_id=job_id(did, i),
        worker_id=worker_id(did, i),
        decision_id=did,
        task_id=tid,
        model=MODEL,
        state=st,  # type: ignore[arg-type]
        text=f"answer {i}",
        reason=reason,
        cost_usd=cost,
        started_at=NOW + 2,
        ended_at=NOW + 3 + i,
    )


def spend(
    did: str, i: int, usd: float, tid: str = "t-a", at: float = NOW + 4, model: str = MODEL, **kw: Any
) -> SpendEntry:
    return SpendEntry(
        id=job_id(did, i),
        model=model,
        worker_id=worker_id(did, i),
        decision_id=did,
        task_id=tid,
        cost_usd=usd,
        at=at,
        **kw,
    )


def fold(events: list[Event], st: SwarmState | None = None) -> SwarmState:
    st = st or state()
    for seq, ev in enumerate(events, start=1):
        st.apply(ev, seq)
    return st


def task_state(st: SwarmState, tid: str = "t-a") -> TaskState:
    """A task's state read afresh: mypy would keep an attribute narrowed by an earlier assert across a fold."""
    return st.tasks[tid].state


def view(st: SwarmState) -> dict[str, Any]:
    """Everything the projection shows but its own counters of applications."""
    snap = st.snapshot()
    snap.pop("log")
    return snap


def life_of_one_task() -> list[Event]:
    return [
        task(),
        decision(n=2, models=(MODEL, CHEAP)),
        approval("d-a"),
        worker("d-a", 0, "queued"),
        worker("d-a", 1, "queued"),
        worker("d-a", 0, "running"),
        worker("d-a", 1, "running", model=CHEAP),
        worker("d-a", 0, "done"),
        result("d-a", 0, cost=0.25),
        spend("d-a", 0, 0.25),
        worker("d-a", 1, "done", model=CHEAP),
        result("d-a", 1, cost=0.125),
        spend("d-a", 1, 0.125, model=CHEAP, estimated=True),
    ]


def test_a_task_goes_from_pending_to_done_and_its_spend_adds_up() -> None:
    events = life_of_one_task()
    seen = []
    st = state()
    for seq, ev in enumerate(events, start=1):
        st.apply(ev, seq)
        seen.append(st.tasks["t-a"].state)
    # the last worker's final event ends the task: its result may come just after
    assert seen == ["pending", "awaiting_approval"] + ["running"] * 8 + ["done"] * 3
    tv = st.tasks["t-a"]
    assert tv.decisions == ["d-a"] and tv.results == [job_id("d-a", 0), job_id("d-a", 1)]
    assert st.decisions["d-a"].status == "approved" and st.pending_decisions() == [] and st.live_workers() == []
    assert st.spend.total == st.spend.session == st.today_spend() == 0.375 and st.spend.estimated == 0.125
    assert dict(st.spend.by_model) == {MODEL: 0.25, CHEAP: 0.125} and dict(st.spend.by_decision) == {"d-a": 0.375}
    assert tv.spend_usd == st.task_spend("t-a") == 0.375 and st.spend.entries == 2
    assert [r.text for r in st.task_results("t-a")] == ["answer 0", "answer 1"]
    assert st.last_seq == len(events) and st.events == len(events)


def test_a_result_ahead_of_its_spend_entry_counts_for_the_task() -> None:
    st = fold(life_of_one_task()[:9])  # the first result is stored, its spend entry not yet
    assert st.tasks["t-a"].spend_usd == 0.0 and st.task_spend("t-a") == 0.25


def test_replaying_the_log_twice_or_with_duplicates_gives_the_same_state() -> None:
    events = life_of_one_task()
    once = fold(events)
    twice = fold(events, fold(events))
    assert view(twice) == view(once)
    doubled = fold([ev for ev in events for _ in (0, 1)])  # every event delivered twice in a row
    assert view(doubled) == view(once)
    assert doubled.duplicate_results == {job_id("d-a", 0): 1, job_id("d-a", 1): 1}
    assert doubled.duplicate_spend == {job_id("d-a", 0): 1, job_id("d-a", 1): 1}
    assert doubled.spend.total == 0.375 and doubled.spend.entries == 2


def test_a_late_running_event_does_not_bring_a_finished_worker_back() -> None:
    events = life_of_one_task()
    st = fold([*events, worker("d-a", 0, "running"), worker("d-a", 1, "retrying")])  # a redelivery race
    assert view(st) == view(fold(events))
    assert st.workers[worker_id("d-a", 0)].state == "done" and st.tasks["t-a"].state == "done"


def test_a_second_result_for_a_job_keeps_the_first() -> None:
    st = fold([*life_of_one_task(), result("d-a", 0, "failed", reason="redelivered")])
    assert st.results[job_id("d-a", 0)].state == "done" and st.tasks["t-a"].state == "done"


def test_the_first_final_word_on_a_decision_wins() -> None:
    st = fold([task(), decision(), approval("d-a"), approval("d-a", "rejected", reason="too late")])
    assert st.decisions["d-a"].status == "approved" and st.tasks["t-a"].state == "running"
    st = fold([task(), decision(), approval("d-a", "rejected", reason="not now"), approval("d-a")])
    assert st.decisions["d-a"].status == "rejected"
    assert (st.tasks["t-a"].state, st.tasks["t-a"].reason) == ("rejected", "not now")
    assert st.pending_tasks() == []


def test_an_expired_decision_puts_its_task_back_in_the_queue() -> None:
    st = fold([task(), decision(), approval("d-a", "expired")])
    assert (st.tasks["t-a"].state, st.tasks["t-a"].reason) == ("pending", "decision expired")
    assert [t.id for t in st.pending_tasks()] == ["t-a"]
    fold([decision("d-b")], st)
    assert st.tasks["t-a"].state == "awaiting_approval" and st.tasks["t-a"].decisions == ["d-a", "d-b"]


def test_an_edit_resizes_a_pending_plan_and_not_a_decided_one() -> None:
    st = fold([task(), decision(n=2), approval("d-a", "edited", workers=5)])
    assert len(st.decisions["d-a"].plan) == 5 and st.decisions["d-a"].status == "pending"
    fold([approval("d-a"), approval("d-a", "edited", workers=1)], st)
    assert len(st.decisions["d-a"].plan) == 5  # approved with the edit; a later edit changes nothing
    # the task waits for all five jobs, the repeated plan items included
    fold([result("d-a", i) for i in range(4)], st)
    assert task_state(st) == "running"
    fold([result("d-a", 4)], st)
    assert task_state(st) == "done"


def test_an_approval_may_set_the_worker_count() -> None:
    st = fold([task(), decision(n=3), approval("d-a", workers=1), result("d-a", 0)])
    assert len(st.decisions["d-a"].plan) == 1 and st.tasks["t-a"].state == "done"


def test_a_follow_up_round_waits_then_runs_and_decides_the_outcome() -> None:
    st = fold([*life_of_one_task(), decision("d-f", n=1, rnd=1)])
    assert task_state(st) == "awaiting_followup" and st.task_round("t-a") == 1
    assert st.pending_tasks() == []  # a task with a live decision is never offered again
    fold([approval("d-f")], st)
    assert task_state(st) == "running"
    fold([worker("d-f", 0, "failed"), result("d-f", 0, "failed", reason="the model refused")], st)
    assert (st.tasks["t-a"].state, st.tasks["t-a"].reason) == ("failed", "the model refused")
    assert len(st.task_results("t-a")) == 3  # the earlier round's results stay readable


def test_a_rejected_follow_up_leaves_the_earlier_outcome() -> None:
    st = fold([*life_of_one_task(), decision("d-f", n=1, rnd=1), approval("d-f", "rejected")])
    assert st.tasks["t-a"].state == "done" and st.decisions["d-f"].status == "rejected"


def test_cancelled_workers_cancel_the_task_and_a_failure_names_its_reasons() -> None:
    base: list[Event] = [task(), decision(n=2), approval("d-a")]
    st = fold([*base, result("d-a", 0, "cancelled"), result("d-a", 1, "cancelled")])
    assert (st.tasks["t-a"].state, st.tasks["t-a"].reason) == ("cancelled", "all workers cancelled")
    st = fold([*base, result("d-a", 0, "cancelled"), result("d-a", 1, "failed", reason="HTTP 500")])
    assert (st.tasks["t-a"].state, st.tasks["t-a"].reason) == ("failed", "HTTP 500")
    st = fold([*base, result("d-a", 0, "failed"), result("d-a", 1, "done")])
    assert st.tasks["t-a"].state == "done"  # one worker of the last step succeeded


def test_an_approved_plan_with_no_worker_for_a_task_cancels_it() -> None:
    d = decision(n=1, tid="t-a").model_copy(update={"task_ids": ["t-a", "t-b"]})
    st = fold([task("t-a"), task("t-b"), d, approval("d-a")])
    assert (st.tasks["t-b"].state, st.tasks["t-b"].reason) == (
        "cancelled",
        "the approved plan has no worker for this task",
    )
    assert st.tasks["t-a"].state == "running"


def test_events_for_unknown_tasks_and_decisions_are_kept_without_harm() -> None:
    st = fold(
        [
            approval("d-x"),
            worker("d-x", 0, "running", tid="t-x"),
            result("d-x", 0, tid="t-x"),
            spend("d-x", 0, 0.5, tid="t-x"),
        ]
    )
    assert st.tasks == {} and st.decisions == {} and st.spend.total == 0.5
    assert st.task_spend("t-x") == 0.0 and st.task_round("t-x") == -1 and st.task_results("t-x") == []


def test_pending_tasks_come_by_priority_then_age() -> None:
    st = fold(
        [task("t-old", 5, NOW - 10), task("t-new", 5, NOW), task("t-urgent", 9, NOW + 5), task("t-low", 0, NOW - 99)]
    )
    assert [t.id for t in st.pending_tasks()] == ["t-urgent", "t-old", "t-new", "t-low"]


def test_spend_is_split_by_utc_day_and_session() -> None:
    yesterday = NOW - 86_400
    st = fold([spend("d-a", 0, 0.25, at=yesterday), spend("d-a", 1, 0.5, at=NOW - 5), spend("d-a", 2, 1.0, at=NOW + 5)])
    assert st.spend.total == 1.75 and st.today_spend() == 1.5 and st.today_spend(yesterday) == 0.25
    assert st.spend.session == 1.0  # the entries before the session started count for the day, not the session


def test_the_log_remembers_scale_pause_and_the_ceiling() -> None:
    def control(what: str, value: float | None = None) -> ControlEvent:
        return ControlEvent(what=what, value=value, at=NOW)  # type: ignore[arg-type]

    st = fold([control("scale", 7), control("pause"), control("ceiling", 2.5), control("cancel")])
    assert (st.scale, st.paused, st.ceiling_usd) == (7, True, 2.5)
    fold([control("resume"), control("scale", 3), control("scale")], st)  # a scale without a value is ignored
    assert (st.scale, st.paused) == (3, False)
    assert st.snapshot()["control"] == {"scale": 3, "paused": False, "ceiling_usd": 2.5}


def test_jobs_and_chunks_on_the_log_are_counted_and_change_nothing() -> None:
    events = life_of_one_task()
    job = Job(
        id=job_id("d-a", 0),
        worker_id=worker_id("d-a", 0),
        decision_id="d-a",
        task_id="t-a",
        role="research",
        model=MODEL,
        max_tokens=100,
        messages=[ChatMessage(role="user", content="x")],
        created_at=NOW,
    )
    chunk = Chunk(worker_id=worker_id("d-a", 0), seq=0, text="partial")
    st = fold([*events, job, chunk])
    assert view(st) == view(fold(events)) and st.events == len(events) + 2


def test_every_message_type_the_wire_decodes_has_a_fold() -> None:
    """The projection dispatches on the type tag (so the screen builds it without pydantic): the two lists match."""
    from swarm_tui.engine.bus.wire import EVENT_TYPES

    state = SwarmState()
    assert set(state._folds) == set(EVENT_TYPES)
    for tag, model in EVENT_TYPES.items():
        assert model.model_fields["type"].default == tag


def test_every_log_event_type_has_the_field_that_names_it_on_its_subject() -> None:
    """The log reader binds an event to its subject by one field per type (bus/trust.py): a new log event type
    needs its entry there, or every one of them would be refused as off its subject."""
    import typing

    from swarm_tui.engine.bus.trust import ID_FIELD
    from swarm_tui.engine.bus.wire import LogEvent

    log_types = {m.model_fields["type"].default: m for m in typing.get_args(LogEvent)}
    assert set(ID_FIELD) == set(log_types)
    for tag, field in ID_FIELD.items():
        assert field in log_types[tag].model_fields, (tag, field)

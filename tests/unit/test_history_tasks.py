"""The past tasks as rows: order, outcome, rounds, answers, cost, duration, and the search over task and answers."""

from __future__ import annotations

from swarm_tui.engine.bus.wire import Approval, ControlEvent, Decision, Event, PlanItem, Result, SpendEntry, Task
from swarm_tui.engine.history.fold import LogClock
from swarm_tui.engine.history.tasks import history_rows
from swarm_tui.engine.projection.state import SwarmState

T0 = 1_900_000_000.0


def _decision(did: str, tid: str, at: float, rnd: int = 0) -> Decision:
    plan = [PlanItem(task_id=tid, role="research", model="openrouter/x/y", max_tokens=100)]
    return Decision(id=did, task_ids=[tid], plan=plan, source="rules", created_at=at, expires_at=at + 900, round=rnd)


def _result(job: str, did: str, tid: str, state: str, text: str, end: float, cost: float) -> Result:
    return Result.model_validate(
        {
            "job_id": job,
            "worker_id": job + "-w",
            "decision_id": did,
            "task_id": tid,
            "model": "openrouter/x/y",
            "state": state,
            "text": text,
            "reason": "the provider said 500" if state == "failed" else "",
            "cost_usd": cost,
            "started_at": end - 10,
            "ended_at": end,
        }
    )


def _state(now: float = T0 + 1000) -> SwarmState:
    """Three tasks: one done over two rounds (a follow-up), one failed, one still waiting, one rejected."""
    state = SwarmState(session_start=0.0, clock=LogClock(now))
    events: list[Event] = [
        Task(id="t-done", text="Résumé of the\nStraße report", created_at=T0),
        _decision("d-1", "t-done", T0 + 1),
        Approval(decision_id="d-1", action="approved", by="tui", at=T0 + 2),
        _result("d-1-j0", "d-1", "t-done", "done", "first draft about tariffs", T0 + 20, 0.01),
        _decision("d-2", "t-done", T0 + 21, rnd=1),
        Approval(decision_id="d-2", action="approved", by="tui", at=T0 + 22),
        _result("d-2-j0", "d-2", "t-done", "done", "the final answer", T0 + 40, 0.02),
        SpendEntry(id="d-1-j0", model="m", worker_id="w", decision_id="d-1", task_id="t-done", cost_usd=0.01, at=T0),
        ControlEvent(what="promote", target="d-2-j0", by="tui", at=T0 + 41),
        Task(id="t-fail", text="translate the memo", created_at=T0 + 100),
        _decision("d-3", "t-fail", T0 + 101),
        Approval(decision_id="d-3", action="approved", by="tui", at=T0 + 102),
        _result("d-3-j0", "d-3", "t-fail", "failed", "", T0 + 130, 0.0),
        Task(id="t-rej", text="delete everything", created_at=T0 + 200),
        _decision("d-4", "t-rej", T0 + 201),
        Approval(decision_id="d-4", action="rejected", by="tui", at=T0 + 250, reason="no"),
        Task(id="t-wait", text="summarise the report", created_at=T0 + 300),
    ]
    for i, ev in enumerate(events, 1):
        state.apply(ev, i)
    return state


def test_rows_are_newest_first_with_outcome_rounds_answers_cost_and_duration() -> None:
    rows = history_rows(_state())
    assert [r.task_id for r in rows] == ["t-wait", "t-rej", "t-fail", "t-done"]
    done = rows[-1]
    assert done.state == "done" and done.reason == "" and done.text == "Résumé of the Straße report"
    assert (done.rounds, done.answers, done.answers_done, done.promoted) == (2, 2, 2, "d-2-j0")
    assert done.cost_usd == 0.03  # the results' costs run ahead of the one spend entry stored so far
    assert (done.created, done.ended, done.duration_s) == (T0, T0 + 40, 40.0)
    fail = rows[2]
    assert fail.state == "failed" and fail.reason and (fail.answers, fail.answers_done) == (1, 0)
    rej = rows[1]
    assert rej.state == "rejected" and rej.reason == "no" and rej.ended == T0 + 250
    wait = rows[0]
    assert wait.ended is None and wait.duration_s == 700.0  # to the state's now (its clock), not the wall clock
    assert wait.as_json()["promoted"] is None


def test_search_needs_every_word_in_the_task_or_its_answers_casefolded() -> None:
    state = _state()
    assert [r.task_id for r in history_rows(state, search="REPORT")] == ["t-wait", "t-done"]
    assert [r.task_id for r in history_rows(state, search="strasse tariffs")] == ["t-done"]  # ß folds to ss
    assert [r.task_id for r in history_rows(state, search="RÉSUMÉ final")] == ["t-done"]
    assert history_rows(state, search="report memo") == []


def test_since_and_states_narrow_the_rows() -> None:
    state = _state()
    assert [r.task_id for r in history_rows(state, since=T0 + 100)] == ["t-wait", "t-rej", "t-fail"]
    assert [r.task_id for r in history_rows(state, states={"failed", "done"})] == ["t-fail", "t-done"]
    assert [r.task_id for r in history_rows(state, states=["rejected"], since=T0 + 300)] == []

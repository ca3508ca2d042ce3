"""The fold stopped at a point of the log: the same state the live reader builds, checked as it checks."""

from __future__ import annotations

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.wire import Approval, ControlEvent, Decision, PlanItem, Task
from swarm_tui.engine.history.fold import Fold, fold_to
from swarm_tui.engine.history.source import MemoryLog, Stored

T0 = 1_900_000_000.0


def _log() -> MemoryLog:
    task = Task(id="t-1", text="summarise", created_at=T0)
    plan = [PlanItem(task_id="t-1", role="research", model="openrouter/x/y", max_tokens=100)]
    dec = Decision(id="d-1", task_ids=["t-1"], plan=plan, source="rules", created_at=T0 + 5, expires_at=T0 + 900)
    ok = Approval(decision_id="d-1", action="approved", by="tui", at=T0 + 10)
    forged = ControlEvent(what="scale", value=500, at=T0 + 20)  # out of range: the live reader refuses it
    events = [
        Stored(1, T0, S.evt("task", "t-1"), task.to_bytes()),
        Stored(2, T0 + 5, S.evt("decision", "d-1"), dec.to_bytes()),
        Stored(3, T0 + 10, S.evt("approval", "d-1"), ok.to_bytes()),
        Stored(4, T0 + 15, S.evt("task", "t-2"), b"{not json"),
        Stored(5, T0 + 20, S.evt("control", "scale"), forged.to_bytes()),
    ]
    return MemoryLog(events)


async def test_the_state_at_each_point_is_what_the_log_said_then() -> None:
    log = _log()
    at2 = await fold_to(log, 2, max_scale=50)
    assert at2.state.decisions["d-1"].status == "pending" and at2.seq == 2
    assert at2.state.clock() == T0 + 5  # the state's "now" is the log's time there
    at3 = await fold_to(log, 3, max_scale=50)
    assert at3.state.decisions["d-1"].status == "approved"


async def test_bad_and_refused_events_are_skipped_as_the_live_reader_skips_them() -> None:
    end = await fold_to(_log(), 5, max_scale=50)
    assert end.skipped == 2 and end.seq == 5
    assert "t-2" not in end.state.tasks and end.state.scale is None


def test_an_event_at_or_before_the_position_is_not_applied_twice() -> None:
    f = Fold(max_scale=50)
    st = Stored(1, T0, S.evt("task", "t-1"), Task(id="t-1", text="x", created_at=T0).to_bytes())
    assert f.apply(st) is True and f.apply(st) is False
    assert f.state.events == 1


def test_times_long_before_their_storing_and_absurd_costs_are_refused() -> None:
    """trust.refusal: a time before 1970 or ten years before its storing, and a cost no daily ceiling allows
    (CEILING_LIMIT_USD), are refused as the live reader refuses them; a real late spend entry is not."""
    from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
    from swarm_tui.engine.bus.trust import PAST_S, refusal
    from swarm_tui.engine.bus.wire import SpendEntry

    def spend(cost: float, at: float) -> SpendEntry:
        return SpendEntry(id="j-1", model="m", worker_id="w-1", decision_id="d-1", task_id="t-1", cost_usd=cost, at=at)

    subject = S.evt("spend", "j-1")
    assert refusal(subject, spend(0.25, T0 - 86400), T0, max_scale=50) is None  # a day late: kept
    assert "before it was stored" in str(refusal(subject, spend(0.25, T0 - PAST_S - 1), T0, max_scale=50))
    assert "before 1970" in str(refusal(subject, spend(0.25, -1e13), None, max_scale=50))
    assert "costing" in str(refusal(subject, spend(CEILING_LIMIT_USD, T0), T0, max_scale=50))
    assert refusal(subject, spend(CEILING_LIMIT_USD / 2, T0), T0, max_scale=50) is None

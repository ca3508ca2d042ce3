"""What needs a person (engine/attention.py) and the promoted answer, as pure functions over the projection:
which kinds hold, that each transition rings once (not once per look), that "seen" silences a kind until
something new happens, and that a promoted answer is what follow-ups and later steps are given."""

from __future__ import annotations

from typing import Any

from swarm_tui.engine.attention.needs import Attention, needs
from swarm_tui.engine.bus.wire import ControlEvent, Decision, PlanItem, job_id
from swarm_tui.engine.info import EngineInfo
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings, bounded_context
from tests.support.env import make_config
from tests.unit.test_projection import NOW, approval, decision, fold, result, task


class Clock:
    def __init__(self, t: float = NOW + 60) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def spend(today: float, ceiling: float = 1.0, out_of_credit: bool = False, reason: str = "") -> EngineInfo:
    s: Any = {"today_usd": today, "ceiling_usd": ceiling, "out_of_credit": out_of_credit, "blocked_reason": reason}
    return {"spend": s}


def seen(kind: str, at: float) -> ControlEvent:
    return ControlEvent(what="seen", target=kind, by="tui", at=at)


def kinds(rang: list[Any]) -> list[str]:
    return [n["kind"] for n in rang]


def test_each_kind_is_read_from_the_log_or_the_info() -> None:
    st = fold(
        [
            task(),
            decision(),
            task("t-b"),
            decision("d-b", "t-b"),
            approval("d-b"),
            result("d-b", 0, "failed", "t-b", reason="HTTP 502"),
        ]
    )
    found = {n["kind"]: n for n in needs(st, {}, since={"bus": NOW}, now=NOW + 60)}
    assert set(found) == {"approval", "failed", "bus"}
    assert found["approval"]["count"] == 1 and "d-a" in found["approval"]["what"]
    assert found["failed"]["count"] == 1 and "HTTP 502" in found["failed"]["what"]
    assert not any(n["seen"] for n in found.values())
    # a failure older than a day needs nobody any more
    assert "failed" not in {n["kind"] for n in needs(st, {}, since={}, now=NOW + 2 * 86400)}


def test_a_transition_rings_once_and_a_new_one_after_seen_rings_again() -> None:
    clock = Clock()
    att = Attention(clock=clock, ring_on_start=True)
    st = fold([task(), decision()])
    assert kinds(att.update(st, {}, "connected")) == ["approval"]
    for _ in range(5):  # looked at again and again: no second bell
        assert att.update(st, {}, "connected") == []
    # a second decision while the first is unseen: still the same transition
    st.apply(task("t-b"))
    st.apply(decision("d-b", "t-b").model_copy(update={"created_at": NOW + 30}))
    assert att.update(st, {}, "connected") == []
    assert [n["count"] for n in att.unseen()] == [2]
    # seen (the log's mark): the badge is empty, nothing rings
    clock.t += 5
    st.apply(seen("approval", clock.t))
    assert att.update(st, {}, "connected") == [] and att.unseen() == []
    # a decision newer than the mark rings again
    st.apply(task("t-c"))
    st.apply(decision("d-c", "t-c").model_copy(update={"created_at": clock.t + 1}))
    clock.t += 2
    assert kinds(att.update(st, {}, "connected")) == ["approval"]
    # approving everything clears it; a later decision is a new transition
    for d in ("d-a", "d-b", "d-c"):
        st.apply(approval(d))
    assert att.update(st, {}, "connected") == [] and att.current == []
    assert att.alerts == 2


def test_the_first_look_is_the_baseline() -> None:
    """What already waited when the app or the engine started rings no bell (the screen shows it)."""
    att = Attention(clock=Clock())
    st = fold([task(), decision()])
    assert att.update(st, {}, "connected") == []
    assert kinds(att.unseen()) == ["approval"]  # but the badge shows it


def test_ceiling_credit_and_bus_hold_since_they_began() -> None:
    clock = Clock()
    att = Attention(clock=clock, bus_grace_s=3, ring_on_start=True)
    st = fold([])
    assert att.update(st, spend(0.4), "connected") == []
    clock.t += 1
    assert kinds(att.update(st, spend(1.0), "connected")) == ["ceiling"]
    since = att.current[0]["since"]
    clock.t += 10
    assert att.update(st, spend(1.2), "connected") == [] and att.current[0]["since"] == since
    assert kinds(att.update(st, spend(1.2, out_of_credit=True, reason="HTTP 402: add credits"), "connected")) == [
        "credit"
    ]
    assert "HTTP 402" in att.current[-1]["what"]
    # the bus: a reconnect quicker than the grace rings nothing; a longer loss rings once
    assert att.update(st, spend(1.2, out_of_credit=True), "reconnecting") == []
    clock.t += 1
    assert att.update(st, spend(1.2, out_of_credit=True), "connected") == []
    assert att.update(st, spend(1.2, out_of_credit=True), "reconnecting") == []
    clock.t += 3.5
    assert kinds(att.update(st, {}, "disconnected")) == ["bus"]  # no info while down: the rest is kept
    assert {n["kind"] for n in att.current} == {"ceiling", "credit", "bus"}
    clock.t += 1
    assert att.update(st, spend(0.0), "connected") == [] and att.current == []  # a new day, credit back, bus up
    clock.t += 1
    assert kinds(att.update(st, spend(1.0), "connected")) == ["ceiling"]  # a new transition


def test_a_kind_switched_off_neither_rings_nor_shows_in_the_badge() -> None:
    att = Attention(kinds=("failed",), clock=Clock(), ring_on_start=True)
    st = fold([task(), decision()])
    assert att.update(st, {}, "connected") == [] and att.unseen() == []
    assert kinds(att.current) == ["approval"]  # still a fact for status


def test_seen_here_silences_before_the_log_brings_the_mark() -> None:
    att = Attention(clock=Clock(), ring_on_start=True)
    st = fold([task(), decision()])
    assert kinds(att.update(st, {}, "connected")) == ["approval"]
    att.mark_seen(["approval"])
    assert att.update(st, {}, "connected") == [] and att.unseen() == []


def test_a_ceiling_of_zero_is_a_choice_not_news() -> None:
    att = Attention(clock=Clock(), ring_on_start=True)
    assert att.update(fold([]), spend(0.0, ceiling=0.0), "connected") == []


# ------------------------------------------------------------------------------------------ promote
def test_a_promotion_names_one_done_answer_and_a_later_one_replaces_it() -> None:
    st = fold([task(), decision(n=3), approval("d-a"), result("d-a", 0), result("d-a", 1), result("d-a", 2, "failed")])
    st.apply(ControlEvent(what="promote", target=job_id("d-a", 1), by="tui", at=NOW + 10))
    tv = st.tasks["t-a"]
    assert (tv.promoted, tv.promoted_by) == (job_id("d-a", 1), "tui")
    assert st.promoted_result("t-a") is st.results[job_id("d-a", 1)]
    st.apply(ControlEvent(what="promote", target=job_id("d-a", 2), at=NOW + 11))  # a failed answer: ignored
    st.apply(ControlEvent(what="promote", target="d-zz-j0", at=NOW + 11))  # unknown: ignored
    assert tv.promoted == job_id("d-a", 1)
    st.apply(ControlEvent(what="promote", target=job_id("d-a", 0), at=NOW + 12))
    assert tv.promoted == job_id("d-a", 0)
    assert st.snapshot()["tasks"][0]["promoted"] == job_id("d-a", 0)


def _controller(st: SwarmState, tmp_path: Any) -> Controller:
    return Controller(ControllerSettings.of(make_config(tmp_path, "nats://127.0.0.1:1")), None, st)  # type: ignore[arg-type]


def test_a_follow_up_is_given_the_promoted_answer_alone(tmp_path: Any) -> None:
    st = fold([task(), decision(n=3), approval("d-a"), result("d-a", 0), result("d-a", 1), result("d-a", 2)])
    follow = decision("d-f", n=1, rnd=1).model_copy(update={"created_at": NOW + 100})
    st.apply(follow)
    st.apply(approval("d-f"))
    ctl = _controller(st, tmp_path)
    item = follow.plan[0]
    assert [r.job_id for r in ctl.context_results(follow, item)] == [job_id("d-a", i) for i in range(3)]
    st.apply(ControlEvent(what="promote", target=job_id("d-a", 1), at=NOW + 50))
    assert [r.job_id for r in ctl.context_results(follow, item)] == [job_id("d-a", 1)]
    prompt = ctl.build_job(follow, 0, item).messages[-1].content
    assert "answer 1" in prompt and "answer 0" not in prompt and "answer 2" not in prompt
    assert "the answer the user chose" in prompt


def test_a_later_step_is_given_the_promoted_answer_of_its_earlier_step(tmp_path: Any) -> None:
    plan = [
        PlanItem(task_id="t-a", role="research", model="m", max_tokens=10, step=0),
        PlanItem(task_id="t-a", role="research", model="m", max_tokens=10, step=0),
        PlanItem(task_id="t-a", role="review", model="m", max_tokens=10, step=1),
    ]
    d = Decision(id="d-a", task_ids=["t-a"], plan=plan, source="rules", created_at=NOW, expires_at=NOW + 900)
    st = fold([task(), d, approval("d-a"), result("d-a", 0), result("d-a", 1)])
    ctl = _controller(st, tmp_path)
    assert len(ctl.context_results(d, plan[2])) == 2
    st.apply(ControlEvent(what="promote", target=job_id("d-a", 0), at=NOW + 20))
    assert [r.job_id for r in ctl.context_results(d, plan[2])] == [job_id("d-a", 0)]


def test_the_context_marks_the_chosen_answer() -> None:
    st = fold([task(), decision(n=2), approval("d-a"), result("d-a", 0), result("d-a", 1)])
    text = bounded_context(st.task_results("t-a"), 1000, chosen=job_id("d-a", 1))
    assert text.count("the answer the user chose") == 1
    assert text.index("the answer the user chose") > text.index("answer 0")


def test_notify_command_is_a_secret_and_its_long_arguments_are_redacted(tmp_path: Any) -> None:
    """A webhook URL or token rides in the command's arguments: `config` shows (set), the log redacts them."""
    cfg = make_config(tmp_path, "nats://127.0.0.1:1", SWARM_NOTIFY_COMMAND="curl -d @- https://ntfy.sh/tok-12345")
    assert cfg.masked()["notify.command"] == "(set)"
    assert "https://ntfy.sh/tok-12345" in cfg.secrets and "-d" not in cfg.secrets

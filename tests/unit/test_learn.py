"""What the heartbeat learns from its user (heartbeat/learn.py), from real events folded into the state."""

from __future__ import annotations

from swarm_tui.engine.heartbeat.learn import examples, lessons, preferences
from swarm_tui.engine.projection.state import SwarmState
from tests.support.history import NOW, decided


def test_three_edits_down_to_one_make_a_preference_and_examples() -> None:
    s = SwarmState(clock=lambda: NOW)
    for i in range(3):
        decided(s, i, f"Find three papers on topic {i}", ["research"], 2, edit=1)
    ls = lessons(s)
    assert [x.decision_id for x in ls] == ["d-learn0002", "d-learn0001", "d-learn0000"]  # newest first
    assert all(x.action == "edited" and x.proposed == 2 and x.final == 1 for x in ls)
    prefs = preferences(ls)
    assert prefs["research"].count == 1 and "3 edited" in prefs["research"].why
    ex = examples(ls)
    assert ex[0] == 'edited to research x1; proposed research x2; task: "Find three papers on topic 2"'


def test_edits_up_to_two_make_two() -> None:
    s = SwarmState(clock=lambda: NOW)
    for i in range(3):
        decided(s, i, f"Research vendor {i}", ["research"], 1, edit=2)
    assert preferences(lessons(s))["research"].count == 2


def test_no_preference_without_three_agreeing_or_without_an_edit() -> None:
    s = SwarmState(clock=lambda: NOW)
    decided(s, 0, "a", ["research"], 2, edit=1)
    decided(s, 1, "b", ["research"], 2, edit=1)
    assert preferences(lessons(s)) == {}  # two are not a habit yet
    decided(s, 2, "c", ["research"], 2)  # approved as proposed: 2, not 1
    assert preferences(lessons(s)) == {}
    s2 = SwarmState(clock=lambda: NOW)
    for i in range(3):
        decided(s2, i, "x", ["research"], 1)  # accepted as proposed, never chosen
    assert preferences(lessons(s2)) == {}


def test_only_a_persons_word_is_a_lesson() -> None:
    s = SwarmState(clock=lambda: NOW)
    decided(s, 0, "auto one", ["research"], 2, by="auto")
    decided(s, 1, "expired one", ["research"], 2, final="expired", by="conductor")
    decided(s, 2, "still pending", ["research"], 2, final="")
    assert lessons(s) == []
    rejected = decided(s, 3, "Write 40 limericks", ["research"], 2, final="rejected")
    pending_edit = decided(s, 4, "Edited, not yet approved", ["research"], 2, edit=1, final="")
    ls = lessons(s)
    assert [(x.decision_id, x.action) for x in ls] == [(pending_edit, "edited"), (rejected, "rejected")]
    assert examples(ls)[1].startswith("rejected; proposed research x2; task: ")
    assert preferences(ls) == {}  # a rejection says nothing about a count


def test_an_example_is_one_short_line_whatever_the_task() -> None:
    s = SwarmState(clock=lambda: NOW)
    decided(s, 0, "line one\nline two " + "x" * 500, ["research", "analysis"], 1, edit=1)
    (ex,) = examples(lessons(s))
    assert "\n" not in ex and len(ex) < 200
    assert ex.startswith("edited to research x1; proposed research then analysis x1; task: ")

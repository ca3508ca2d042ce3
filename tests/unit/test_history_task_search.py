"""Search as you type (the History screen): the same tasks as ``history_rows``'s search, as the search grows,
shrinks and the state moves on."""

from __future__ import annotations

from swarm_tui.engine.history.task_search import TaskSearch, narrows
from swarm_tui.engine.history.tasks import history_rows
from swarm_tui.engine.projection.state import SwarmState
from tests.unit.test_history_tasks import T0, _result, _state


def _ids(state: SwarmState, search: str) -> list[str]:
    return [r.task_id for r in history_rows(state, search=search or None)]


def test_the_same_tasks_as_history_rows_as_you_type_and_erase() -> None:
    state, search = _state(), TaskSearch()
    for typed in ("", "r", "re", "rep", "report", "report s", "report st", "straße", "STRASSE", "repo", "", "ﬁnal"):
        assert [tv.id for tv in search.matching(state, typed or None)] == _ids(state, typed), typed


def test_an_answer_that_arrives_is_searched() -> None:
    state, search = _state(), TaskSearch()
    assert [tv.id for tv in search.matching(state, "memo")] == ["t-fail"]
    assert [tv.id for tv in search.matching(state, "tariff")] == ["t-done"]
    state.apply(_result("d-5-j0", "d-3", "t-fail", "done", "Tariffs again", T0 + 400, 0.0), 100)
    assert [tv.id for tv in search.matching(state, "tariffs")] == _ids(state, "tariffs") == ["t-fail", "t-done"]


def test_narrows_only_when_every_earlier_word_is_inside_a_later_one() -> None:
    assert narrows(["que"], ["queue"]) and narrows([], ["x"]) and narrows(["a", "b"], ["ab"])
    assert not narrows(["queue"], ["que"]) and not narrows(["x"], [])

"""Every state the screen colours and every kind of need it names has an entry: a state added to
``engine/states.py`` and not given a style, a word or a place fails here, not as a plain word on screen."""

from __future__ import annotations

from typing import get_args

import pytest

from swarm_tui.engine.states import NEED_KINDS, DecisionStatus, NeedKind, TaskState, WorkerState
from swarm_tui.tui.attention.watch import PLACE
from swarm_tui.tui.screens.control_room import TABS
from swarm_tui.tui.style import STATE_STYLE, state_style
from swarm_tui.tui.widgets.header_bar import NEED_WORDS


@pytest.mark.parametrize("kind", [WorkerState, TaskState, DecisionStatus], ids=["worker", "task", "decision"])
def test_every_state_has_a_style(kind: object) -> None:
    states = get_args(kind)
    assert states and set(states) <= set(STATE_STYLE)
    assert all(state_style(s) for s in states)


def test_the_styles_name_no_state_that_does_not_exist() -> None:
    known = set(get_args(WorkerState)) | set(get_args(TaskState)) | set(get_args(DecisionStatus))
    assert set(STATE_STYLE) == known
    assert state_style("a state from a newer engine") == ""


def test_every_need_has_a_word_and_a_place() -> None:
    kinds = set(get_args(NeedKind))
    assert kinds == set(NEED_KINDS) == set(NEED_WORDS) == set(PLACE)
    assert set(PLACE.values()) <= set(TABS)

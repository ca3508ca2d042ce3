"""Control requests refused before anything reaches the bus: each refusal keeps its text (the reply's error) and
says its kind; every verb of the Verb Literal has a handler."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.control_requests import VERBS, ControlError, ControlErrorKind, Controls, Verb, is_verb
from swarm_tui.engine.projection.state import SwarmState

NOW = 1_750_000_000.0


def controls() -> Controls:
    """Controls over a state with one decision rejected; its bus never connects (nothing here may publish)."""
    state = SwarmState(session_start=NOW, clock=lambda: NOW)
    plan = [PlanItem(task_id="t-a", role="research", model="m", max_tokens=10)]
    state.apply(Task(id="t-a", text="do it", created_at=NOW))
    state.apply(Decision(id="d-a", task_ids=["t-a"], plan=plan, source="rules", created_at=NOW, expires_at=NOW + 9))
    state.apply(Approval(decision_id="d-a", action="rejected", at=NOW))
    return Controls(Bus(load_config(None, {})), state, max_scale=50, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("verb", "args", "kind", "text"),
    [
        ("nope", {}, "unknown_verb", "unknown control verb 'nope'"),
        ("do_approve", {}, "unknown_verb", "unknown control verb 'do_approve'"),
        ("approve", {}, "invalid", "a decision id is required"),
        ("approve", {"id": "d-zz"}, "not_found", "no decision d-zz"),
        ("edit", {"id": "d-a", "workers": 2}, "wrong_state", "decision d-a is rejected, not pending"),
        (
            "scale",
            {"n": 51},
            "invalid",
            "scale must be a whole number 0..50 (swarm.max_scale; the config may raise it up to 200)",
        ),
        ("ceiling", {"usd": -1}, "invalid", "the ceiling must be a number of USD >= 0"),
        ("cancel", {}, "invalid", "say which: a worker id, --decision ID or --all"),
        ("cancel", {"worker": "w-zz"}, "not_found", "no live worker w-zz"),
        (
            "promote",
            {"job": "j-zz"},
            "not_found",
            "no stored answer j-zz: promote takes an answer's job id (…-j2) or its worker's (…-w2), as "
            "`swarm-tui result TASK` lists them",
        ),
        (
            "seen",
            {"kinds": ["nothing"]},
            "invalid",
            "kinds must be some of approval, failed, spend, ceiling, credit, key, bus",
        ),
    ],
)
async def test_a_refused_request_keeps_its_text_and_says_its_kind(
    verb: str, args: dict[str, Any], kind: ControlErrorKind, text: str
) -> None:
    with pytest.raises(ControlError) as caught:
        await controls().handle(verb, args)
    assert (caught.value.kind, str(caught.value)) == (kind, text)


def test_the_verbs_are_the_literal_in_order() -> None:
    assert VERBS == get_args(Verb) and all(is_verb(v) for v in VERBS) and not is_verb("do_approve")

"""Promoting an answer: make one result the task's answer (the engine's "promote" control verb), from the
results screen, the compare screen or the control room's palette, and redraw once the state shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.screen import Screen

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import plain
from swarm_tui.tui.control_client import ControlClient

PROMOTED = "★ promoted"
WATCH_S, WATCH_TRIES = 0.2, 25  # after a promotion is accepted: look for it in the state for up to 5 s


def promoted_of(state: SwarmState, task_id: str) -> str:
    """The job id of the task's promoted answer, "" when none (or the task is unknown)."""
    tv = state.tasks.get(task_id)
    return tv.promoted if tv is not None else ""


def answer_label(index: int, r: Result) -> str:
    return f"answer {index} ({plain(r.role) or 'worker'} · {plain(r.model)})"


def promote(
    app: App[Any],
    controls: ControlClient,
    state: SwarmState,
    task_id: str,
    index: int,
    r: Result,
    then: Callable[[], None] | None = None,
) -> None:
    """Ask the engine to make answer ``index`` the task's answer; ``then`` runs when it accepted. Only a "done"
    answer can be promoted: anything else is refused here with a toast, and nothing is sent."""
    if r.state != "done":
        app.notify(
            f"answer {index} is {r.state}: only a done answer can be the task's answer",
            severity="warning",
            markup=False,
        )
        return
    if promoted_of(state, task_id) == r.job_id:
        app.notify(f"answer {index} is already the task's answer", timeout=3, markup=False)
        return
    done = f"promoted {answer_label(index, r)} as the answer of task {plain(task_id)}"
    controls.send("promote", {"job": r.job_id}, done, then=then)


def promote_newest(app: App[Any], controls: ControlClient, state: SwarmState, task_id: str) -> None:
    """The palette's promote on the main screen: the selected task's newest done answer."""
    results = state.task_results(task_id)
    done = [i for i, r in enumerate(results, 1) if r.state == "done"]
    if not done:
        app.notify(f"task {plain(task_id)} has no done answer to promote", severity="warning", markup=False)
        return
    promote(app, controls, state, task_id, done[-1], results[done[-1] - 1])


def watch_promotion(screen: Screen[Any], state: SwarmState, task_id: str, job: str, redraw: Callable[[], None]) -> None:
    """After the engine accepted a promotion, redraw once the state shows it (the bus brings it a moment
    later): a short-lived check, WATCH_TRIES times at most, then it stops by itself."""
    tries = [0]

    def check() -> None:
        tries[0] += 1
        if promoted_of(state, task_id) == job or tries[0] >= WATCH_TRIES:
            timer.stop()
            if screen.is_attached:
                redraw()

    timer = screen.set_interval(WATCH_S, check, repeat=WATCH_TRIES)

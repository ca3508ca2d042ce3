"""The figures both ``status --json`` and the screen show, each computed in one place so the two cannot disagree:
how many tasks are in each state, a worker's tokens, the effective scale and where it came from, and a
decision's cost estimate after its worker count was edited.

Pure and light (no pydantic, no Textual): the screen reads it before its first frame, and a test compares what
the CLI prints with what the app draws for the same state.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

from swarm_tui.engine.states import TaskState

# Every task state, in the order the Tasks title and ``task_counts`` list them: work under way, then what waits
# for a person, then the ends. tests/unit/test_figures.py holds it in step with ``TaskState``.
TASK_STATE_ORDER: Final[tuple[TaskState, ...]] = (
    "running",
    "awaiting_approval",
    "awaiting_followup",
    "pending",
    "done",
    "failed",
    "cancelled",
    "rejected",
)


def task_counts(states: Iterable[str]) -> dict[str, int]:
    """Tasks per state, every state that has one, in ``TASK_STATE_ORDER`` (a state this version does not know,
    from an engine elsewhere, last). ``status --json``'s ``task_counts`` and the Tasks title both come from it."""
    counts = Counter(states)
    known = {s: counts.pop(s) for s in TASK_STATE_ORDER if counts.get(s)}
    return known | dict(sorted(counts.items()))


def state_words(state: str) -> str:
    """A state as the screen writes it: ``awaiting_approval`` is "awaiting approval"."""
    return state.replace("_", " ")


def tasks_title(counts: dict[str, int]) -> str:
    """The Tasks panel's title: the total, then each state's count (``task_counts``); they add up to the total."""
    parts = [f"Tasks {sum(counts.values())}"]
    parts += [f"{n} {state_words(s)}" for s, n in counts.items() if n]
    return " · ".join(parts)


def worker_tokens(event_tokens: int, streamed: int = 0) -> int:
    """A worker's tokens: its last worker event's count, or what it has streamed since when that is more (a
    running worker's event was written when it started; its tokens since travel in chunks, which the screen
    counts, and in the pool's ``info()["tokens"]`` and the engine's count of the chunks
    (``info()["engine"]["streamed"]``: a standalone worker's too), which ``status`` reads)."""
    return max(int(event_tokens), int(streamed))


ScaleSource: TypeAlias = Literal["command", "config"]


@dataclass(frozen=True)
class ScaleFigure:
    """The scale the pools run at, and where it came from: a scale command in the log, or the configuration
    (``swarm.scale``, the scale every pool starts at until a command changes it)."""

    value: int
    source: ScaleSource

    @property
    def why(self) -> str:
        return "set by a scale command" if self.source == "command" else "swarm.scale from the configuration"


def scale_figure(commanded: int | None, configured: int) -> ScaleFigure:
    """The effective scale: the last scale command's value (``SwarmState.commanded_scale``), else ``configured``
    (the running engine's, or this configuration's when none runs)."""
    if commanded is not None:
        return ScaleFigure(commanded, "command")
    return ScaleFigure(int(configured), "config")


class Estimated(Protocol):
    """What ``decision_estimate`` reads of a decision (``wire.Decision``)."""

    @property
    def est_cost_min(self) -> float: ...
    @property
    def est_cost_max(self) -> float: ...
    @property
    def plan(self) -> Sequence[object]: ...
    @property
    def item_costs(self) -> Sequence[tuple[float, float]]: ...


def decision_estimate(d: Estimated, workers: int | None) -> tuple[float, float]:
    """(likely, worst case) USD of a decision's plan with ``workers`` items (None: as proposed).

    An edit resizes the plan the way ``state.resize_plan`` does: item ``i`` of the new plan is a copy of item
    ``i % len(plan)``. Each item's (likely, worst) was priced by the heartbeat's clamp with the spend guard's own
    estimate (``Decision.item_costs``), and a copy runs the same job, so the new figure is the sum of the items'
    figures, as the clamp sums them. A decision without them (written before they were recorded) has its totals
    shared out when its items are all alike, else is bounded from them: the first n items of a plan cost at most
    the whole plan, so n items cost at most ceil(n / len(plan)) times its worst case; the likely cost scales with
    the count. The result is bounded by the proposal (``n`` above the plan's size: at least its figures; below: at
    most) and kept finite (``ESTIMATE_CAP_USD``)."""
    k = len(d.plan)
    lo, hi = _usd(d.est_cost_min), _usd(d.est_cost_max)
    if workers is None or k == 0 or workers == k:
        return lo, hi
    n = max(0, workers)
    costs = list(d.item_costs)
    if len(costs) != k and all(p == d.plan[0] for p in d.plan):  # the same job k times: each costs a k-th
        costs = [(d.est_cost_min / k, d.est_cost_max / k)] * k
    if len(costs) == k:
        est = sum(costs[i % k][0] for i in range(n)), sum(costs[i % k][1] for i in range(n))  # inf: capped
    else:
        est = d.est_cost_min * n / k, d.est_cost_max * math.ceil(n / k)
    new_lo, new_hi = _usd(est[0]), _usd(est[1])
    # the proposal bounds the edit: more copies of the same jobs never cost less than the proposal, fewer never
    # more (item costs that disagree with the totals, from a forged decision or another engine, cannot say so)
    if n > k:
        return max(new_lo, lo), max(new_hi, hi)
    return min(new_lo, lo), min(new_hi, hi)


ESTIMATE_CAP_USD: Final = 1e12  # no estimate is shown above this (a figure of 1e308 times 3 is inf, not JSON)


def _usd(v: float) -> float:
    """A figure as shown: rounded to 8 places, finite and within 0 .. ``ESTIMATE_CAP_USD`` whatever came in."""
    if not v == v:  # NaN (the wire refuses it; a figure computed from it must still be a number)
        return ESTIMATE_CAP_USD
    return round(min(max(float(v), 0.0), ESTIMATE_CAP_USD), 8)


def task_worst(d: Estimated, workers: int) -> dict[str, float]:
    """Each task's worst case USD in a decision's plan with ``workers`` items (resized as ``decision_estimate``
    resizes it). With item costs, each task's own items; without them, or with item costs that price the plan
    below what the screen shows (they add up to less than the proposal's worst case, or the resized items to
    less than ``decision_estimate``'s floored figure: another engine's or a forged decision), every task is
    charged the whole plan's worst case (a bound: a task's share is never more than the whole). So no task is
    ever checked against less than the estimate the screen and ``status`` show for the edit."""
    k = len(d.plan)
    tasks = [str(getattr(p, "task_id", "")) for p in d.plan]
    whole = decision_estimate(d, workers)[1]
    if k == 0 or len(d.item_costs) != k or len(set(tasks)) == 1 or not _items_agree(d):
        return dict.fromkeys(tasks, whole)
    out: dict[str, float] = dict.fromkeys(tasks, 0.0)
    for i in range(max(0, workers)):
        out[tasks[i % k]] += d.item_costs[i % k][1]
    if _usd(sum(out.values())) < whole - _SLACK_USD * k:  # the floor lifted the figure: the items undercount
        return dict.fromkeys(tasks, whole)
    return {t: _usd(v) for t, v in out.items()}


_SLACK_USD: Final = 1e-8  # an item's worst case is rounded up to 8 places (heartbeat/clamp.py item_cost)


def _items_agree(d: Estimated) -> bool:
    """Whether the items' worst cases add up to at least the proposal's (the clamp sums them, rounded up)."""
    return _usd(sum(c[1] for c in d.item_costs)) >= _usd(d.est_cost_max) - _SLACK_USD * len(d.item_costs)

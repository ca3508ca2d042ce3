"""A fold's copy that moves on alone (``fork``): what the replay's timeline keeps behind its position, so a step
back folds a few hundred events from there instead of loading a checkpoint (all of the state, decoded) each time.

The decoded events (wire models) are never changed once folded, so the copy shares them. The views the fold
changes in place (a task's lists, a decision's status) are copied when the fold first reads one
(``CopyOnRead``): a fork costs a copy of each container, not of each of 100,000 tasks (that made a full cycle
collection at every step back, holding the event loop a second or more).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Final, TypeVar

from swarm_tui.engine.history.fold import Fold
from swarm_tui.engine.projection.state import DecisionView, SpendTotals, SwarmState, TaskView

V = TypeVar("V")
_SHARED: Final = ("scale", "commanded_scale", "paused", "ceiling_usd", "last_seq", "events", "version")
# every attribute of a SwarmState: one added there must be copied here (a unit test compares the two)
FORKED: Final = frozenset(
    (
        *_SHARED,
        "clock",
        "_folds",
        "session_start",
        "tasks",
        "decisions",
        "workers",
        "results",
        "duplicate_results",
        "spend_entries",
        "duplicate_spend",
        "spend_days",
        "spend",
        "seen",
        "refused_controls",
    )
)


def _copy(cls: type[Any], v: Any) -> Any:
    out = object.__new__(cls)
    out.__dict__.update(v.__dict__)
    return out


def _task(v: TaskView) -> TaskView:
    t: TaskView = _copy(TaskView, v)
    t.decisions, t.jobs, t.results = list(v.decisions), dict(v.jobs), list(v.results)
    return t


def _decision(v: DecisionView) -> DecisionView:
    return _copy(DecisionView, v)  # type: ignore[no-any-return]


class CopyOnRead(dict[str, V]):
    """A dict whose values, shared with the fold it was forked from, are copied on the first read by key (how the
    fold reaches a view to change it: ``get`` or ``[]``); iterating reads them as they are (views only read)."""

    def __init__(self, views: dict[str, V], copy: Callable[[V], V]) -> None:
        super().__init__(views)
        self._copy = copy
        self._own: set[str] = set()

    def __getitem__(self, key: str) -> V:
        v = super().__getitem__(key)
        if key not in self._own:
            v = self._copy(v)
            super().__setitem__(key, v)
            self._own.add(key)
        return v

    def __setitem__(self, key: str, value: V) -> None:
        super().__setitem__(key, value)
        self._own.add(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


async def fork(fold: Fold) -> Fold:
    """A copy of ``fold`` at the same position, with its own clock; applying to the copy leaves ``fold`` as it was
    (``fold`` itself must not be applied to while a copy lives: the copy shares the views it has not read)."""
    s = fold.state
    n = SwarmState(session_start=s.session_start, clock=s.clock)
    n.tasks = CopyOnRead(s.tasks, _task)
    n.decisions = CopyOnRead(s.decisions, _decision)
    n.workers, n.results, n.spend_entries = dict(s.workers), dict(s.results), dict(s.spend_entries)
    n.duplicate_results, n.duplicate_spend = Counter(s.duplicate_results), Counter(s.duplicate_spend)
    n.spend_days = defaultdict(float, s.spend_days)
    sp: SpendTotals = _copy(SpendTotals, s.spend)
    sp.by_model, sp.by_decision = defaultdict(float, s.spend.by_model), defaultdict(float, s.spend.by_decision)
    n.spend = sp
    n.seen, n.refused_controls = dict(s.seen), Counter(s.refused_controls)
    for k in _SHARED:
        setattr(n, k, getattr(s, k))
    out = Fold(max_scale=fold.max_scale, state=n, seq=fold.seq, time=fold.time)
    out.clock.now = fold.clock.now
    out.skipped = fold.skipped
    return out

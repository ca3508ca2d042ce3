"""A fold's copy that moves on alone (``fork``): what the replay's timeline keeps behind its position, so a step
back folds a few hundred events from there instead of loading a checkpoint (all of the state, decoded) each time.

The decoded events (wire models) are never changed once folded, so the copy shares them; the views the fold
changes in place (a task's lists, a decision's status, the spend totals) and every container are copied.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Final, TypeVar

from swarm_tui.engine.history.checkpoint import paused_gc
from swarm_tui.engine.history.fold import Fold
from swarm_tui.engine.projection.state import DecisionView, SpendTotals, SwarmState, TaskView

V = TypeVar("V")
CHUNK: Final = 5_000  # views copied between two turns of the event loop
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


async def fork(fold: Fold) -> Fold:
    """A copy of ``fold`` at the same position, with its own clock; applying to one leaves the other as it was.
    The views are copied ``CHUNK`` at a time, the event loop let in between (100,000 tasks: most of a second on
    a busy core); ``fold`` must not move meanwhile."""
    s = fold.state
    n = SwarmState(session_start=s.session_start, clock=s.clock)
    n.tasks = await _chunked(s.tasks, _task)
    n.decisions = await _chunked(s.decisions, lambda v: _copy(DecisionView, v))
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


async def _chunked(views: dict[str, V], copy: Callable[[V], V]) -> dict[str, V]:
    out: dict[str, V] = {}
    items = list(views.items())
    for i in range(0, len(items), CHUNK):
        with paused_gc():  # many new objects that all live on: a collection would walk the heap for nothing
            out.update([(k, copy(v)) for k, v in items[i : i + CHUNK]])
        await asyncio.sleep(0)
    return out

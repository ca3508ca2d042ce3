"""The swarm's past tasks as rows: what each asked, how it ended, what it took (``swarm-tui history``, the app's
History screen).

Rows are read off a ``SwarmState``: the live one or one folded to a point of the log (``fold.py``), so "now" is
``state.clock()``, never the wall clock: a replayed state reads as it did then.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from swarm_tui.engine.projection.state import SwarmState, TaskView
from swarm_tui.engine.states import TaskState
from swarm_tui.textsafe import plain

# Every state a task can be in, in the order ``--state`` lists them.
TASK_STATES: tuple[TaskState, ...] = (
    "done",
    "failed",
    "cancelled",
    "rejected",
    "running",
    "awaiting_approval",
    "awaiting_followup",
    "pending",
)
ENDED: frozenset[str] = frozenset({"done", "failed", "cancelled", "rejected"})
NOT_WELL: frozenset[str] = frozenset({"failed", "cancelled", "rejected"})
TEXT_CHARS = 300  # a row's text: one line, cut here (the whole task is in `swarm-tui result`)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One past task. ``ended`` is its last result's end (None while none ended it); ``duration_s`` runs from
    its creation to that end, or to the state's now while it is not over."""

    task_id: str
    text: str
    state: TaskState
    reason: str
    rounds: int
    answers: int
    answers_done: int
    promoted: str | None
    cost_usd: float
    created: float
    ended: float | None
    duration_s: float

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        out["duration_s"] = round(self.duration_s, 1)
        return out


def fold_words(text: str) -> str:
    """Text as search compares it: compatibility forms unified (NFKC: ``ﬁ`` is ``fi``) and case folded (``ß`` is
    ``ss``), so a word matches however it was typed."""
    return unicodedata.normalize("NFKC", text).casefold()


def search_words(search: str | None) -> list[str]:
    return fold_words(search).split() if search else []


def matches_words(words: Iterable[str], texts: Iterable[str]) -> bool:
    """Whether every word occurs in one of ``texts`` (no words: everything matches)."""
    words = list(words)
    if not words:
        return True
    hay = [fold_words(t) for t in texts]
    return all(any(w in h for h in hay) for w in words)


def history_rows(
    state: SwarmState,
    *,
    search: str | None = None,
    since: float | None = None,
    states: Collection[str] | None = None,
) -> list[HistoryRow]:
    """The tasks newest first; ``search``: every word in the task's text or one of its answers' text;
    ``since``: created at or after (UNIX seconds); ``states``: in any of them (None or empty: all)."""
    words = search_words(search)
    now = state.clock()
    out: list[HistoryRow] = []
    for tv in sorted(state.tasks.values(), key=lambda t: (t.task.created_at, t.id), reverse=True):
        if since is not None and tv.task.created_at < since:
            continue
        if states and tv.state not in states:
            continue
        if words and not matches_words(words, task_texts(state, tv)):
            continue
        out.append(task_row(state, tv, now))
    return out


def task_texts(state: SwarmState, tv: TaskView) -> list[str]:
    """What search reads of a task: its text and its answers' text."""
    return [tv.task.text, *(r.text for r in state.task_results(tv.id))]


def task_row(state: SwarmState, tv: TaskView, now: float) -> HistoryRow:
    results = state.task_results(tv.id)
    created = tv.task.created_at
    ended = max((r.ended_at for r in results), default=None) if tv.state in ENDED else None
    if ended is None and tv.state == "rejected":  # no worker ran: it ended when its decision was rejected
        ended = max((state.decisions[d].at for d in tv.decisions if d in state.decisions), default=None) or None
    return HistoryRow(
        task_id=tv.id,
        text=one_line(tv.task.text),
        state=tv.state,
        reason=plain(tv.reason)[:200] if tv.state in NOT_WELL else "",
        rounds=len(tv.decisions),
        answers=len(results),
        answers_done=sum(r.state == "done" for r in results),
        promoted=tv.promoted or None,
        cost_usd=state.task_spend(tv.id),
        created=created,
        ended=ended,
        duration_s=max(0.0, (ended if ended is not None else now) - created),
    )


def one_line(text: str, limit: int = TEXT_CHARS) -> str:
    """Text from outside as one inert line, cut to ``limit`` characters with an ellipsis."""
    one = " ".join(plain(text[: limit * 4]).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"

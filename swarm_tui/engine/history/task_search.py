"""Search as you type over one state's tasks (the app's History screen): the same answers as ``history_rows``'s
``search``, at a keystroke's cost.

Rebuilding and folding every task's text and answers on each key held the loop ~0.4 s a letter on 10,000 tasks of
8 KB answers. Here a text is folded (NFKC, case folded) only when a word is looked for in it and kept while the
search lives (a task's text never changes; a task is folded again only when its results change), and a search
that extends the last one (``que`` then ``queue``) looks only among the last one's matches.
"""

from __future__ import annotations

from swarm_tui.engine.history.tasks import fold_words, search_words
from swarm_tui.engine.projection.state import SwarmState, TaskView


def newest_first(state: SwarmState) -> list[TaskView]:
    """The tasks in ``history_rows``'s order."""
    return sorted(state.tasks.values(), key=lambda t: (t.task.created_at, t.id), reverse=True)


def narrows(before: list[str], after: list[str]) -> bool:
    """Whether every match of ``after`` is one of ``before``: each earlier word is inside a word of the later."""
    return all(any(b in a for a in after) for b in before)


class TaskSearch:
    """The tasks of a state that every word of a search occurs in (text or answers), newest first.

    A task's text is fixed and a job's first stored result is its result, so each is folded once and kept by
    task or job id (plain strings: a search allocates nothing the collector walks), for any point of the same log
    (a replay's step) too."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}  # task id -> its text, folded
        self._answers: dict[str, str] = {}  # job id -> its result's text, folded
        self._last: tuple[SwarmState, int, list[str], list[TaskView]] | None = None

    def matching(self, state: SwarmState, search: str | None) -> list[TaskView]:
        words = search_words(search)
        if not words:
            return newest_first(state)
        last = self._last
        if last is not None and last[0] is state and last[1] == state.version and narrows(last[2], words):
            pool = last[3]
        else:
            pool = newest_first(state)
        out = [tv for tv in pool if all(self._has(state, tv, w) for w in words)]
        self._last = (state, state.version, words, out)
        return out

    def _has(self, state: SwarmState, tv: TaskView, word: str) -> bool:
        text = self._texts.get(tv.id)
        if text is None:
            text = self._texts[tv.id] = _folded(tv.task.text)
        if word in text:
            return True
        for job in tv.results:
            answer = self._answers.get(job)
            if answer is None:
                r = state.results.get(job)
                answer = self._answers[job] = _folded(r.text) if r is not None else ""
            if word in answer:
                return True
        return False


def _folded(text: str) -> str:
    """``fold_words``, the text itself where folding changes nothing (no second copy kept)."""
    f = fold_words(text)
    return text if f == text else f

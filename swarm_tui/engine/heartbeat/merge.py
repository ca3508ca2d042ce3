"""How the rules' plan and the local model's plan combine: the rules are the floor, the model adds.

Pure functions, no I/O; the design is in docs/architecture.md ("The heartbeat's merge"). In short, per ready task:

- **Every task the rules plan is planned.** A task the model left out is planned by the rules; whether it runs
  this beat is then the envelope's word (the clamp drops the lowest in order when there is no room, and says so).
- **Order**: priority first, as the rules; among tasks of equal priority, the model's order (urgency it read).
- **Role**: the rules' role stands where the task's words make it clear (code), and where the words back it
  (analysis: compare, explain ...). The model's role is taken where the rules only guessed: a task the rules'
  English words cannot read, or when the rules' role would not fit the budget left and the model's does.
- **Chain** (research, then analysis): the model's, kept when the task's words name more than one step and the
  chain keeps the rules' role; otherwise one step, the rules' role.
- **Count**: one worker a step, as the rules, unless the person settled on another count for the role (learned,
  heartbeat/learn.py). A model asking for parallel copies does not move it: a second copy of one role repeats
  the work, and a small model asks for two on simple questions (bench: "simple question").
- **Follow-ups** (review of finished tasks): the model's proposal, kept when the rules see something to fix
  (a failed result, an empty one, one that ends mid-sentence); results that look complete get none.

Every choice is a ``MergeChoice`` (whose word, on what, why) that the decision carries and its detail shows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from swarm_tui.engine.bus.wire import MergeChoice
from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
from swarm_tui.engine.heartbeat.clamp import ANALYSIS_WORDS, CODE_WORDS
from swarm_tui.engine.heartbeat.envelope import Envelope, Estimate, ReadyTask, prompt_bytes
from swarm_tui.engine.heartbeat.learn import Preference
from swarm_tui.engine.heartbeat.local_model import ReviewTask

Kept = Literal["rules", "model", "user"]
MAX_CHOICES = 200  # Decision.merge's bound

# Words that name a second step: "collect X, then summarise Y". English and a few other languages the rules'
# role words do not read (the model's chain is still checked against them).
_STEPS = re.compile(
    r"\b(then|after that|afterwards|followed by|and finally|secondly|puis|ensuite|dann|danach|anschließend|"
    r"luego|después|depois|em seguida|poi|затем|потом|после этого)\b|然后|之后|接着|その後|次に|그\s*다음",
    re.I,
)
_ENGLISH = frozenset(
    "the a an of and to in is are what which who how why for with this that on it be by from as at or "
    "write find summarise summarize explain compare list give make".split()
)
_END = re.compile(r"""([.!?。！？…)\]"'’”*`]|```)\s*$""")


@dataclass
class Merged:
    advice: Advice
    choices: list[MergeChoice] = field(default_factory=list)


def names_steps(text: str) -> bool:
    """The task's words name more than one step."""
    return _STEPS.search(text) is not None


def english(text: str) -> bool:
    """The rules' role words (English) can read the task: most letters are ASCII and a common English word is in it."""
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(1 for c in letters if c.isascii()) < 0.8 * len(letters):
        return False
    return any(w in _ENGLISH for w in re.findall(r"[a-z]+", text.lower()))


def looks_complete(text: str) -> bool:
    """A result that ends as a finished answer does (a sentence's end, a closed code block), not mid-sentence."""
    t = text.strip()
    return bool(t) and t.count("```") % 2 == 0 and _END.search(t) is not None


def _why_role(text: str, role: str) -> str:
    """The words that back the rules' role ("" when the role is the rules' default, a guess)."""
    pattern = {"code": CODE_WORDS, "analysis": ANALYSIS_WORDS}.get(role)
    m = pattern.search(text) if pattern is not None else None
    return m.group(0) if m else ""


class _Choices:
    def __init__(self) -> None:
        self.items: list[MergeChoice] = []

    def add(self, task_id: str, kept: Kept, what: str, reason: str) -> None:
        if len(self.items) < MAX_CHOICES:
            self.items.append(MergeChoice(task_id=task_id[:64], kept=kept, what=what, reason=reason[:300]))


def _by_task(advice: Advice | None) -> dict[str, list[AdviceWorker]]:
    out: dict[str, list[AdviceWorker]] = {}
    for w in advice.workers if advice is not None else []:
        out.setdefault(w.task_id, []).append(w)
    return out


def _allowed(c: _Choices, env: Envelope, task_id: str, ws: Sequence[AdviceWorker]) -> list[AdviceWorker]:
    """The model's entries whose role this beat allows (the others are named: why each is not)."""
    for w in ws:
        if w.role not in env.roles:
            why = env.excluded.get(w.role) or "not a configured role"
            c.add(
                task_id, "rules", "role", f"the model's role {w.role[:40]!r} is not allowed this beat ({why}): left out"
            )
    return [w for w in ws if w.role in env.roles]


def _chain(ws: Sequence[AdviceWorker]) -> tuple[list[str], int]:
    """(roles in step order, the most workers of a step) of one task's entries."""
    steps: dict[int, str] = {}
    count = 1
    for w in sorted(ws, key=lambda w: w.step):
        steps.setdefault(w.step, w.role)
        count = max(count, w.count)
    return list(steps.values()), count


def _count(
    c: _Choices, room: _Room, t: ReadyTask, steps: Sequence[str], asked: int, prefs: Mapping[str, Preference]
) -> int:
    role = steps[0]
    pref = prefs.get(role)
    if pref is not None:
        limit = room.env.max_per_task // len(steps)  # a learned count is a wish like any other: the task's limit
        n = max(1, min(pref.count, limit))
        cut = f" (at most {room.env.max_per_task} per task)" if n != pref.count else ""
        more = [(r, n - 1, i > 0) for i, r in enumerate(steps)] if n > 1 else []
        blocked = room.add(t, more) if more else ""
        if blocked:
            c.add(t.id, "user", "count", f"1 {role} worker, not the {n} learned ({blocked}): {pref.why}")
            return 1
        c.add(t.id, "user", "count", f"{n} {role} worker(s){cut}: {pref.why}")
        return n
    if asked > 1:
        c.add(
            t.id,
            "rules",
            "count",
            f"the model asked for {asked} parallel {role} workers; 1 kept (a copy of one role repeats the work; "
            "the person's edits can raise it)",
        )
    return 1


class _Room:
    """What the first steps planned so far leave of the envelope: the budget (worst cases) and each model's cap."""

    def __init__(self, env: Envelope, estimate: Estimate) -> None:
        self.env, self.estimate = env, estimate
        self.left = env.budget_usd
        self.per_model: Counter[str] = Counter()
        self.spare_slots = env.max_workers
        self.spare_usd = env.budget_usd

    def worst(self, t: ReadyTask, role: str, later: bool = False) -> float:
        spec = self.env.roles[role]
        return self.estimate(spec.model, prompt_bytes(t, self.env.context_bytes if later else 0), spec.max_tokens)[1]

    def why_not(self, t: ReadyTask, role: str) -> str:
        """Why a first worker of ``role`` could not start for ``t`` now ("" when it could)."""
        model = self.env.roles[role].model
        cap = self.env.model_caps.get(model)
        if cap is not None and self.per_model[model] >= cap:
            return f"{model} is rate limited to {cap} new worker(s)"
        if self.left is not None and self.worst(t, role) > self.left + 1e-12:
            return f"its worst case ${self.worst(t, role):.4f} does not fit the ${self.left:.4f} left"
        return ""

    def take(self, t: ReadyTask, role: str) -> None:
        self.per_model[self.env.roles[role].model] += 1
        if self.left is not None:
            self.left -= self.worst(t, role)

    def reserve(self, floor: Sequence[tuple[ReadyTask, str]]) -> None:
        """Set aside room for the floor: one worker of each task's rules' role; additions use only what is over."""
        self.spare_slots = self.env.max_workers - len(floor)
        self.spare_usd = None if self.left is None else self.left - sum(self.worst(t, r) for t, r in floor)

    def add(self, t: ReadyTask, steps: Sequence[tuple[str, int, bool]]) -> str:
        """Room for additions (role, workers, a later step?) beyond the floor: "" and taken, else why not."""
        slots = sum(n for _, n, _ in steps)
        usd = sum(n * self.worst(t, r, later) for r, n, later in steps)
        if slots > self.spare_slots:
            return f"the envelope has room for {max(0, self.spare_slots)} more worker(s) beyond one per task"
        if self.spare_usd is not None and usd > self.spare_usd + 1e-12:
            return f"their worst case ${usd:.4f} does not fit the ${max(0.0, self.spare_usd):.4f} over one per task"
        self.spare_slots -= slots
        if self.spare_usd is not None:
            self.spare_usd -= usd
        return ""


def _role(c: _Choices, room: _Room, t: ReadyTask, rule: str, model: str) -> str:
    """The first step's role: the rules', or the model's where the rules only guessed and the model's can start."""
    if model == rule:
        return rule
    words = _why_role(t.text, rule)
    if rule == "code" and words:
        c.add(t.id, "rules", "role", f"the words make it a code task ('{words}'): code kept, not the model's {model}")
        return rule
    blocked = room.why_not(t, model)
    if not english(t.text):
        if not blocked:
            c.add(t.id, "model", "role", f"the rules' words cannot read this task: the model's {model}, not {rule}")
            return model
        c.add(t.id, "rules", "role", f"the model's {model} cannot start ({blocked}): the rules' {rule}")
        return rule
    rule_blocked = room.why_not(t, rule)
    if rule_blocked and not blocked:
        c.add(t.id, "model", "role", f"the rules' {rule} cannot start ({rule_blocked}); the model's {model} can")
        return model
    backed = f"the words back it ('{words}')" if words else "the model's role alone is no reason to change it"
    c.add(t.id, "rules", "role", f"{rule} kept, not the model's {model}: {backed}")
    return rule


def _steps(c: _Choices, room: _Room, t: ReadyTask, rule: str, ms: list[AdviceWorker]) -> list[str]:
    """The roles of a task's steps: the model's chain where the task names steps, else one role."""
    chain, _ = _chain(ms)
    if len(chain) > 1 and names_steps(t.text) and (rule in chain or not _why_role(t.text, rule)):
        blocked = room.why_not(t, chain[0]) or room.add(t, [(r, 1, True) for r in chain[1:]])
        if not blocked:
            c.add(t.id, "model", "chain", "the task names steps: the model's " + " → ".join(chain))
            return chain
        c.add(t.id, "rules", "chain", f"no room for the model's {' → '.join(chain)} ({blocked}): one step")
    elif len(chain) > 1:
        why = "the task names one step" if not names_steps(t.text) else f"the chain leaves out {rule}"
        c.add(t.id, "rules", "chain", f"the model chained {' → '.join(chain)}; {why}: one step")
    return [_role(c, room, t, rule, rule if rule in chain else chain[0])]


def merge_plans(
    env: Envelope,
    rules: Advice,
    model: Advice | None,
    *,
    estimate: Estimate,
    prefs: Mapping[str, Preference] | None = None,
) -> Merged:
    """The plan for new tasks: the rules' plan with what the model adds (see the module's docstring).

    The floor comes first in the plan: one worker of each task's first step, in order. What the model and the
    person add (later steps of a chain, more workers a step) follows all of them, so when the envelope is short
    the clamp drops an addition before it drops a task the rules would have started."""
    prefs = prefs or {}
    c = _Choices()
    rules_by = _by_task(rules)
    model_by = _by_task(model)
    rank = {tid: i for i, tid in enumerate(model_by)}
    index = {t.id: i for i, t in enumerate(env.tasks)}
    for tid in model_by:
        if tid not in index:
            c.add(tid, "rules", "task", "the model named a task that is not ready this beat: left out")
    tasks = sorted(env.tasks, key=lambda t: (-t.priority, rank.get(t.id, len(rank)), index[t.id]))
    if model is not None and [t.id for t in tasks] != [t.id for t in env.tasks]:
        c.add("", "model", "order", "tasks of equal priority in the model's order")
    room = _Room(env, estimate)
    room.reserve([(t, rules_by[t.id][0].role) for t in tasks if t.id in rules_by])
    first: list[AdviceWorker] = []
    more: list[AdviceWorker] = []
    for t in tasks:
        rw = rules_by.get(t.id)
        if rw is None:
            continue  # the rules plan no task without an allowed role: nor does the merge
        rule = rw[0].role
        ms = _allowed(c, env, t.id, model_by.get(t.id, []))
        if model is None:
            steps, asked = [rule], 1
        elif not ms:
            c.add(t.id, "rules", "task", "the model left it out: the rules plan it (the envelope says if it waits)")
            steps, asked = [rule], 1
        else:
            steps, asked = _steps(c, room, t, rule, ms), _chain(ms)[1]
        n = _count(c, room, t, steps, asked, prefs)
        room.take(t, steps[0])
        first.append(AdviceWorker(task_id=t.id, role=steps[0], count=1, step=0))
        if n > 1:
            more.append(AdviceWorker(task_id=t.id, role=steps[0], count=n - 1, step=0))
        more += [AdviceWorker(task_id=t.id, role=r, count=n, step=i) for i, r in enumerate(steps) if i]
    reason = "rules' plan" + (" with the model's additions" if model is not None else "")
    if model is not None and model.reason:
        reason += f"; model: {model.reason}"
    return Merged(Advice(workers=first + more, reason=reason[:2000]), c.items)


def verdict(results: Sequence[tuple[str, str, str]]) -> str:
    """What the rules see in a task's results: "complete" when one ended as a finished answer, else what is wrong."""
    if any(state == "done" and looks_complete(text) for _, state, text in results):
        return "complete"
    if any(state == "done" and text.strip() for _, state, text in results):
        return "cut off mid-sentence"
    if any(state == "done" for _, state, _ in results):
        return "empty"
    return "failed"


def merge_review(
    env: Envelope,
    model: Advice,
    reviews: Sequence[ReviewTask],
    *,
    estimate: Estimate,
    prefs: Mapping[str, Preference] | None = None,
) -> Merged:
    """The follow-ups: the model's, for tasks whose results the rules see something wrong with."""
    prefs = prefs or {}
    c = _Choices()
    by_id = {r.id: r for r in reviews}
    ready = {t.id: t for t in env.tasks}
    chosen: list[tuple[ReadyTask, list[str], int]] = []
    for tid, ws in _by_task(model).items():
        rv, t = by_id.get(tid), ready.get(tid)
        ws = _allowed(c, env, tid, ws)
        if rv is None or t is None or not ws:
            c.add(tid, "rules", "follow-up", "not a reviewed task of this beat, or no allowed role: left out")
            continue
        seen = verdict(rv.results)
        if seen == "complete":
            c.add(tid, "rules", "follow-up", "a result looks complete (done, ends as an answer): no follow-up")
            continue
        chain, asked = _chain(ws)
        steps = chain if len(chain) > 1 and names_steps(t.text) else chain[:1]
        c.add(tid, "model", "follow-up", f"the latest results are {seen}: the model's {' → '.join(steps)} kept")
        chosen.append((t, steps, asked))
    room = _Room(env, estimate)  # as for new tasks: every follow-up's first worker before any addition
    room.reserve([(t, steps[0]) for t, steps, _ in chosen])
    first: list[AdviceWorker] = []
    more: list[AdviceWorker] = []
    for t, steps, asked in chosen:
        if len(steps) > 1 and room.add(t, [(r, 1, True) for r in steps[1:]]):
            c.add(t.id, "rules", "chain", "no room for the later steps this beat: one step")
            steps = steps[:1]
        n = _count(c, room, t, steps, asked, prefs)
        first.append(AdviceWorker(task_id=t.id, role=steps[0], count=1, step=0))
        if n > 1:
            more.append(AdviceWorker(task_id=t.id, role=steps[0], count=n - 1, step=0))
        more += [AdviceWorker(task_id=t.id, role=r, count=n, step=i) for i, r in enumerate(steps) if i]
    workers = first + more
    return Merged(Advice(workers=workers, reason=model.reason), c.items)

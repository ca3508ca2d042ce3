"""How the rules' plan and the local model's plan combine: the rules are the floor, the model adds.

Pure functions, no I/O; the design is in docs/architecture.md ("The heartbeat's merge"). In short, per ready task:

- **Every task the rules plan is planned.** A task the model left out is planned by the rules; whether it runs
  this beat is then the envelope's word (the clamp drops the lowest in order when there is no room, and says so).
- **Order**: priority first, as the rules; among tasks of equal priority, the plan lists them in the model's order
  (urgency it read), but the envelope's room goes to the tasks the rules would start. A task of higher priority
  whose rules' role cannot start may take a lower one's room with the model's cheaper role (the lower one waits,
  and the merge says so); tasks of the same priority never displace each other.
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
from swarm_tui.engine.heartbeat.prompt import ReviewTask

Kept = Literal["rules", "model", "user"]
MAX_CHOICES = 200  # Decision.merge's bound
MAX_WORKERS = 400  # Advice.workers' bound (far above any envelope: the clamp takes at most max_workers)

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
_END = re.compile(r"""([.!?。！？)\]"'’”*`]|```)\s*$""")
_TRAILS_OFF = re.compile(r"(\.\.\.|…)\s*$")  # "The reasons are..." stops, it does not end


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
    words = sum(1 for c in t.replace("```", "") if c.isalnum())  # an answer says something: not "." or "``````"
    return words >= 2 and t.count("```") % 2 == 0 and _END.search(t) is not None and not _TRAILS_OFF.search(t)


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
        if w.count >= 1:  # an entry of 0 workers plans nothing
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
    """The envelope as the merge spends it. The floor is each task whose rules' first worker the clamp would start
    (simulated in the rules' order, as the clamp does); what the floor leaves (slots, budget, each model's rate-
    limit cap) is spare, and only the spare pays for what the model and the person add."""

    def __init__(self, env: Envelope, estimate: Estimate) -> None:
        self.env, self.estimate = env, estimate
        self.floor: dict[str, tuple[ReadyTask, str]] = {}  # tasks whose first worker starts: (task, its role)
        self.displaced: list[tuple[str, str]] = []  # (task that waits, task that took its room)
        self.models: Counter[str] = Counter()  # new workers per model, the floor's and the additions'
        self.spare_slots = env.max_workers
        self.spare_usd = env.budget_usd

    def worst(self, t: ReadyTask, role: str, later: bool = False) -> float:
        spec = self.env.roles[role]
        return self.estimate(spec.model, prompt_bytes(t, self.env.context_bytes if later else 0), spec.max_tokens)[1]

    def save(self) -> tuple[dict[str, tuple[ReadyTask, str]], Counter[str], int, float | None, int]:
        return dict(self.floor), Counter(self.models), self.spare_slots, self.spare_usd, len(self.displaced)

    def restore(self, saved: tuple[dict[str, tuple[ReadyTask, str]], Counter[str], int, float | None, int]) -> None:
        self.floor, self.models, self.spare_slots, self.spare_usd, n = saved
        del self.displaced[n:]

    def _capped(self, model: str, n: int = 1) -> str:
        cap = self.env.model_caps.get(model)
        if cap is not None and self.models[model] + n > cap:
            return f"{model} is rate limited to {cap} new worker(s)"
        return ""

    def reserve(self, floor: Sequence[tuple[ReadyTask, str]]) -> None:
        """The floor: in this order, each task's first worker of ``role`` that the clamp would start."""
        for t, role in floor:
            model, worst = self.env.roles[role].model, self.worst(t, role)
            if self.spare_slots < 1 or self._capped(model):
                continue
            if self.spare_usd is not None and worst > self.spare_usd + 1e-12:
                continue
            self._take(t, role, model, worst)

    def _take(self, t: ReadyTask, role: str, model: str, worst: float) -> None:
        """``t``'s first worker of ``role`` joins the floor, paid from the spare."""
        self.floor[t.id] = (t, role)
        self.spare_slots -= 1
        self.models[model] += 1
        if self.spare_usd is not None:
            self.spare_usd -= worst

    def _fits_new(self, model: str, worst: float) -> str:
        if self.spare_slots < 1:
            return "no room beyond the tasks the rules start"
        why = self._capped(model)
        if why:
            return why
        if self.spare_usd is not None and worst > self.spare_usd + 1e-12:
            return f"its worst case ${worst:.4f} does not fit the ${max(0.0, self.spare_usd):.4f} spare"
        return ""

    def _release(self, task_id: str) -> None:
        u, role = self.floor.pop(task_id)
        self.spare_slots += 1
        self.models[self.env.roles[role].model] -= 1
        if self.spare_usd is not None:
            self.spare_usd += self.worst(u, role)

    def _make_room(self, t: ReadyTask, model: str, worst: float) -> str:
        """Room for a first worker of ``t`` (a task the rules would not start), from the spare or else from
        tasks of lower priority in the floor, the lowest first (priority is the rules' own order: the envelope
        has room for fewer tasks, and the lower one waits). Tasks of the same priority are never displaced."""
        saved = self.save()
        lower = sorted((u for u, _ in self.floor.values() if u.priority < t.priority), key=lambda u: u.priority)
        why = self._fits_new(model, worst)
        for u in lower:
            if not why:
                break
            self._release(u.id)
            self.displaced.append((u.id, t.id))
            why = self._fits_new(model, worst)
        if why:
            self.restore(saved)
        return why

    def starts(self, t: ReadyTask) -> bool:
        return t.id in self.floor

    def swap(self, t: ReadyTask, rule: str, role: str) -> str:
        """``role`` instead of the rules' ``rule`` as ``t``'s first worker: "" and taken, else why not. For a task
        of the floor, only the difference is spent; for one the rules would not start, a whole worker, from the
        spare, so no task of the floor waits for it."""
        new, worst = self.env.roles[role].model, self.worst(t, role)
        if not self.starts(t):
            why = self._make_room(t, new, worst)
            if not why:
                self._take(t, role, new, worst)
            return why
        old = self.env.roles[rule].model
        if old != new and self._capped(new):
            return f"{new} is rate limited: the other tasks' first workers need what is left"
        extra = worst - self.worst(t, rule)
        if self.spare_usd is not None and extra > 1e-12 and extra > self.spare_usd + 1e-12:  # a cheaper one: room
            return f"its worst case is ${extra:.4f} over the rules' {rule}, more than the other tasks leave"
        self.floor[t.id] = (t, role)
        self.models[old] -= 1
        self.models[new] += 1
        if self.spare_usd is not None:
            self.spare_usd -= extra
        return ""

    def add(self, t: ReadyTask, steps: Sequence[tuple[str, int, bool]]) -> str:
        """Room for additions (role, workers, a later step?) beyond the floor: "" and taken, else why not."""
        slots = sum(n for _, n, _ in steps)
        usd = sum(n * self.worst(t, r, later) for r, n, later in steps)
        if 1 + slots > self.env.max_per_task:  # the task's first worker and these: the clamp would cut the rest
            return f"at most {self.env.max_per_task} worker(s) per task"
        if slots > self.spare_slots:
            return f"the envelope has room for {max(0, self.spare_slots)} more worker(s) beyond one per task"
        if self.spare_usd is not None and usd > self.spare_usd + 1e-12:
            return f"their worst case ${usd:.4f} does not fit the ${max(0.0, self.spare_usd):.4f} over one per task"
        need = Counter[str]()
        for r, n, _ in steps:
            need[self.env.roles[r].model] += n
        for model, n in need.items():
            why = self._capped(model, n)
            if why:
                return why
        self.spare_slots -= slots
        self.models.update(need)
        if self.spare_usd is not None:
            self.spare_usd -= usd
        return ""


def _role(c: _Choices, room: _Room, t: ReadyTask, rule: str, model: str) -> str:
    """The first step's role: the rules', or the model's where the rules only guessed and the model's can start
    without taking what the other tasks' first workers need."""
    if model == rule:
        return rule
    words = _why_role(t.text, rule)
    if rule == "code" and words:
        c.add(t.id, "rules", "role", f"the words make it a code task ('{words}'): code kept, not the model's {model}")
        return rule
    if not english(t.text):
        blocked = room.swap(t, rule, model)
        if not blocked:
            c.add(t.id, "model", "role", f"the rules' words cannot read this task: the model's {model}, not {rule}")
            return model
        c.add(t.id, "rules", "role", f"the model's {model} cannot start ({blocked}): the rules' {rule}")
        return rule
    if not room.starts(t) and not room.swap(t, rule, model):
        c.add(t.id, "model", "role", f"the rules' {rule} cannot start this beat; the model's {model} can")
        return model
    backed = f"the words back it ('{words}')" if words else "the model's role alone is no reason to change it"
    c.add(t.id, "rules", "role", f"{rule} kept, not the model's {model}: {backed}")
    return rule


def _steps(c: _Choices, room: _Room, t: ReadyTask, rule: str, ms: list[AdviceWorker]) -> list[str]:
    """The roles of a task's steps: the model's chain where the task names steps, else one role."""
    chain, _ = _chain(ms)
    if len(chain) > 1 and names_steps(t.text) and (rule in chain or not _why_role(t.text, rule)):
        saved = room.save()
        if chain[0] == rule:
            blocked = "" if room.starts(t) else f"the rules' {rule} cannot start this beat"
        else:
            blocked = room.swap(t, rule, chain[0])
        blocked = blocked or room.add(t, [(r, 1, True) for r in chain[1:]])
        if not blocked:
            c.add(t.id, "model", "chain", "the task names steps: the model's " + " → ".join(chain))
            return chain
        room.restore(saved)  # nothing of the chain is taken
        c.add(t.id, "rules", "chain", f"no room for the model's {' → '.join(chain)} ({blocked}): one step")
    elif len(chain) > 1:
        why = "the task names one step" if not names_steps(t.text) else f"the chain leaves out {rule}"
        c.add(t.id, "rules", "chain", f"the model chained {' → '.join(chain)}; {why}: one step")
    alt = rule if rule in chain else chain[0]
    if rule in chain and not room.starts(t):  # the rules' role cannot start: another role the model named may
        alt = next((r for r in chain if r != rule), rule)
    return [_role(c, room, t, rule, alt)]


def _workers(t: ReadyTask, steps: Sequence[str], n: int, first: list[AdviceWorker], more: list[AdviceWorker]) -> None:
    """A task's workers: its first step's first worker in ``first`` (the floor), the rest in ``more``."""
    first.append(AdviceWorker(task_id=t.id, role=steps[0], count=1, step=0))
    if n > 1:
        more.append(AdviceWorker(task_id=t.id, role=steps[0], count=n - 1, step=0))
    more += [AdviceWorker(task_id=t.id, role=r, count=n, step=i) for i, r in enumerate(steps) if i]


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
    room.reserve([(t, rules_by[t.id][0].role) for t in env.tasks if t.id in rules_by])  # the rules' order
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
        _workers(t, steps, _count(c, room, t, steps, asked, prefs), first, more)
    for waits, took in room.displaced:
        c.add(waits, "model", "task", f"waits: {took}, of higher priority, takes its room with the model's role")
    reason = "rules' plan" + (" with the model's additions" if model is not None else "")
    if model is not None and model.reason:
        reason += f"; model: {model.reason}"
    # the floor's first workers before any other (a task that cannot start this beat must not, placed earlier by
    # the model's order, take a place the clamp would give a task of the floor), then the additions
    first.sort(key=lambda w: w.task_id not in room.floor)
    return Merged(Advice(workers=(first + more)[:MAX_WORKERS], reason=reason[:2000]), c.items)


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
        _workers(t, steps, _count(c, room, t, steps, asked, prefs), first, more)
    workers = (first + more)[:MAX_WORKERS]  # Advice's own bound: the first steps come first
    return Merged(Advice(workers=workers, reason=model.reason), c.items)

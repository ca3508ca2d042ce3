"""The local model's answer: the compact plan it writes, the JSON schema that binds it, and its parse.

Pure functions and pydantic models, no I/O. The schema is sent as Ollama's ``format``; ``parse_advice`` turns
the raw text into an ``Advice`` (or an ``AdviceError`` saying why it cannot be used).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_STEP = 20


# ---------------------------------------------------------------------------------------------- the advice
# What the local model answers is a *compact plan*: per task, its roles in step order and a worker count per
# step. The JSON schema below is sent as Ollama's ``format``; Ollama hands it to llama.cpp, whose
# ``common/json-schema-to-grammar`` turns it into a GBNF grammar that binds every generated token. The limits
# that shape it (llama.cpp's grammar parser and converter, measured against llama-cpp-python here):
#
# - The grammar parser refuses a repetition count at its ``MAX_REPETITION_THRESHOLD`` (2000), and a
#   ``maxLength``/``maxItems`` is expanded into that many repetitions: a 2000-character ``reason`` alone was
#   refused ("number of repetitions exceeds sane defaults"), every beat. Every bound here stays far below:
#   ``reason`` REASON_CHARS; ``tasks`` at most the tasks offered (heartbeat.max_tasks_per_beat, <= MAX_TASKS)
#   and at most the workers the beat may start; ``roles`` at most the roles allowed this beat, MAX_CHAIN and the
#   per-task worker limit.
# - The converter does not enforce integer ``minimum``/``maximum``: ``count`` is an ``enum`` of 1..the
#   per-task limit, and everything is clamped again after parsing anyway.
# - Every property but ``count`` is required, so the model writes one fixed shape, and nothing it need not say:
#   no per-worker max_tokens (the role has one), no step numbers (the order of ``roles`` is the order of steps).
#   ``count`` (1 when left out) is written only for more than one worker a step: four tokens a task saved.
# - ``reason`` comes last: measured with ``python -m bench.heartbeat`` on Gemma 3 270M, the plan first met
#   19 of 32 properties and the reason first 16 (one run each: a small model's answers are noisy).
# - Bounded arrays make the worst-case answer finite: ``worst_case_tokens`` sizes ``num_predict`` from it.
# - Every generated token costs the beat: on 2 cores Gemma 3 270M under a grammar takes 50-80 ms a token (the
#   grammar checks the whole 262k vocabulary) against ~3 ms a prompt token, so the answer is kept short. A task
#   is named by an alias ("1", one token; its id took 8-10) under the key ``id`` (``task_id`` took three), and
#   the prompt shows its JSON without spaces, which the model copies (a spaced answer took 74 tokens for three
#   tasks, the compact one 54).
MAX_TASKS = 100  # the most tasks one beat may offer (heartbeat.max_tasks_per_beat allows 1..100)
MAX_CHAIN = 2  # the most roles one task may chain in one plan (Gemma 3 270M fills a longer bound: 19 -> 21 of 32)
MAX_COUNT = 20  # the most workers per step the schema can express (heartbeat.max_workers_per_task allows 1..20)
REASON_PLACEHOLDER = "a few words"  # the reason in the prompt's example answer: a small model copies it verbatim
REASON_CHARS = 80  # a few words (the model's reason is shown on the decision; it is not a report)


class AdviceWorker(BaseModel):
    """One worker (or ``count`` parallel workers) of a plan, as the clamp reads it."""

    model_config = ConfigDict(extra="ignore")
    task_id: str = Field(max_length=64, description="id of a ready task")
    role: str = Field(max_length=32, description="one of the configured roles")
    count: int = Field(default=1, ge=0, le=50, description="how many workers of this role for this task")
    step: int = Field(default=0, ge=0, le=MAX_STEP, description="roles of one task run in step order")
    max_tokens: int | None = Field(default=None, ge=1, le=200_000, description="at most the role's limit")


class Advice(BaseModel):
    """A plan: what the clamp takes, from the model's compact answer (``parse_advice``) or from the rules."""

    model_config = ConfigDict(extra="ignore")
    workers: list[AdviceWorker] = Field(max_length=400)
    reason: str = Field(default="", max_length=2000)


class PlanTask(BaseModel):
    """One task of the model's compact answer: its roles in step order, ``count`` workers at each step."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(max_length=64)
    roles: list[Annotated[str, Field(max_length=32)]] = Field(min_length=1, max_length=MAX_CHAIN)  # as AdviceWorker
    count: int = Field(default=1, ge=1, le=50)


class ModelPlan(BaseModel):
    """The model's answer, exactly the shape of ``advice_schema``."""

    model_config = ConfigDict(extra="ignore")
    reason: str = ""
    tasks: list[PlanTask] = Field(max_length=MAX_TASKS)

    def to_advice(self) -> Advice:
        workers = [
            AdviceWorker(task_id=t.id, role=r, count=t.count, step=i) for t in self.tasks for i, r in enumerate(t.roles)
        ]
        reason = self.reason[:REASON_CHARS]
        if " ".join(re.sub(r"[^\w ]", " ", reason).lower().split()) == REASON_PLACEHOLDER:  # copied: says nothing
            reason = ""
        return Advice(workers=workers, reason=reason)


def advice_schema(
    roles: Sequence[str],
    task_ids: Sequence[str],
    *,
    max_per_task: int = 3,
    max_workers: int | None = None,
    min_tasks: int = 0,
) -> dict[str, Any]:
    """The grammar for one beat: the allowed roles and task ids as enums, every array bounded by what the beat
    can use (see the limits above): at most one entry per offered task and no more entries than workers the
    beat may start; a chain no longer than the roles allowed or the per-task worker limit; a count within it.
    ``min_tasks``: a decision plans as many tasks as the beat can start, as the rules do (Gemma 3 270M left
    two of a burst of three out, or answered no plan, which only hands the beat to the rules); a review none
    (no follow-up is its usual answer)."""
    roles = list(roles)[:32] or ["none"]
    task_ids = list(task_ids)[:MAX_TASKS]
    per_task = max(1, min(MAX_COUNT, max_per_task))
    entries = max(1, min(len(task_ids), max_workers if max_workers is not None else len(task_ids)))
    task = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "enum": task_ids},
            "roles": {
                "type": "array",
                "items": {"type": "string", "enum": roles},
                "minItems": 1,
                "maxItems": min(MAX_CHAIN, len(roles), per_task),
            },
            "count": {"type": "integer", "enum": list(range(1, per_task + 1))},
        },
        "required": ["id", "roles"],
    }
    return {
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": task, "minItems": min(min_tasks, entries), "maxItems": entries},
            "reason": {"type": "string", "maxLength": REASON_CHARS},
        },
        "required": ["tasks", "reason"],
    }


def worst_case_tokens(schema: dict[str, Any]) -> int:
    """The most tokens an answer bound by ``schema`` can take: each character of ``reason`` a token (the grammar
    lets any character through), the keys, enum literals and punctuation at two characters a token (generous:
    JSON, ids and short aliases tokenize at 1-4), and one token of whitespace per element (the grammar allows a
    newline and indentation between any two). Not covered: a reason written in ``\\uXXXX`` escapes (~6 tokens a
    character) or runs of whitespace over a token; such an answer is cut at num_predict and recorded as cut."""
    props = schema["properties"]
    item = props["tasks"]["items"]["properties"]
    longest = max((len(json.dumps(t)) for t in item["id"]["enum"]), default=2)
    role = max(len(json.dumps(r)) for r in item["roles"]["items"]["enum"])
    chain = int(item["roles"]["maxItems"])
    count = max(len(str(c)) for c in item["count"]["enum"])
    n = int(props["tasks"]["maxItems"])
    keys = sum(len(json.dumps(k)) + 3 for k in item)  # each key with its ": " and ", "
    item_chars = 2 + keys + 2 + longest + chain * (role + 2) + count  # the braces, the brackets, the values
    item_elems = 8 + chain
    reason = int(props["reason"]["maxLength"])
    head = 2 + sum(len(json.dumps(k)) + 3 for k in props) + 2 + 2  # the braces, keys, the quotes, the brackets
    return reason + math.ceil((head + n * item_chars) / 2) + 8 + n * item_elems


class AdviceError(ValueError):
    """The model's answer cannot be used; the message says why (one line)."""


ISSUE_8063 = "Ollama issue 8063"  # github.com/ollama/ollama/issues/8063: ``format`` ignored by some models


def ignored_schema(text: str, obj: Any = None, parsed: bool = False) -> str:
    """What the model answered instead of the schema's JSON, when Ollama's ``format`` did not bind it (Ollama
    issue 8063: some models and templates answer prose, markdown-fenced JSON, JSON of another shape or a
    thinking preamble before the JSON); "" when the answer looks like the schema's JSON (it may still be cut or
    invalid)."""
    s = text.strip()
    if not s:
        return "answered nothing"
    if s.startswith("```"):
        return "answered markdown-fenced JSON"
    if "<think>" in s[:200] or "</think>" in s:
        return "wrote a thinking preamble"
    if not s.startswith(("{", "[")):
        return "wrote a preamble before the JSON" if re.search(r'\{\s*"', s) else "answered prose"
    if parsed and (not isinstance(obj, dict) or "tasks" not in obj):
        return "answered JSON of another shape"
    return ""


def schema_ignored_error(what: str) -> AdviceError:
    return AdviceError(f"the model ignored the JSON schema ({what}; {ISSUE_8063}): the rules decide")


def parse_advice(text: str, alias: Mapping[str, str] | None = None) -> Advice:
    """The model's raw text (a compact plan) to an Advice, or AdviceError (the schema ignored, invalid JSON or
    a schema mismatch). ``alias`` maps the task names the prompt used back to task ids (an unknown name stays
    as it is: the clamp drops it)."""
    what = ignored_schema(text)
    if what:
        raise schema_ignored_error(what)
    try:
        # strict=False: a raw control character (a newline) inside the reason string is let through; some
        # grammar converters allow one there, and it harms nothing in a one-sentence reason.
        obj = json.loads(text, strict=False)
    except (ValueError, RecursionError) as exc:
        raise AdviceError(f"the model's answer is not valid JSON ({type(exc).__name__})") from None
    what = ignored_schema(text, obj, parsed=True)
    if what:
        raise schema_ignored_error(what)
    try:
        plan = ModelPlan.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "answer"
        raise AdviceError(
            f"the model's answer does not match the schema: {loc}: {first.get('msg', 'invalid')}"[:300]
        ) from None
    if alias:
        for t in plan.tasks:
            t.id = alias.get(t.id, t.id)
    try:  # the same bounds again, as the plan's workers: an answer outside them is an error, never a failed beat
        return plan.to_advice()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AdviceError(f"the model's answer does not fit a plan: {first.get('msg', 'invalid')}"[:300]) from None

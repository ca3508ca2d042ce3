"""Typed, versioned messages: JSON on the wire.

Every message carries ``type`` and ``v`` (schema version). ``decode`` turns bytes from the bus into one of the
models or raises ``InvalidMessage``; callers count and set aside what does not decode, they never crash on it.
Text fields are bounded so a hostile publisher cannot make a consumer hold gigabytes.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, ClassVar, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from swarm_tui.engine.bus.fit import fit_text, json_len
from swarm_tui.engine.bus.ids import job_id as job_id
from swarm_tui.engine.bus.ids import new_id as new_id
from swarm_tui.engine.bus.ids import worker_id as worker_id
from swarm_tui.engine.errors import InvalidMessage, Refusal

# re-exported: the pydantic-free part of the vocabulary lives in ids (the screen imports it before the first frame)
from swarm_tui.engine.states import WorkerState

SCHEMA_VERSION = 1
MAX_TEXT = 200_000  # characters of a task text or a result
MAX_RAW = 100_000  # characters of a model's raw answer kept on a decision
MAX_MSG_BYTES = 1_000_000
# A task's text as it travels (UTF-8, control characters escaped as \\uXXXX): half of NATS's 1 MiB message, so
# the job that carries it has the other half for its role prompt and the task's earlier answers. 200 000
# characters is 200 KB of ASCII but 800 KB of 4-byte characters and 1.2 MB of escaped control characters.
MAX_TEXT_BYTES = 512 * 1024

# Ids are used as subject tokens and KV keys: letters, digits, "-" and "_" only.
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def now() -> float:
    return time.time()


class Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False, defer_build=True, allow_inf_nan=False)
    v: int = SCHEMA_VERSION
    # The fields that say when something happened. A reader of the log refuses a message whose time is later
    # than when JetStream stored it, beyond the clock skew allowed between hosts (bus/trust.py).
    TIMES: ClassVar[tuple[str, ...]] = ()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def times(self) -> dict[str, float]:
        return {f: float(getattr(self, f)) for f in self.TIMES}


def encoded_size(text: str) -> int:
    """Bytes of ``text`` inside a message, as ``to_bytes`` writes it (UTF-8, JSON escapes; the quotes left out).
    Raises ValueError for text that is not valid Unicode (a lone surrogate, from undecodable command-line bytes)."""
    try:
        return json_len(text)
    except PydanticSerializationError:
        raise ValueError("the text is not valid Unicode (it holds a lone surrogate)") from None


def task_text_problem(text: str) -> Refusal | None:
    """Why ``text`` cannot be a task's text as it travels (None when it can)."""
    try:
        n = encoded_size(text)
    except ValueError as exc:
        return Refusal(f"task text: {exc}")
    if n > MAX_TEXT_BYTES:
        return Refusal(
            f"task text is {n:,} bytes as sent; the limit is {MAX_TEXT_BYTES:,} "
            "(characters outside ASCII count 2-4 bytes, control characters 6)"
        )
    return None


# ---------------------------------------------------------------- tasks
class Task(Msg):
    type: Literal["task"] = "task"
    id: Id
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    priority: int = Field(default=5, ge=0, le=9)
    created_at: float
    source: str = Field(default="cli", max_length=32)
    demo: bool = False
    TIMES: ClassVar[tuple[str, ...]] = ("created_at",)

    @field_validator("text")
    @classmethod
    def _fits_a_message(cls, v: str) -> str:
        problem = task_text_problem(v)
        if problem:
            raise ValueError(problem)
        return v


# ---------------------------------------------------------------- decisions
class PlanItem(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    task_id: Id
    role: str = Field(max_length=32)
    model: str = Field(max_length=128)
    max_tokens: int = Field(ge=1, le=200_000)
    step: int = Field(default=0, ge=0, le=20)  # roles of one task run in step order; same step: in parallel


class Clamp(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    what: str = Field(max_length=64)
    reason: str = Field(max_length=500)
    before: Any = None
    after: Any = None


class MergeChoice(BaseModel):
    """One choice the merge of the rules' plan and the local model's made (heartbeat/merge.py): whose word the
    plan follows for a task, on what, and why."""

    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    task_id: str = Field(default="", max_length=64)  # "" for the plan as a whole
    kept: Literal["rules", "model", "user"]  # the rules' plan, the model's addition, the person's learned word
    what: str = Field(max_length=32)  # "task", "role", "chain", "count", "order", "follow-up"
    reason: str = Field(max_length=300)


class Decision(Msg):
    type: Literal["decision"] = "decision"
    id: Id
    task_ids: list[Id] = Field(default_factory=list, max_length=200)
    plan: list[PlanItem] = Field(default_factory=list, max_length=200)
    est_cost_min: float = Field(default=0.0, ge=0)
    est_cost_max: float = Field(default=0.0, ge=0)
    # (likely, worst) USD of each plan item as the clamp priced it: an edited worker count is priced from them
    item_costs: list[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]] = Field(
        default_factory=list, max_length=200
    )
    source: str = Field(max_length=128)  # "ollama:<model>" or "rules"
    clamps: list[Clamp] = Field(default_factory=list, max_length=500)
    raw: str = Field(default="", max_length=MAX_RAW)
    latency_ms: float = Field(default=0.0, ge=0)
    error: str = Field(default="", max_length=2000)  # why the model's advice was not used
    reason: str = Field(default="", max_length=2000)  # the trigger and a summary
    created_at: float
    expires_at: float
    round: int = Field(default=0, ge=0, le=100)  # 0: first decision for its tasks; n: n-th follow-up
    warning: str = Field(default="", max_length=500)  # about the model's call (its prompt filled the window)
    merge: list[MergeChoice] = Field(default_factory=list, max_length=200)  # how the rules' and model's plans met
    examples: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=8)  # learned
    demo: bool = False
    TIMES: ClassVar[tuple[str, ...]] = ("created_at",)  # not expires_at: that one is meant to be ahead


class Approval(Msg):
    """What happened to a decision: approved, rejected, expired, or its worker count edited."""

    type: Literal["approval"] = "approval"
    decision_id: Id
    action: Literal["approved", "rejected", "expired", "edited"]
    workers: int | None = Field(default=None, ge=0, le=200)
    by: str = Field(default="cli", max_length=32)
    reason: str = Field(default="", max_length=500)
    at: float
    TIMES: ClassVar[tuple[str, ...]] = ("at",)


# ---------------------------------------------------------------- jobs and workers
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TEXT * 2)


class Job(Msg):
    type: Literal["job"] = "job"
    id: Id
    worker_id: Id
    decision_id: Id
    task_id: Id
    role: str = Field(max_length=32)
    model: str = Field(max_length=128)
    max_tokens: int = Field(ge=1, le=200_000)
    messages: list[ChatMessage] = Field(min_length=1, max_length=20)
    step: int = Field(default=0, ge=0, le=20)
    reserve_usd: float = Field(default=0.0, ge=0)
    created_at: float
    demo: bool = False
    TIMES: ClassVar[tuple[str, ...]] = ("created_at",)


class WorkerEvent(Msg):
    type: Literal["worker"] = "worker"
    worker_id: Id
    job_id: Id
    decision_id: Id
    task_id: Id
    model: str = Field(max_length=128)
    role: str = Field(default="", max_length=32)
    state: WorkerState
    reason: str = Field(default="", max_length=1000)
    tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    host: str = Field(default="", max_length=128)
    at: float
    demo: bool = False
    TIMES: ClassVar[tuple[str, ...]] = ("at",)

    @classmethod
    def of(
        cls,
        job: Job,
        state: WorkerState,
        *,
        at: float,
        host: str,
        demo: bool,
        reason: str = "",
        tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> WorkerEvent:
        """The job's worker in ``state``: its ids, model and role are the job's."""
        return cls(
            worker_id=job.worker_id,
            job_id=job.id,
            decision_id=job.decision_id,
            task_id=job.task_id,
            model=job.model,
            role=job.role,
            state=state,
            reason=reason[:1000],
            tokens=tokens,
            cost_usd=cost_usd,
            host=host[:128],
            at=at,
            demo=demo,
        )


class Chunk(Msg):
    """A coalesced piece of a worker's output on ``swarm.chunk.<worker_id>`` (core NATS, not stored)."""

    type: Literal["chunk"] = "chunk"
    worker_id: Id
    seq: int = Field(ge=0)
    text: str = Field(max_length=MAX_TEXT)
    tokens: int = Field(default=0, ge=0)
    sent_at: float = 0.0  # when the provider sent the newest token in this chunk (for latency figures)
    reasoning: str = Field(default="", max_length=MAX_TEXT)  # the model's reasoning meanwhile: shown dimmed


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


# A Result is one message: NATS refuses one over its max_payload (1 MiB by default, headers included) and readers
# one over MAX_MSG_BYTES, so its text is fitted to this many bytes of message, not to a number of characters.
RESULT_MAX_BYTES = MAX_MSG_BYTES - 16_384


class Result(Msg):
    type: Literal["result"] = "result"
    job_id: Id
    worker_id: Id
    decision_id: Id
    task_id: Id
    role: str = Field(default="", max_length=32)
    model: str = Field(max_length=128)
    step: int = Field(default=0, ge=0, le=20)
    state: Literal["done", "failed", "cancelled"]
    text: str = Field(default="", max_length=MAX_TEXT)
    reason: str = Field(default="", max_length=1000)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = Field(default=0.0, ge=0)
    cost_estimated: bool = False
    started_at: float
    ended_at: float
    demo: bool = False
    TIMES: ClassVar[tuple[str, ...]] = ("started_at", "ended_at")

    @classmethod
    def of(
        cls,
        job: Job,
        state: Literal["done", "failed", "cancelled"],
        *,
        started_at: float,
        ended_at: float,
        demo: bool,
        reason: str = "",
        text: str = "",
        usage: Usage | None = None,
        cost_usd: float = 0.0,
        cost_estimated: bool = False,
        max_bytes: int = RESULT_MAX_BYTES,
    ) -> Result:
        """The job's result: its ids, role, model and step are the job's. The text is fitted so the whole
        message takes at most ``max_bytes`` encoded (cut at a character, the cut said at its end)."""
        res = cls(
            job_id=job.id,
            worker_id=job.worker_id,
            decision_id=job.decision_id,
            task_id=job.task_id,
            role=job.role,
            model=job.model,
            step=job.step,
            state=state,
            reason=reason[:1000],
            usage=usage or Usage(),
            cost_usd=cost_usd,
            cost_estimated=cost_estimated,
            started_at=started_at,
            ended_at=ended_at,
            demo=demo,
        )
        res.text = fit_text(text, max_bytes - len(res.to_bytes()), MAX_TEXT)
        return res


class SpendEntry(Msg):
    type: Literal["spend"] = "spend"
    id: Id  # the job id: one entry per job, deduplicated on the bus
    model: str = Field(max_length=128)
    worker_id: Id
    decision_id: Id
    task_id: Id
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(ge=0)
    estimated: bool = False
    demo: bool = False
    at: float
    TIMES: ClassVar[tuple[str, ...]] = ("at",)


class ControlEvent(Msg):
    """What a person decided that the log remembers: scale, pause/resume, ceiling, cancel; ``promote`` (target: the
    job id of the answer chosen as its task's answer) and ``seen`` (target: the attention kind looked at)."""

    type: Literal["control"] = "control"
    what: Literal["scale", "pause", "resume", "ceiling", "cancel", "promote", "seen"]
    value: float | None = None
    target: str = Field(default="", max_length=64)
    by: str = Field(default="cli", max_length=32)
    at: float
    TIMES: ClassVar[tuple[str, ...]] = ("at",)


# What the event log holds (the projection folds these), and everything ``decode`` can return: jobs and chunks
# travel on their own subjects, but a publisher on an event subject may send any type, so readers of the log
# get the whole union and ignore what is not theirs.
LogEvent = Task | Decision | Approval | WorkerEvent | Result | SpendEntry | ControlEvent
Event = LogEvent | Job | Chunk
EVENT_TYPES: dict[str, type[Event]] = {
    "task": Task,
    "decision": Decision,
    "approval": Approval,
    "worker": WorkerEvent,
    "result": Result,
    "spend": SpendEntry,
    "control": ControlEvent,
    "job": Job,
    "chunk": Chunk,
}


@overload
def decode(data: bytes | str, expect: Literal["job"]) -> Job: ...


@overload
def decode(data: bytes | str, expect: Literal["chunk"]) -> Chunk: ...


@overload
def decode(data: bytes | str, expect: str | None = None) -> Event: ...


def decode(data: bytes | str, expect: str | None = None) -> Event:
    """Bytes from the bus to a message. Raises InvalidMessage for anything else, with a short reason.

    ``expect`` names the one type the subject carries (a job, a chunk): anything else is invalid there, and the
    overloads give those callers the narrow type."""
    if len(data) > MAX_MSG_BYTES:
        raise InvalidMessage(f"message of {len(data)} bytes is over the {MAX_MSG_BYTES} byte limit")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the decoder's stack
        raise InvalidMessage(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage("not a JSON object")
    kind = obj.get("type")
    if expect is not None and kind != expect:
        raise InvalidMessage(f"expected type {expect!r}, got {str(kind)[:32]!r}")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidMessage(f"unknown message type {str(kind)[:32]!r}")
    v = obj.get("v", SCHEMA_VERSION)
    if not isinstance(v, int) or v < 1 or v > SCHEMA_VERSION:
        raise InvalidMessage(f"unsupported schema version {str(v)[:16]!r}")
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidMessage(f"invalid {kind}: {loc}: {first.get('msg', 'invalid')}") from None


class Reply(BaseModel):
    """The answer to a control request."""

    model_config = ConfigDict(extra="ignore", defer_build=True, allow_inf_nan=False)
    ok: bool
    error: str = ""
    kind: str = ""  # a refusal's ControlErrorKind ("invalid": a bad value, exit 2); "" from an older engine
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

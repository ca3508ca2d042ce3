"""What each component reports in ``info()``, and the whole snapshot ``Engine.info()`` puts together.

This is the one contract between the engine and what shows it: the TUI's header and guard panels (through a link,
in-process or over NATS as JSON), ``swarm-tui status`` (text and ``--json``) and the snapshot scenes, which build
their made-up info from these same types so that mypy checks they show what production sends. They are
TypedDicts, not classes, because the values must stay plain JSON dicts: ``Engine.info()`` travels over NATS as
JSON and ``status --json`` prints it as it is.

One key per fact: a reader never tries several names for the same thing. A key is ``NotRequired`` only where a
producer really leaves it out, and the comment says when.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

from swarm_tui.engine.states import BusKind, BusState, CapState, ConductorState, NeedKind, TopologyKind


class InfoError(TypedDict):
    """What ``Engine.info()`` reports for a component whose own ``info()`` raised (the rest still reports)."""

    error: str  # the exception's class name


# ------------------------------------------------------------------------------------------ engine and bus
class EngineMeta(TypedDict):
    """The engine process itself (``info["engine"]``)."""

    pid: int
    host: str
    started_at: float  # epoch seconds
    demo: bool
    uptime_s: float
    # each live worker's tokens as its chunks on the bus count them, whichever pool runs it (a standalone
    # `swarm-tui worker`'s too, which no engine pool's ``tokens`` holds); counted from the engine's start
    streamed: NotRequired[dict[str, int]]


class BusTopology(TypedDict, total=False):
    """What the bus says of itself (``engine/bus/topology.describe``); ``error`` alone when JetStream is away."""

    kind: TopologyKind
    server: str  # the server this process is connected to
    cluster: str  # the JetStream cluster's name ("" on a single server)
    replicas: int  # of the events stream
    leader: str  # the events stream's leader
    peers: list[dict[str, Any]]  # its replicas: name, current, lag, offline
    work_queue_leader: str  # the jobs consumer's leader
    error: str


class BusConnection(TypedDict):
    """The bus connection as ``status`` reports its own (no URL: the reader knows which one it dialled)."""

    kind: BusKind | Literal[""]  # "" before the bus has found its server
    state: BusState
    malformed: dict[str, int]  # messages set aside as malformed, per kind
    warnings: list[str]


class StatusBus(BusConnection):
    """``status``'s own bus connection, with what the bus says of itself (the engine's info leaves it out)."""

    topology: BusTopology


class BusInfo(BusConnection):
    """The engine's bus connection (``info["bus"]``)."""

    url: str  # credentials masked


# ------------------------------------------------------------------------------------------ guards
class LaneInfo(TypedDict):
    """The local lane (``LocalLane.info()``): who runs a local inference now and who waits."""

    holder: str  # "" when free; "conductor" for the heart, else a worker id
    model: str  # the holder's model as Ollama names it ("" when free): the Workers panel says it
    since: float | None  # epoch seconds the holder got the lane
    waiting: list[str]  # in arrival order
    turns: int


class LocalModel(TypedDict):
    """A model Ollama has loaded (from ``/api/ps``) and its share of RAM."""

    name: str
    size_mb: float


class RamSummary(TypedDict):
    """One RAM reading against the headroom: ``ram_snapshot()`` (no engine or no RAM guard running)."""

    total_mb: int
    available_mb: int
    headroom_mb: float
    low: bool  # available below the headroom: local work waits
    own_rss_mb: float
    children_rss_mb: float
    local_models: list[LocalModel]


class RamInfo(RamSummary):
    """The RAM guard (``RamGuard.info()``): the latest reading plus its sampling and recent history."""

    ollama_reachable: bool | None  # None: not asked yet
    sample_s: float
    history: list[list[float]]  # [[epoch s, available MB], ...], oldest first, at most 60


class PriceInfo(TypedDict):
    """The price list (``PriceBook.info()``), merged into the spend guard's info."""

    price_source: str  # where the prices come from, in words
    price_age_s: int | None  # None: no list fetched
    price_models: int
    price_error: str  # why the last fetch failed, "" when it did not
    fallback_models: list[str]  # models priced at the fallback rate (not on the list)
    unpriced_models: NotRequired[dict[str, str]]  # models refused under a ceiling (a price part unreadable): why


class CreditInfo(TypedDict):
    """The key's own limit and the 402 state (the spend guard's credit part), merged into its info."""

    credits_left_usd: float | None  # what the key's limit leaves; None: no limit, or not checked
    key_limit_left_usd: float | None  # the same figure under the name OpenRouter's doc uses
    key_status: str
    out_of_credit: bool  # a 402 or the key's limit used up (not a rejected key)
    key_rejected: bool  # the key endpoint answered 401/403: cloud work stops until it answers 200
    blocked_reason: str  # why no cloud job may start, "" when they may
    provider_cap: str  # with openrouter.management_key: "provider cap $X/day", or why it is not set; else ""


class SpendTotals(TypedDict):
    """Spend totals (from the event log's SpendEntry events, or the ledger for a guard without a log)."""

    today_usd: float
    session_usd: float
    estimated_usd: float | None  # None: a guard without the log cannot tell
    by_model: dict[str, float]
    by_decision: dict[str, float]


class SpendSummary(SpendTotals):
    """What every spend view has: the running guard's and the one told from the log with no engine running."""

    ceiling_usd: float
    reserved_usd: float
    reservations: int
    remaining_usd: float
    price_source: str
    price_age_s: int | None
    credits_left_usd: float | None
    out_of_credit: bool
    blocked_reason: str


class OfflineSpend(SpendSummary):
    """``offline_spend_summary()``: spend as the event log (and the ledger, when read) tells it."""

    ledger_spent_usd: NotRequired[float]  # only when the budget ledger could be read
    reconciling: NotRequired[int]  # added by ``status``, which reads the reconcile records; the app does not
    reconciling_usd: NotRequired[float]


class SpendInfo(SpendSummary, PriceInfo, CreditInfo):
    """The spend guard (``SpendGuard.info()``)."""

    ledger_spent_usd: float
    per_decision_usd: float | None  # None: no per-decision cap
    reconciling: int  # attempts whose cost OpenRouter has not told yet: their worst case stays reserved
    reconciling_usd: float
    demo: bool
    counts: dict[str, int]


AnySpend = SpendInfo | OfflineSpend  # what the Spend panel and ``status`` show


class ReconcileInfo(TypedDict):
    """Attempts waiting for their cost from OpenRouter (``Reconciler.info()``)."""

    pending: int
    held_usd: float
    live: int  # this process's calls in flight
    owner: str
    counts: dict[str, int]


# ------------------------------------------------------------------------------------------ the swarm
class PoolGuards(TypedDict):
    """Which guards the pool was given (a pool without a spend guard reserves nothing)."""

    spend: bool
    ram: bool
    note: str


class PoolInfo(TypedDict):
    """The worker pool (``Pool.info()``)."""

    scale: int
    concurrency: int | None  # None: no per-process cap (a standalone worker sets one)
    capacity: int
    running: int
    held: int  # jobs delivered beyond the free slots
    states: dict[str, int]  # running jobs per state
    tokens: dict[str, int]  # worker id -> tokens its running job has streamed (figures.worker_tokens)
    host: str
    blocked: str  # why the pool takes no job (or no cloud job), "" when it does
    local_only: bool  # no OpenRouter key: local jobs run, cloud ones wait (``blocked`` says why)
    out_of_credit: str  # the 402 / key-limit reason, "" when there is credit
    api_base: str
    demo: bool
    guards: PoolGuards
    counts: dict[str, int]
    rate_limits: dict[str, dict[str, Any]]  # model -> {"limit", "backoff_until"}: see RateLimitsP
    lane: LaneInfo
    reconcile: ReconcileInfo | None  # None with the demo endpoint (it reports every cost)


class ControllerInfo(TypedDict):
    """The controller that turns approved decisions into jobs (``Controller.info()``)."""

    jobs_published: int
    jobs_skipped: int
    errors: int
    decisions_handled: int
    steps_ended_unrun: int


class DemoInfo(TypedDict):
    """The built-in demo endpoint (``DemoEndpoint.info()``), only with ``--demo``."""

    base: str  # "" until it listens
    tokens_per_s: float
    tokens: int
    usd_per_mtok: float
    requests: int
    open: int


# ------------------------------------------------------------------------------------------ the heartbeat
class EnvelopeSummary(TypedDict):
    """The rules' envelope of the conductor's last beat (``Envelope.summary()``)."""

    max_workers: int
    roles: list[str]
    excluded: dict[str, str]  # role -> why it may not be used
    model_caps: dict[str, int]
    tasks: int
    budget_usd: float | None  # None: no spend limit known
    limits: dict[str, str]  # what bounds max_workers, in words
    notes: list[str]


class NoEnvelope(TypedDict):
    """The conductor's envelope before its first beat: ``{}``."""


class ConductorInfo(TypedDict):
    """The heartbeat (``Conductor.info()``)."""

    source: str  # "ollama:<model>" or "rules"
    state: ConductorState
    ollama_model: str | None  # None: the conductor does not ask Ollama
    ollama_reachable: bool | None  # None: not asked yet
    ollama_error: str
    ollama_warning: str
    next_beat_s: float | None  # seconds to the next beat; None: not started, or no beat scheduled
    last_decision: str
    beats: int
    decisions: int
    approval: str  # "manual" or "auto (<= $x)"
    last_trigger: str
    note: str  # why the last beat published nothing
    envelope: EnvelopeSummary | NoEnvelope
    followups: int
    review: str  # what the last review of finished tasks came to


# ------------------------------------------------------------------------------------------ needs-you alerts
class Need(TypedDict):
    """One kind that needs a person (``status --json``: ``needs_attention``)."""

    kind: NeedKind
    what: str  # one line, for a person
    since: float  # epoch seconds the condition began (the oldest waiting decision, the first failure, ...)
    latest: float  # epoch seconds of its newest occurrence (a new decision, a new failure)
    count: int
    seen: bool  # someone saw it after its newest occurrence


class AttentionInfo(TypedDict):
    """``Engine.info()["attention"]``."""

    needs: list[Need]
    alerts: int  # transitions alerted since start
    command: str  # "" or the notify.command program name (not its arguments: they may hold a secret)
    commands_run: int
    command_errors: int  # failed, timed out, or dropped (more than 20 waiting)


class ProviderCapInfo(TypedDict):
    """``Engine.info()["provider_cap"]`` (guards/provider_cap.py), only with a management key: never a key."""

    state: CapState
    limit_usd: float | None  # the runtime key's limit as OpenRouter last confirmed it; None: no limit, or not set
    key_name: str
    reason: str  # why it failed, "" otherwise
    line: str  # what status and the Spend panel print ("" when off)


# ------------------------------------------------------------------------------------------ the whole snapshot
class EngineInfo(TypedDict, total=False):
    """``Engine.info()``: the engine, its bus, and each component's info under the component's name.

    Every key is optional to a reader. ``Engine.info()`` always fills ``engine`` and ``bus``, but a link holds
    ``{}`` until an engine answers (and again when an attached engine stops answering); the components present
    depend on how the engine was assembled (``demo`` only with ``--demo``, no ``pool`` or ``conductor`` when
    assembled without them). A component whose ``info()`` raised reports an ``InfoError`` instead.
    """

    engine: EngineMeta
    bus: BusInfo
    spend: SpendInfo | InfoError
    ram: RamInfo | RamSummary | InfoError  # RamSummary: the in-process link's own reading (no RAM guard)
    lane: LaneInfo | InfoError
    demo: DemoInfo | InfoError
    controller: ControllerInfo | InfoError
    pool: PoolInfo | InfoError
    conductor: ConductorInfo | InfoError
    reconcile: ReconcileInfo | InfoError  # only for a Reconciler added on its own: assemble() gives it to the pool
    attention: AttentionInfo | InfoError
    provider_cap: ProviderCapInfo | InfoError  # only with openrouter.management_key


_Part = TypeVar("_Part", bound=Mapping[str, object])


def usable(part: _Part | InfoError | None) -> _Part | None:
    """A component's info, or None when it is missing or its ``info()`` failed (readers show nothing then).

    Also None for a value that is not a dict at all: info read back from JSON is not checked key by key, but a
    reader must never crash on it."""
    if not isinstance(part, dict) or "error" in part:
        return None
    return part

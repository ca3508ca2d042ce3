"""Every fixed set of states the engine and the screen share, as ``Literal`` types.

``Literal``, not ``Enum``: the values are the strings on the wire, in ``status --json`` and in events, and must
stay exactly those strings (an Enum would print ``TaskState.DONE`` in an f-string). mypy checks that every
assignment is one of them, and ``match`` over one with ``assert_never`` in the last arm fails type checking when
a state is added and not handled. This module imports nothing (no pydantic): the screen reads it before its
first frame.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

# A worker's state as its ``worker`` events carry it (wire.py's Worker.state).
WorkerState: TypeAlias = Literal[
    "queued", "waiting", "over_budget", "running", "retrying", "done", "failed", "cancelled"
]
# How a worker ended (a ``result`` event's state): the worker states it never leaves.
ResultState: TypeAlias = Literal["done", "failed", "cancelled"]
FINAL_STATES: Final[tuple[ResultState, ...]] = ("done", "failed", "cancelled")

# A task as the projection derives it from its decisions and its jobs.
TaskState: TypeAlias = Literal[
    "pending", "awaiting_approval", "awaiting_followup", "running", "done", "failed", "cancelled", "rejected"
]
# A decision: proposed (pending) until a person or the clock answers it.
DecisionStatus: TypeAlias = Literal["pending", "approved", "rejected", "expired"]
# What a person did with a decision (an ``approval`` event's action).
ApprovalAction: TypeAlias = Literal["approved", "rejected", "expired", "edited"]
# The heartbeat between beats.
ConductorState: TypeAlias = Literal["idle", "deciding", "paused"]

# The bus connection, as the header and ``status`` show it; "lost" is a pinned server that changed identity.
BusState: TypeAlias = Literal["disconnected", "connected", "reconnecting", "closed", "lost"]
# Which server: one we run, one another process of ours runs, or one configured.
BusKind: TypeAlias = Literal["embedded", "embedded-shared", "remote"]
# What the server is part of.
TopologyKind: TypeAlias = Literal["single server", "cluster", "leaf"]

# What needs a person (the header's "needs you", ``status --json``'s ``needs_attention``), in the order shown;
# "spend": spend passed one of ``budget.alerts`` below the ceiling (the ceiling itself is "ceiling").
NeedKind: TypeAlias = Literal["approval", "failed", "spend", "ceiling", "credit", "key", "bus"]
NEED_KINDS: Final[tuple[NeedKind, ...]] = ("approval", "failed", "spend", "ceiling", "credit", "key", "bus")

# Whether a decision waits for a person or is approved by the engine.
ApprovalMode: TypeAlias = Literal["manual", "auto"]

# The provider-side cap (guards/provider_cap.py): off (no management key), being set, on, failed (the engine's own
# ceiling still holds)
CapState: TypeAlias = Literal["off", "pending", "on", "failed"]

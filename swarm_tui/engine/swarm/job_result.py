"""A job's Result as it is stored: within the bus's message limit, and stored once whatever it holds.

A Result is one message on the event stream. NATS bounds it by bytes (the server's ``max_payload``, 1 MiB by
default, headers included), and an answer of 200,000 control characters takes 1.2 MB as JSON: publishing it
failed, the job crashed before its ack and was redelivered, calling the provider again (billed each time) up
to its last delivery. ``Result.of`` fits the text to the limit by encoded bytes; should storing it still fail
in a way no retry mends (a value the schema refuses, a payload too large after all), the job ends with a
small failed Result that says why, and goes on to record its spend and be acked: never a redelivery that
calls again.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import ValidationError

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.bus.wire import RESULT_MAX_BYTES, Job, Result
from swarm_tui.engine.errors import TooLarge

log = logging.getLogger(__name__)

HEADERS_ROOM = 1024  # the headers (Nats-Msg-Id) count in max_payload too

State = Literal["done", "failed", "cancelled"]


def result_limit(bus: Bus) -> int:
    """The most bytes a Result may take: the readers' limit, and the connected server's max_payload."""
    mp = getattr(bus.nc, "max_payload", 0) if bus.nc is not None else 0
    if isinstance(mp, int) and mp > 2 * HEADERS_ROOM:
        return min(RESULT_MAX_BYTES, mp - HEADERS_ROOM)
    return RESULT_MAX_BYTES


async def store_result(
    bus: Bus, job: Job, state: State, *, started_at: float, ended_at: float, demo: bool, reason: str = "", **fields: Any
) -> tuple[State, str]:
    """Publish the job's Result (``result-<job>``); returns the state and reason stored (``failed`` and why, when
    it had to be the small one)."""
    limit = result_limit(bus)
    try:
        res = Result.of(
            job, state, started_at=started_at, ended_at=ended_at, demo=demo, reason=reason, max_bytes=limit, **fields
        )
        data = res.to_bytes()
        if len(data) > limit:
            raise TooLarge(f"{len(data)} bytes")
        await bus.publish(event_subject(res), data, msg_id=f"result-{job.id}")
        return state, reason
    except (ValidationError, TooLarge) as exc:  # TooLarge: ours, nats-py's or the stream's size limit
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        why = type(exc).__name__ + (f": {first}" if first else "")
        log.warning("job %s: its result could not be stored (%s); a failed one instead", job.id, why)
    failed = f"the worker's result could not be stored ({why}); its spend is recorded"
    small = Result.of(job, "failed", reason=failed, started_at=started_at, ended_at=ended_at, demo=demo)
    await bus.publish_event(small, msg_id=f"result-{job.id}")
    return "failed", failed

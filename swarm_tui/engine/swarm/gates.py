"""What a job waits for before each call attempt, and the money it holds when the call starts.

In order: the OpenRouter key and the provider's credit (no cloud call without a key or while out of credit), the
model's concurrency limit and its backoff after a 429, RAM headroom for a local model; then the reservation of the
job's worst case. The money comes last, so a job waiting at a gate holds none. The ledger drops a reservation older
than the spend guard's stale limit (a killed worker's): one taken before a long wait (a model held to one call at a
time after repeated 429s, a long Retry-After, minutes out of credit) could be gone by the time the call starts, and
the call then ran with nothing held while others reserved the freed room.

``hold`` asserts the reservation right before every attempt: on a job that still holds one the ledger keeps
its amount and restarts its clock; one dropped meanwhile is reserved anew under the ceiling, and a job that
does not fit waits "over budget". A local call asserts it again once it has the local lane (``NotHeld``
otherwise). While a job reserves it counts against its model's limit (``ModelLimit.reserving``), so no more
jobs reserve for a model than may call it; the call counts as ``active`` from its first step, with no await
between the last check here and that count.

A reservation is this process's own (engine/guards/ledger_doc.py): a run of the same job that JetStream
redelivered elsewhere while this one lived holds its own, under the ceiling. The reconciler moves the hold to
the call's attempt right before the call; when it finds none there, ``NotHeld`` sends the job back here and no
call starts. A run refused money looks whether the job's result is stored (another run of it finished): it
then ends with no call, acked.
"""

from __future__ import annotations

import contextlib
import logging

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.protocols import NotHeld as NotHeld  # raised by the reconciler's begin, too
from swarm_tui.engine.swarm.context import PoolContext, RunSteps
from swarm_tui.engine.swarm.run import Run

log = logging.getLogger(__name__)

# a refused reservation that is not the budget's: the provider's credit, or no ceiling known yet (spend.py)
WAIT_REASONS = ("out of credit", "key limit", "no ceiling")
LOW_RAM = "RAM headroom is low: local worker waits"
MISSING_KEY = "OPENROUTER_API_KEY is not set: set it, or start with --demo"  # what to do, where the work waits


def closed(p: PoolContext, run: Run) -> tuple[Refusal | None, float]:
    """Why the job may not call now (None when it may), and how long to wait before looking again."""
    job = run.job
    local = p.endpoint.runs_locally(job.model)
    if not local and p.endpoint.blocks_without_key and not p.endpoint.api_key:
        return Refusal(MISSING_KEY), 5.0  # the key comes with a restart: a cloud job waits, a local one runs
    blocked = None if local else p.cloud_blocked()
    if blocked:
        return blocked, 1.0
    lim = p.limit_of(job.model)
    now = p.clock()
    if lim.backoff_until > now or (lim.limit is not None and lim.active + lim.reserving >= lim.limit):
        wait = max(0.05, min(1.0, lim.backoff_until - now)) if lim.backoff_until > now else 0.2
        return Refusal(f"rate limited: {job.model} at {lim.limit} concurrent"), wait
    if local and p.ram is not None and not p.ram.headroom_ok():
        return Refusal(LOW_RAM), 1.0
    return None, 0.0


async def hold(jr: RunSteps, run: Run) -> Refusal | None:
    """Reserve the job's worst case, or refresh the reservation it holds. None when it holds it, else why not."""
    spend = jr.ctx.spend
    if spend is None:
        return None
    res = await spend.reserve(run.job)
    run.reserved = res.ok
    return None if res.ok else Refusal(res.reason)


async def give_back(jr: RunSteps, run: Run) -> None:
    """Release the job's reservation while it waits (its spend, if a call billed any, is settled at its end)."""
    spend = jr.ctx.spend
    if spend is None or not run.reserved:
        return
    try:
        await spend.release(run.job)
        run.reserved = False
    except Exception as exc:  # noqa: BLE001 - the ledger drops it as stale; the next hold refreshes it
        log.debug("reservation of %s not released: %s", run.job.id, type(exc).__name__)


async def result_stored(jr: RunSteps, run: Run) -> bool:
    """True when the job's result is stored (a redelivery of a finished job, or another run of it finished while
    this one waited for money): the run ends with no call, its reservation given back and its message acked."""
    if await jr.ctx.bus.last_event(S.evt("result", run.job.id)) is None:
        return False
    await give_back(jr, run)
    jr.ctx.counts["already_done"] += 1
    await jr.ack(run)
    return True


async def wait_for_turn(jr: RunSteps, run: Run) -> bool:
    """Wait until the job may call and holds its reservation; False when it was cancelled meanwhile, or its
    result was stored by another run of it (then its message is acked)."""
    p = jr.ctx
    while not run.cancel_reason:
        why, wait = closed(p, run)
        if why:
            await jr.event(run, "waiting", why)
            await jr.pause(run, wait)
            continue
        lim = p.limit_of(run.job.model)
        lim.reserving += 1
        try:
            refused = await hold(jr, run)
        finally:
            lim.reserving -= 1
        if refused:
            # JetStream may have redelivered the job while a run of it held the money this one waits for
            with contextlib.suppress(Exception):  # the bus is away: not known, the job keeps waiting
                if await result_stored(jr, run):
                    return False
            await jr.event(run, "waiting" if refused.startswith(WAIT_REASONS) else "over_budget", refused)
            await jr.pause(run, 1.0)
            continue
        if run.cancel_reason:
            break
        if closed(p, run)[0]:  # a 429 or a 402 came while it reserved: the money goes back while it waits
            await give_back(jr, run)
            continue
        return True
    return False


async def hold_after_lane(jr: RunSteps, run: Run, waited: bool) -> None:
    """Once a local call has the local lane: the RAM headroom looked at again (the heart may still hold its model,
    kept loaded after its turn) and, when it waited for the lane as long as other calls took, the reservation
    asserted again; else ``NotHeld``: no call, the job goes back to its gates (which say the RAM is low)."""
    ram = jr.ctx.ram
    if ram is not None and not ram.headroom_ok():
        raise NotHeld(LOW_RAM)
    refused = await hold(jr, run) if waited else None
    if refused:
        raise NotHeld(refused)

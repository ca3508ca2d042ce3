"""Every subject, stream, consumer and bucket name in one place (documented in docs/bus.md)."""

from __future__ import annotations

PREFIX = "swarm"

# The event log: one stream, limits retention, file storage. Subject = swarm.evt.<type>.<id>.
EVENTS_STREAM = "SWARM_EVENTS"
EVENTS_ALL = f"{PREFIX}.evt.>"


def evt(kind: str, ident: str) -> str:
    return f"{PREFIX}.evt.{kind}.{ident}"


# The job work queue: one message per worker job, removed when acked. One durable consumer per lane (a work queue
# allows several only with disjoint subjects), so a pool that may not run cloud jobs (no key, a dead key, no
# credit) pulls only local ones, and a cloud job stays on the queue for a pool that can run it.
JOBS_STREAM = "SWARM_JOBS"
JOBS_ALL = f"{PREFIX}.jobs.>"
JOB_LANES = ("cloud", "local")
JOBS_OLD_CONSUMER = "pool"  # the one consumer of every lane before issue 28's fix: set-up removes it


def job(lane: str, job_id: str) -> str:
    """lane: "cloud" or "local"."""
    return f"{PREFIX}.jobs.{lane}.{job_id}"


def jobs_of(lane: str) -> str:
    """The subjects of one lane's jobs (its consumer's filter)."""
    return f"{PREFIX}.jobs.{lane}.>"


def jobs_consumer(lane: str) -> str:
    """The durable consumer of one lane's jobs: ``pool-cloud``, ``pool-local``."""
    return f"pool-{lane}"


# Messages that did not decode, set aside with the reason in a header.
DEAD_STREAM = "SWARM_DEAD"
DEAD_ALL = f"{PREFIX}.dead.>"


def dead(kind: str) -> str:
    return f"{PREFIX}.dead.{kind}"


# Live output chunks: core NATS, not stored (the full output is in the result).
def chunk(worker_id: str) -> str:
    return f"{PREFIX}.chunk.{worker_id}"


CHUNK_ALL = f"{PREFIX}.chunk.*"

# Control requests (request/reply to the engine) and broadcasts to every pool.
CTL = f"{PREFIX}.ctl"


def ctl(verb: str) -> str:
    return f"{CTL}.{verb}"


BCAST_CANCEL = f"{PREFIX}.bcast.cancel"
BCAST_SCALE = f"{PREFIX}.bcast.scale"
ENGINE_INFO = f"{PREFIX}.engine.info"  # request: a live snapshot (RAM, conductor, pool) from a running engine

# Key-value buckets.
KV_STATE = "swarm_state"  # scale, paused, ceiling override
KV_BUDGET = "swarm_budget"  # spend reservations per day and per decision (compare-and-set)
KV_CANCEL = "swarm_cancel"  # cancelled job / decision ids, so a queued job is never started
KV_RECONCILE = "swarm_reconcile"  # attempts whose cost OpenRouter has not told yet (engine/guards/reconcile.py)
# every bucket the engine creates, and its entries' time to live (seconds; None: kept)
BUCKETS: dict[str, float | None] = {KV_STATE: None, KV_BUDGET: None, KV_CANCEL: 86400.0, KV_RECONCILE: None}

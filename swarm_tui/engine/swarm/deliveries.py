"""JetStream's last word on a job: the MAX_DELIVERIES advisory.

JetStream counts every delivery of a job (a nak, a redelivery after a lost worker) and after ``max_deliver``
leaves the message unacknowledged in the work queue, never to be delivered again, publishing
``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`` with its stream sequence. A pool on its last
delivery ends the job with a result even when it stops or crashes (pool.py); for a worker killed during it,
every running pool listens to this advisory: a job without a stored result gets a failed one with the reason,
and its message is deleted from the queue. Nothing is left hanging without a result.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping

from nats.aio.msg import Msg as NatsMsg

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.wire import Job, decode
from swarm_tui.engine.swarm.job import JobRun
from swarm_tui.engine.swarm.run import MAX_DELIVER, Run

log = logging.getLogger(__name__)


def advisory(lane: str) -> str:
    """The max-deliveries advisory of one lane's consumer (subscribed one by one: a worker's login allows these)."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{S.JOBS_STREAM}.{S.jobs_consumer(lane)}"


async def on_max_deliveries(runner: JobRun, runs: Mapping[str, Run], msg: NatsMsg) -> None:
    """``runs``: the jobs running in this pool (one on its last delivery ends with a result by itself)."""
    bus = runner.ctx.bus
    try:
        adv = json.loads(msg.data)
        seq = int(adv["stream_seq"])
        raw = await bus.jobs.get(seq)
        job = decode(raw.data or b"", expect="job")
    except Exception as exc:  # noqa: BLE001 - gone already (another pool handled it), or not a job
        log.debug("max-deliveries advisory not handled: %s", type(exc).__name__)
        return
    assert isinstance(job, Job)
    if job.id in runs:  # it runs here on its last delivery: it ends with a result by itself
        return
    if await bus.last_event(S.evt("result", job.id)) is None:
        n = int(adv.get("deliveries") or MAX_DELIVER)
        run = Run(job=job, msg=_NoAck())  # type: ignore[arg-type]  # finish only acks it: a stand-in will do
        await runner.finish(
            run,
            "failed",
            f"delivered {n} times without a result (its worker stopped or "
            "crashed each time): JetStream delivers it no more",
        )
        runner.ctx.counts["max_deliveries"] += 1
        log.warning("job %s failed after %d deliveries without a result", job.id, n)
    with contextlib.suppress(Exception):  # gone already (another pool deleted it), or the bus is away
        await bus.jobs.delete(seq)


class _NoAck:
    """The message is deleted instead (JetStream no longer takes an ack for it)."""

    async def ack_sync(self, timeout: float = 0) -> None:
        return None

    async def ack(self) -> None:
        return None

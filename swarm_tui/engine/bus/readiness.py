"""A worker's start on the bus: it uses the swarm's streams as the engine set them up, and creates none.

A worker's NATS login (``contrib/nats/hub.conf``) may not create, update, purge or delete streams: that is the
engine's. So a worker looks its parts up (stream and consumer info, which it may ask) and starts when they are
all there. When some are missing it tries to create them once (an unrestricted login, the embedded server of a
data dir, where a worker may well be the first process); a login that may not gets one clear line.
"""

from __future__ import annotations

from nats.errors import Error as NatsError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.reasons import safe_url
from swarm_tui.engine.errors import BusError

STREAMS = (S.EVENTS_STREAM, S.JOBS_STREAM, S.DEAD_STREAM) + tuple(f"KV_{b}" for b in S.BUCKETS)


async def missing_parts(bus: Bus) -> list[str]:
    """The streams (and the work queue's consumer) that are not on the bus."""
    js = bus.lookup
    missing: list[str] = []
    for name in STREAMS:
        try:
            await js.stream_info(name)
        except (NatsError, TimeoutError):  # not found (or not answered): counted as missing, setup decides
            missing.append(name)
    if S.JOBS_STREAM not in missing:
        for lane in S.JOB_LANES:
            try:
                await js.consumer_info(S.JOBS_STREAM, S.jobs_consumer(lane))
            except (NatsError, TimeoutError):  # as a stream: missing, setup decides
                missing.append(f"{S.JOBS_STREAM}/{S.jobs_consumer(lane)}")
    return missing


async def connect_worker(bus: Bus, *, setup_deadline_s: float = 30.0) -> Bus:
    """Connect without setting anything up; create the streams only when missing (and this login may)."""
    await bus.connect(setup=False)
    try:
        if bus.leaf:  # the hub's engine owns the streams
            return bus
        missing = await missing_parts(bus)
        if missing:
            try:
                await bus.setup(setup_deadline_s)
            except Exception as exc:  # noqa: BLE001 - refused or not answered: one line either way
                raise BusError(
                    f"the swarm's streams are not on {safe_url(bus.url)} yet ({', '.join(missing)}) and this "
                    f"login could not create them ({exc}): start the engine first (swarm-tui run --headless), "
                    "then the worker"
                ) from None
    except BaseException:  # re-raised: any way out (a cancel too) closes the bus first
        await bus.close()
        raise
    return bus

"""A Result the stream refuses for its size (its ``max_msg_size``, set lower than the server's ``max_payload`` by
whoever runs the server) ends as a small failed Result that says why, never as a crashed job that is
redelivered and calls the provider again. The refusal is the real nats-server's (JetStream error 10054)."""

from __future__ import annotations

import time

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.swarm.job_result import store_result
from tests.support.ledger_kit import a_job
from tests.support.swarm_kit import events


async def test_a_result_over_the_streams_size_limit_is_stored_as_a_small_failed_one(cfg: Config, bus: Bus) -> None:
    js = bus.nc.jetstream()  # type: ignore[union-attr]
    info = await js.stream_info(S.EVENTS_STREAM)
    info.config.max_msg_size = 4096
    await js.update_stream(info.config)
    job = a_job(1)
    now = time.time()
    state, reason = await store_result(bus, job, "done", text="x" * 20_000, started_at=now, ended_at=now, demo=False)
    assert state == "failed" and "TooLarge" in reason and "could not be stored" in reason, reason
    stored = [e for e in await events(cfg) if isinstance(e, Result)]
    assert [(r.job_id, r.state) for r in stored] == [(job.id, "failed")]

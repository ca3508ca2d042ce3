"""A run cut off by the engine's stop during its last allowed delivery stores its last word (a failed Result, its
money settled, its final event, the ack) however long the bus takes, within the lifecycle's bound on the stop
(10 s). ``Pool.stop`` cancels its runs once and waits: a second cancel (``cancel_and_wait``'s default after 2 s)
would land on the run's shielded ``finish`` in ``Pool._last_word``, which would give up, and the stop would return
(then the bus is closed) while the last word was still being written. Found by the adversary of issue 23.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint
from swarm_tui.engine.swarm.run import MAX_DELIVER
from tests.support.env import make_config
from tests.support.swarm_kit import make_job

SLOW_FINISH_S = 3.0  # a bus that takes this long to store a result (a leader election, a slow disk): < 10 s


class FakeMsg:
    def __init__(self, data: bytes, delivered: int) -> None:
        self.data = data
        self.subject = "swarm.jobs.cloud.x"
        self.headers = None
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.said: list[str] = []

    async def in_progress(self) -> None:
        self.said.append("in_progress")

    async def nak(self, delay: float | None = None) -> None:
        self.said.append("nak")

    async def ack(self) -> None:
        self.said.append("ack")

    async def ack_sync(self, timeout: float = 1) -> None:
        self.said.append("ack")


async def test_a_run_cut_off_at_stop_on_its_last_delivery_stores_its_last_word(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    pool = build_pool(cfg, None, endpoint=DemoEndpoint(cfg.demo))  # type: ignore[arg-type]  # never started
    stored: list[tuple[str, str]] = []
    started = asyncio.Event()

    async def process(run: Any) -> None:  # a call in progress when the engine stops
        started.set()
        await asyncio.sleep(3600)

    async def finish(run: Any, state: str, reason: str) -> None:  # the Result, the spend settled, the ack
        await asyncio.sleep(SLOW_FINISH_S)
        stored.append((state, reason))

    pool.runner.process = process  # type: ignore[method-assign]  # the call in progress, faked
    pool.runner.finish = finish  # type: ignore[method-assign]  # a slow bus, faked
    job = make_job()
    await pool._accept(FakeMsg(json.dumps(job.model_dump(mode="json")).encode(), MAX_DELIVER))  # type: ignore[arg-type]  # the Msg fields it reads
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(pool.stop(), 10)  # the lifecycle's bound on a part's stop
    assert stored and stored[0][0] == "failed" and "last allowed delivery" in stored[0][1], (
        "the stop returned before the job's last word (its Result and its settled money) was stored"
    )

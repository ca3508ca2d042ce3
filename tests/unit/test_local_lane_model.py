"""Issue 28: the local lane knows which model holds it, so the Workers panel, status and a waiting ant say it."""

from __future__ import annotations

import asyncio

from swarm_tui.engine.guards.local_lane import LocalLane


async def test_the_lane_names_its_holders_model_and_who_waits() -> None:
    lane = LocalLane()
    assert lane.held_by() == "" and lane.info()["model"] == ""
    async with lane.turn("conductor", "gemma2:2b"):
        assert lane.held_by() == "the heart (gemma2:2b)"
        ant = asyncio.create_task(_ant(lane))
        await asyncio.sleep(0.01)
        info = lane.info()
        assert (info["holder"], info["model"], info["waiting"]) == ("conductor", "gemma2:2b", ["d-1-w0"])
    assert await ant == "d-1-w0 (qwen2.5:0.5b)"
    assert lane.info()["model"] == "" and lane.turns == 2


async def _ant(lane: LocalLane) -> str:
    async with lane.turn("d-1-w0", "qwen2.5:0.5b"):
        return lane.held_by()

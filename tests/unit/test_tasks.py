"""cancel_and_wait ends tasks that lose their first cancel."""

from __future__ import annotations

import asyncio

from swarm_tui.engine.lifecycle import cancel_and_wait


async def test_a_task_that_swallows_its_first_cancel_is_cancelled_again() -> None:
    """What Python 3.11's wait_for does when a result arrives with the cancel: the loop goes on. Before: the stop
    awaited it forever."""
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise
                # swallowed, as the race does

    t = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([t, None], again_after_s=0.05), 5)
    assert t.cancelled() and cancels == 2


async def test_an_error_a_task_died_of_is_retrieved_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("earlier")

    t = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait([t])
    assert t.done() and isinstance(t.exception(), RuntimeError)

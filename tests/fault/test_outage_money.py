"""A bus outage around a call (a cluster's leader election: CI saw one last >15 s) never turns a known cost into
a guess.

The reconciler writes the generation id into the attempt's record at the first chunk and the attempt's end when
the call ends. When the bus refused both, the record said only "calling", and the scan charged the attempt its
worst case (marked estimated) although the process had OpenRouter's ``usage.cost`` in hand: recorded $0.000057
for a call billed $0.0004 in tests/fault/test_cluster.py. Here the outage is made on purpose: the reconciler's
record store refuses every operation while it lasts (nats-py raises ``TimeoutError`` the same way mid-election).
The promise: recorded = billed <= ceiling, nothing estimated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from swarm_tui.engine.bus.embedded import EmbeddedServer
from tests.integration.test_reconcile import MAX_TOKENS, Swarm, config, full_cost, report, setup_fake
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import approve

pytestmark = pytest.mark.fault


class Outage:
    """The record store refuses every operation while ``on`` (the rest of the bus keeps working)."""

    def __init__(self, store: Any) -> None:
        self.on = False
        self.refused = 0
        for name in ("get", "put", "delete", "keys", "revision"):
            setattr(store, name, self._wrap(getattr(store, name)))

    def _wrap(self, op: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def refused_while_on(*a: Any, **kw: Any) -> Any:
            if self.on:
                self.refused += 1
                await asyncio.sleep(0.05)
                raise nats.errors.TimeoutError
            return await op(*a, **kw)

        return refused_while_on


async def _swarm(tmp_path: Any, nats_server: Any, fo: FakeOpenRouter) -> tuple[Swarm, Outage]:
    sw = await Swarm(config(tmp_path, nats_server, fo)).start()
    assert sw.pool is not None and sw.pool.reconciler is not None
    return sw, Outage(sw.pool.reconciler.store)


async def outage_over_a_call(sw: Swarm, outage: Outage, fo: FakeOpenRouter) -> None:
    """One job approved; the outage starts once its call is under way and lasts past the stream's end."""
    await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
    await fo.wait_open(1, 15)
    outage.on = True
    await until(lambda: fo.requests and fo.requests[0].get("cost") is not None, 20, "the call billed")
    await until(lambda: fo.open == 0, 10, "the stream closed")


def _check(what: str, sw: Swarm, fo: FakeOpenRouter, led: dict[str, Any]) -> None:
    report(what, sw, fo, led, 0.25)
    assert sw.engine is not None
    assert fo.billed == pytest.approx(full_cost(), abs=1e-12)
    assert sw.recorded() == pytest.approx(fo.billed, abs=1e-9)  # not the worst case
    assert not any(s.estimated for s in sw.engine.state.spend_entries.values())
    assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}


async def test_an_outage_over_the_first_chunk_and_the_end_records_what_was_billed(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The outage starts once the call is under way (its record written) and ends 2 s after the stream: the
    generation id and the end are both refused at first."""
    async with FakeOpenRouter() as fo:
        setup_fake(fo, first_token_delay=0.5)
        sw, outage = await _swarm(tmp_path, nats_server, fo)
        try:
            await outage_over_a_call(sw, outage, fo)
            await asyncio.sleep(2.0)
            outage.on = False
            led = await sw.settled(fo, timeout=40)
        finally:
            await sw.stop()
        _check("an outage over the first chunk and the end", sw, fo, led)
        assert outage.refused > 0


async def test_an_end_refused_after_a_lost_generation_id_is_written_when_the_bus_is_back(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generation id never reached the record (its write gave up) and the end is refused too: only this
    process knows the cost. It keeps the attempt and writes its end once the bus answers again."""
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        sw, outage = await _swarm(tmp_path, nats_server, fo)
        rec = sw.reconciler

        async def lost(aid: str, gen: str) -> None:
            raise nats.errors.TimeoutError

        first_end = rec.end

        async def end_in_an_outage(*a: Any, **kw: Any) -> Any:
            outage.on = True  # the call's end meets a bus that refuses
            return await first_end(*a, **kw)

        monkeypatch.setattr(rec, "note_generation", lost)
        monkeypatch.setattr(rec, "end", end_in_an_outage)
        try:
            await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            await until(lambda: outage.refused > 0, 20, "the end refused")
            monkeypatch.setattr(rec, "end", first_end)
            await asyncio.sleep(1.5)  # scans meanwhile are refused too
            outage.on = False
            led = await sw.settled(fo, timeout=40)
        finally:
            await sw.stop()
        _check("the generation id lost, the end refused", sw, fo, led)
        assert rec.counts["ended_late"] == 1, rec.counts


async def test_an_end_that_never_goes_through_is_left_to_the_scan_after_reconcile_max_s(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An end that keeps failing is not kept live forever (its hold would never be freed): after
    ``openrouter.reconcile_max_s`` the scan takes the record, which holds the generation id: asked, recorded."""
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        sw = await Swarm(config(tmp_path, nats_server, fo, openrouter__reconcile_max_s=1.5)).start()
        rec = sw.reconciler

        async def never(*a: Any, **kw: Any) -> Any:
            raise nats.errors.TimeoutError

        monkeypatch.setattr(rec, "end", never)
        try:
            await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            await until(lambda: rec.counts["end_given_up"] == 1, 20, "the end given up")
            assert not rec.live
            led = await sw.settled(fo, timeout=40)
        finally:
            await sw.stop()
        _check("an end that never goes through", sw, fo, led)
        assert fo.generation_asks >= 1

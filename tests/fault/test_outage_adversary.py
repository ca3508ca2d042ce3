"""Adversarial cases for the outage path of engine/guards/reconcile.py (``end_later``, ``note_generation``
retried): each test is one way the money promise (recorded = billed <= ceiling, every hold freed) was broken.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from swarm_tui.engine.bus.embedded import EmbeddedServer
from tests.fault.test_outage_money import _swarm, outage_over_a_call
from tests.integration.test_reconcile import MAX_TOKENS, Swarm, config, full_cost, report, setup_fake
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import records as attempt_records
from tests.support.polling import until
from tests.support.swarm_kit import approve

pytestmark = pytest.mark.fault


async def _records(sw: Swarm) -> list[str]:
    """The attempt records' keys (a timeout under load raises: it is not "no records")."""
    assert sw.bus is not None
    return list(await attempt_records(sw.bus))


async def test_a_refused_call_whose_ledger_settle_fails_after_its_record_went_frees_its_hold(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider refuses the request (HTTP 400: nothing billed). ``end`` deletes the record first, then settles
    the ledger at 0; the bus goes away between the two (the settle's retries give up). ``end_later`` keeps the end,
    but its retry finds no record, takes it for "adopted away" and returns: no one ever settles the attempt, and
    its worst-case hold stays in the ledger (until the stale watch, hours later)."""
    async with FakeOpenRouter() as fo:
        setup_fake(fo)
        fo.script(Answer(status=400, error_code=400, error_message="bad request"))
        sw, outage = await _swarm(tmp_path, nats_server, fo)
        rec = sw.reconciler
        assert rec is not None and rec.spend is not None
        real_settle = rec.spend.settle_attempt
        failed: list[str] = []

        async def settle_in_an_outage(aid: str, keys: Any, cost: float, *, estimated: bool) -> bool:
            if not failed:
                failed.append(aid)
                outage.on = True  # the bus went away just after the record's delete
                raise nats.errors.TimeoutError
            return await real_settle(aid, keys, cost, estimated=estimated)

        monkeypatch.setattr(rec.spend, "settle_attempt", settle_in_an_outage)
        try:
            await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            await until(lambda: bool(failed), 20, "the settle refused")
            await asyncio.sleep(1.0)
            outage.on = False
            await until(lambda: not rec.late, 20, "the kept end retried")
            await asyncio.sleep(1.0)
            led = await sw.ledger()
        finally:
            await sw.stop()
        report("a refused call, its settle lost", sw, fo, led, 0.25)
        assert fo.billed == 0 and sw.recorded() == 0
        assert led["reserved"] == {}, f"a hold never freed: {led['reserved']} (counts {dict(rec.counts)})"


async def test_a_pool_stop_while_the_generation_id_is_retried_keeps_the_known_cost(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The call ended with OpenRouter's ``usage.cost`` while the record store was away: ``account`` awaits the
    generation id's write (retried up to 30 s). The pool stops meanwhile (the user quits) and the bus is back:
    the run's task is cancelled inside ``account`` before ``end`` or ``end_later``, so the reconciler's last
    try at stop has nothing to write; the record says only "calling", without a generation id, and the next
    engine charges its worst case (estimated) for a call whose cost this process had."""
    async with FakeOpenRouter() as fo:
        setup_fake(fo, first_token_delay=0.5)
        sw, outage = await _swarm(tmp_path, nats_server, fo)
        sw2: Swarm | None = None
        stopped = False
        try:
            await outage_over_a_call(sw, outage, fo)
            await asyncio.sleep(1.0)  # account() is awaiting the retried generation id
            outage.on = False  # the bus is back as the user quits
            stopped = True
            await sw.stop()
            sw2 = await Swarm(config(tmp_path, nats_server, fo)).start()
            # the job comes back to the new engine and is called again (billed again): wait until all is quiet
            try:
                led = await sw2.settled(fo, timeout=15)
            except AssertionError:
                led = await sw2.ledger()
            assert not await _records(sw2)
        finally:
            if not stopped:
                await sw.stop()
            if sw2 is not None:
                await sw2.stop()
        report("a pool stop while the generation id is retried", sw2, fo, led, 0.25)
        # the call, and the redelivered job's when the new engine runs it again
        assert fo.billed == pytest.approx(len(fo.requests) * full_cost(), abs=1e-12)
        assert sw2.recorded() == pytest.approx(fo.billed, abs=1e-9), "recorded the worst case, not what was billed"
        assert not any(s.estimated for s in sw2.engine.state.spend_entries.values())
        assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}

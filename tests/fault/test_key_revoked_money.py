"""Money: the key revoked while a call streams (issue 25, round 2; the adversary checked it by hand).

The running call is billed by the provider to its end; the calls after it are refused 401 (not billed), the
pool's own refused call has the key rechecked (one GET /key, not one per refusal), the key's state says
rejected (not out of credit) and no later cloud call goes out. The promise: recorded = billed <= ceiling.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from tests.fault.test_hostile_money import money, start_swarm
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import approve, swarm_config

pytestmark = pytest.mark.fault


async def test_a_key_revoked_mid_stream_records_what_was_billed_under_the_ceiling(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=30, tps=20.0, cost=0.015)  # 1.5 s of output, billed $0.015 when complete
        ceiling = 1.0
        cfg = swarm_config(
            make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=ceiling, openrouter__key_poll_s=3600.0
        )
        bus = await Bus(cfg).connect()
        engine, spend = await start_swarm(cfg, bus)
        try:
            await until(lambda: spend.key_status == "ok", 10)
            first = await approve(bus, 2)
            await fo.wait_open(2, 10)  # both stream
            fo.key_rejected = True  # revoked now: the streams run on (and are billed), new calls get 401
            later = await approve(bus, 3)

            def ended(d_id: str, n: int) -> bool:
                return sum(1 for r in engine.state.results.values() if r.decision_id == d_id) >= n

            await until(lambda: ended(first.id, 2), 20, "the two streams end")
            await until(lambda: spend.key_status == "rejected (HTTP 401)", 10, "the key rechecked")
            await asyncio.sleep(1.0)
            refused = [r for r in fo.requests if r["status"] == 401]
            chats_then = len(fo.chats())
            await asyncio.sleep(1.0)
            info = spend.info()
            recorded, ledger = await money(cfg, spend)
            later_states = [w.state for w in engine.state.workers.values() if w.decision_id == later.id]
        finally:
            await engine.stop()
            await bus.close()
        billed = fo.billed
    print(
        f"\nbilled ${billed:.4f}, recorded ${recorded:.4f}, ledger ${ledger:.4f}; {len(refused)} calls refused 401, "
        f"GET /key {fo.key_asks}; later jobs {later_states}; blocked {info['blocked_reason']!r}"
    )
    assert billed == pytest.approx(0.03), "the two streams billed in full"
    # recorded = billed <= ceiling
    assert recorded == ledger == billed <= ceiling
    assert len(refused) <= 3 and len(fo.chats()) == chats_then, "no call goes out once the key is seen rejected"
    assert fo.key_asks <= 3, f"GET /key asked {fo.key_asks} times"
    assert info["key_rejected"] and not info["out_of_credit"], info


def test_the_spend_panel_says_a_rejected_key_when_the_next_check_fails() -> None:
    """The Spend panel, like the header: after a 401 a failed check (a 5xx) leaves the key rejected; a forged
    limit that is no number does not crash the panel."""
    from typing import Any, cast

    from swarm_tui.tui.widgets.spend_panel import key_line

    words, style = key_line(cast(Any, {"key_status": "HTTP 500", "key_rejected": True, "credits_left_usd": None}))
    assert words.startswith("key rejected: check OPENROUTER_API_KEY") and style == "bold red", words
    words, _ = key_line(cast(Any, {"key_status": "ok", "credits_left_usd": "lots"}))
    assert words == "key limit left -", words

"""The provider-side cap against the stand-in of OpenRouter's management API (tests/support/fake_openrouter_keys.py):
the runtime key made, reused, kept in step with the ceiling, remade when lost; a failure is a state."""

from __future__ import annotations

import json
import logging
import socket
import stat
import time
from pathlib import Path
from typing import Any, cast

import pytest

from swarm_tui.cli.status import format_status, status_data
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import ChatMessage, Job
from swarm_tui.engine.guards import credit
from swarm_tui.engine.guards.provider_cap import KEY_FILE, ProviderCap
from swarm_tui.engine.info import SpendInfo, usable
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter_keys import MANAGEMENT_KEY, FakeOpenRouterKeys, cap_config, capped_engine, new_cap
from tests.support.polling import until

API_KEY = "sk-or-v1-plain-test-key-0123456789abcdef"
MODEL = "openrouter/google/gemini-2.5-flash-lite"


def job(i: int) -> Job:
    return Job(
        id=f"d-1-j{i}",
        worker_id=f"d-1-w{i}",
        decision_id="d-1",
        task_id="t-1",
        role="research",
        model=MODEL,
        max_tokens=800,
        messages=[ChatMessage(role="user", content="x" * 300)],
        created_at=time.time(),
    )


def masked(fo: FakeOpenRouterKeys) -> list[tuple[str, str, Any, int]]:
    """The stand-in's log with every hash shortened (as the report shows it)."""
    out = []
    for method, path, body, status in fo.log:
        for h in fo.runtime:
            path = path.replace(h, h[:6] + "…")
        out.append((method, path, body, status))
    return out


async def test_runtime_key_is_made_reused_and_follows_the_ceiling(tmp_path: Path) -> None:
    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        ceiling = [5.0]
        cap = new_cap(cfg, ceiling)
        await cap.start()
        try:
            (k,) = fo.by_name("swarm-tui h1")
            assert (k["limit"], k["limit_reset"], k["disabled"]) == (5.0, "daily", False)
            assert cap.worker_key() == k["secret"] != MANAGEMENT_KEY
            assert cap.info() == {
                "state": "on",
                "limit_usd": 5.0,
                "key_name": "swarm-tui h1",
                "reason": "",
                "line": "provider cap $5.00/day",
            }
            path = Path(cfg.paths.data_dir) / KEY_FILE
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert json.loads(path.read_text())["key"] == k["secret"]  # the secret is returned only at creation
            # `budget USD` moves the ceiling: the key's limit follows it
            ceiling[0] = 2.5
            await cap.sync()
            assert k["limit"] == 2.5 and cap.info()["line"] == "provider cap $2.50/day"
        finally:
            await cap.stop()
        # the key list first (a live key of our name left by a lost create answer is disabled), then the create
        want = [("GET", 200), ("POST", 201), ("PATCH", 200)]
        assert [(m, s) for m, p, _, s in fo.log if p.startswith("/keys")] == want

        # a restart reuses the stored key (GET /key answers 200 with it): no second key is made
        cap2 = new_cap(cfg, ceiling)
        await cap2.start()
        await cap2.stop()
        assert len(fo.runtime) == 1 and cap2.worker_key() == k["secret"] and cap2.info()["state"] == "on"

        # the stored key was disabled at the provider (by hand): a new one is made, the old one stays disabled
        k["disabled"] = True
        cap3 = new_cap(cfg, ceiling)
        await cap3.start()
        await cap3.stop()
        old, new = fo.by_name("swarm-tui h1")
        assert old is k and new["disabled"] is False and new["limit"] == 2.5
        assert cap3.worker_key() == new["secret"]
        assert old["disabled"] is True and [x for x in fo.by_name("swarm-tui h1") if not x["disabled"]] == [new]
        print("\nmanagement-key flow (hashes shortened, keys never sent back after creation):")
        for line in masked(fo):
            print("  ", line)


async def test_a_management_api_failure_is_a_state_and_work_keeps_the_plain_key(tmp_path: Path) -> None:
    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo, OPENROUTER_API_KEY=API_KEY)
        fo.broken = 500
        cap = new_cap(cfg, [3.0])
        await cap.start()  # never raises
        try:
            info = cap.info()
            assert info["state"] == "failed" and cap.worker_key() == API_KEY
            assert info["line"] == (
                "provider cap not set (GET /keys answered HTTP 500): the engine's own ceiling still holds"
            )
            fo.broken = None  # the API is back: the next sync sets the cap
            await cap.sync()
            assert cap.info()["state"] == "on" and cap.worker_key() == fo.by_name("swarm-tui h1")[0]["secret"]
            fo.broken = 503  # down again while the ceiling moves: the workers keep the key, capped at its last limit
            cap.ceiling = lambda: 4.0
            await cap.sync()
            assert cap.worker_key() == fo.by_name("swarm-tui h1")[0]["secret"]
            assert cap.info()["line"] == (
                "provider cap $3.00/day, not updated (PATCH /keys answered HTTP 503): "
                "the engine's own ceiling still holds"
            )
            fo.broken = None
        finally:
            await cap.stop()
        # a management key the provider rejects
        cfg2 = make_config(tmp_path / "b", OPENROUTER_API_BASE=fo.base, OPENROUTER_MANAGEMENT_KEY="sk-or-v1-wrong-0000")
        cap2 = new_cap(cfg2, [3.0])
        await cap2.start()
        await cap2.stop()
        assert cap2.info()["reason"] == "management key rejected (HTTP 401): check OPENROUTER_MANAGEMENT_KEY"
        assert cap2.worker_key() == ""  # no plain key: cloud work waits for one
        for c in (cap, cap2):
            text = json.dumps(c.info())
            assert MANAGEMENT_KEY not in text and "sk-or-v1-" not in text


async def test_without_a_management_key_nothing_is_asked(tmp_path: Path) -> None:
    async with FakeOpenRouterKeys() as fo:
        cfg = make_config(tmp_path, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=API_KEY)
        cap = new_cap(cfg, [3.0])
        await cap.start()
        await cap.stop()
        assert cap.info()["state"] == "off" and cap.info()["line"] == "" and cap.worker_key() == API_KEY
        assert fo.log == [] and cap.requests == 0


async def test_the_engine_spends_through_the_capped_key(
    tmp_path: Path, nats_server: EmbeddedServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Money: the workers call with the runtime key; what is recorded equals what the provider billed the key and
    stays under the ceiling; the key's limit follows `budget`; a key refused past its limit stops cloud work."""

    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(credit, "RECHECK_GAP_S", 0.2)  # the key checks the cap and a 402 ask for, without the wait
    async with capped_engine(tmp_path, nats_server.url) as (fo, bus, engine):
        state = engine.state
        (k,) = fo.by_name(f"swarm-tui {engine.host}")
        assert (k["limit"], k["limit_reset"]) == (0.05, "daily")

        def spend() -> dict[str, Any]:
            return dict(usable(engine.info().get("spend")) or {})

        await until(lambda: spend().get("key_status") == "ok", 10, "the runtime key checked")
        assert spend()["provider_cap"] == "provider cap $0.05/day"
        assert spend()["credits_left_usd"] == 0.05  # GET /key answered for the runtime key
        for i in range(5):
            j = job(i)
            await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
        await until(lambda: len(state.results) == 5 and state.spend.entries == 5, 15, "five results")
        assert fo.calls_by_key == {k["hash"]: 5} and len(fo.chats()) == 5
        assert (
            state.today_spend() == pytest.approx(fo.billed) == pytest.approx(k["usage_daily"]) == pytest.approx(0.001)
        )
        assert state.today_spend() <= 0.05
        text = format_status(await status_data(engine.cfg))
        assert "provider cap $0.05/day" in text and MANAGEMENT_KEY not in text and k["secret"] not in text

        await engine.controls.handle("ceiling", {"usd": 0.04})  # `swarm-tui budget 0.04`
        await until(lambda: k["limit"] == 0.04, 10, "the key's limit follows the ceiling")
        await until(lambda: spend()["provider_cap"] == "provider cap $0.04/day", 5, "the line")
        # the key is checked again at once: its limit left is the new limit less what it was billed
        await until(lambda: spend()["credits_left_usd"] == pytest.approx(0.039), 10, "the key checked again")

        k["usage_daily"] = k["limit"]  # spent today through the same key elsewhere: OpenRouter refuses (402)
        billed = fo.billed
        j = job(9)
        await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
        await until(lambda: "key limit reached" in spend()["blocked_reason"], 15, "the key limit seen")
        assert fo.key_limit_refusals >= 1 and fo.billed == billed and state.today_spend() <= 0.04
    for secret in (MANAGEMENT_KEY, k["secret"]):
        assert secret not in caplog.text
        for p in (tmp_path / "nats-store").rglob("*"):  # never on the bus
            assert not p.is_file() or secret.encode() not in p.read_bytes(), p


def test_config_masks_the_management_key(tmp_path: Path) -> None:
    res = run_cli(["config"], base_env(tmp_path, OPENROUTER_MANAGEMENT_KEY=MANAGEMENT_KEY))
    assert res.returncode == 0, res.stderr
    assert MANAGEMENT_KEY not in res.stdout + res.stderr
    assert any("openrouter.management_key" in line and "(set)" in line for line in res.stdout.splitlines())


async def test_doctor_checks_the_management_key(tmp_path: Path) -> None:
    from swarm_tui.cli.doctor import run_doctor

    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        lines = [c.line() for c in await run_doctor(cfg) if c.name in ("openrouter", "provider")]
        assert lines == [
            "ok   openrouter  OPENROUTER_API_KEY is not set: the workers use the provider cap's key",
            f"ok   provider    management key valid; the engine makes 'swarm-tui {socket.gethostname()}' at start, "
            "limited daily",
        ]
        cap = ProviderCap(cfg.openrouter, cfg.paths, ceiling=lambda: 5.0, host=socket.gethostname())
        await cap.start()
        await cap.stop()
        (line,) = [c.line() for c in await run_doctor(cfg) if c.name == "provider"]
        assert line.endswith(": provider cap $5.00/day (daily)")
        bad = cap_config(tmp_path / "b", fo, OPENROUTER_MANAGEMENT_KEY="sk-or-v1-wrong-0000")
        (check,) = [c for c in await run_doctor(bad) if c.name == "provider"]
        assert not check.ok and check.required and "sk-or-v1-wrong" not in check.line()
        assert check.detail == (
            "management key rejected by OpenRouter (HTTP 401): check OPENROUTER_MANAGEMENT_KEY; "
            "the engine's own ceiling still holds"
        )


def test_the_spend_panel_shows_the_provider_cap() -> None:
    from swarm_tui.tui.widgets.spend_panel import SpendPanel

    spend: dict[str, Any] = {"ceiling_usd": 5.0, "today_usd": 0.1, "price_source": "test", "key_status": "ok"}
    spend |= {"credits_left_usd": 4.9, "by_model": {}}
    assert "provider cap" not in SpendPanel.build(cast(SpendInfo, spend), 60).plain  # no management key: no line
    lines = SpendPanel.build(cast(SpendInfo, spend | {"provider_cap": "provider cap $5.00/day"}), 60).plain
    assert "key limit left $4.90\nprovider cap $5.00/day\nprices: test" in lines
    failed = "provider cap not set (GET /keys answered HTTP 500): the engine's own ceiling still holds"
    lines = SpendPanel.build(cast(SpendInfo, spend | {"provider_cap": failed}), 42).plain
    assert "\nprovider cap not set: own ceiling holds\n" in lines  # fits the panel: why is in status and doctor


async def test_a_key_disabled_while_running_is_replaced(tmp_path: Path) -> None:
    from swarm_tui.engine.swarm.controller import ControllerSettings

    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        # a queued cloud job does not say "OPENROUTER_API_KEY is not set": the cap makes the workers' key
        assert ControllerSettings.of(cfg).has_api_key
        cap = new_cap(cfg, [1.0])
        await cap.start()
        try:
            (k,) = fo.by_name("swarm-tui h1")
            k["disabled"] = True  # by hand, on openrouter.ai
            await cap.sync()  # the next key_poll_s
            old, new = fo.by_name("swarm-tui h1")
            assert old is k and cap.worker_key() == new["secret"] and cap.info()["line"] == "provider cap $1.00/day"
        finally:
            await cap.stop()


async def test_a_key_revoked_mid_run_is_replaced_at_once_with_what_is_left_of_the_day(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Money: the runtime key is disabled by hand after some spend; the next call's 401 makes the cap sync at once,
    the job waits and is done with the new key, whose limit is the ceiling less today's spend (rounded down to the
    cent): recorded spend equals what the provider billed both keys, and the keys together allow no more than the
    ceiling today."""

    monkeypatch.setattr(credit, "RECHECK_GAP_S", 0.2)
    async with capped_engine(tmp_path, nats_server.url) as (fo, bus, engine):
        state = engine.state
        (old,) = fo.by_name(f"swarm-tui {engine.host}")
        for i in range(5):
            j = job(i)
            await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
        await until(lambda: len(state.results) == 5 and state.spend.entries == 5, 15, "five results")

        def today() -> Any:
            return dict(usable(engine.info().get("spend")) or {}).get("today_usd")

        await until(lambda: today() == pytest.approx(0.001), 5, "the ledger")
        old["disabled"] = True  # by hand, on openrouter.ai
        j = job(7)
        await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
        await until(lambda: j.id in state.results and state.spend.entries == 6, 15, "the job done, new key")
        assert state.results[j.id].state == "done"
        _, new = fo.by_name(old["name"])
        assert new["limit"] == 0.04 and not new["disabled"]  # $0.05 less $0.001 spent, rounded down
        assert state.today_spend() == pytest.approx(fo.billed)
        assert fo.billed == pytest.approx(old["usage_daily"] + new["usage_daily"]) and fo.billed <= 0.05
        assert old["usage_daily"] + new["limit"] <= 0.05  # the provider's stop is the day's ceiling, not twice


def test_the_limit_rounds_down_and_a_ceiling_under_a_cent_says_the_provider_refuses() -> None:
    from swarm_tui.engine.guards.provider_cap import cap_line, cents_down

    assert [cents_down(x) for x in (0.016, 0.29, 0.57, 0.004, 5.0)] == [0.01, 0.29, 0.57, 0.0, 5.0]
    assert cap_line("on", 0.0, "") == "provider cap $0.00/day: nothing left today, the provider refuses every call"
    assert cap_line("failed", 5.0, "x", capped=True, daily=False).startswith("provider cap $5.00 (not daily), ")

"""The provider-side cap against the stand-in of OpenRouter's management API (tests/support/fake_openrouter_keys.py):
the runtime key made, reused, kept in step with the ceiling, remade when lost; a failure is a state."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.guards.provider_cap import KEY_FILE, ProviderCap
from tests.support.env import make_config
from tests.support.fake_openrouter_keys import MANAGEMENT_KEY, FakeOpenRouterKeys

API_KEY = "sk-or-v1-plain-test-key-0123456789abcdef"


def cap_config(tmp_path: Path, fo: FakeOpenRouterKeys, **extra: str) -> Config:
    env = {"OPENROUTER_API_BASE": fo.base, "OPENROUTER_MANAGEMENT_KEY": MANAGEMENT_KEY} | extra
    return make_config(tmp_path, **env)


def new_cap(cfg: Config, ceiling: list[float], host: str = "h1") -> ProviderCap:
    return ProviderCap(cfg.openrouter, cfg.paths, ceiling=lambda: ceiling[0], host=host)


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
        assert [(m, s) for m, p, _, s in fo.log if p.startswith("/keys")] == [("POST", 201), ("PATCH", 200)]

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
        assert ("PATCH", f"/keys/{k['hash'][:6]}…", {"disabled": True}, 200) in masked(fo)
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
                "provider cap not set (POST /keys answered HTTP 500): the engine's own ceiling still holds"
            )
            fo.broken = None  # the API is back: the next sync sets the cap
            await cap.sync()
            assert cap.info()["state"] == "on" and cap.worker_key() == fo.by_name("swarm-tui h1")[0]["secret"]
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

"""Secrets: a recognisable fake OpenRouter key and NATS token go through start-up, errors, a crash, the
one-shot commands, the log file and screenshots, and are found nowhere."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Result
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import LocalLink
from tests.support.env import ROOT, base_env, make_config, run_cli, spawn_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import approve, events

CANARY = "sk-or-v1-CANARY0123456789abcdefCANARY0123456789abcdef0123"
TOKEN = "nats-tok-CANARY-77f3a9"
SECRETS = (CANARY, TOKEN, "CANARY")


def assert_clean(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    for s in SECRETS:
        assert s not in text, f"a secret ({s[:12]}...) leaked into {where}"


def assert_tree_clean(root: Path) -> int:
    """Every file under root (logs, the NATS store, discovery files) is free of the secrets; returns files read."""
    n = 0
    for p in root.rglob("*"):
        if p.is_file() and p.name != "nats-server.conf":  # the test server's own config holds its token
            data = p.read_bytes()
            for s in SECRETS:
                assert s.encode() not in data, f"a secret leaked into {p}"
            n += 1
    return n


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = EmbeddedServer(tmp_path / "store", extra_conf=f'authorization {{ token: "{TOKEN}" }}').run()
    yield srv
    srv.stop()


def _env(tmp_path: Path, srv: EmbeddedServer, base: str, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path,
        SWARM_NATS_URL=srv.url,
        SWARM_NATS_TOKEN=TOKEN,
        OPENROUTER_API_BASE=base,
        OPENROUTER_API_KEY=CANARY,
        SWARM_LOG_LEVEL="DEBUG",
        **extra,
    )


async def test_headless_start_provider_errors_and_commands_never_show_the_key(
    tmp_path: Path, token_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(
            Answer(status=401),
            Answer(status=500),
            Answer(status=500),
            Answer(status=500),
            Answer(tokens=5, error_after=2, error_code=400),
        )
        fo.default = Answer(tokens=3)
        env = _env(tmp_path, token_server, fo.base, SWARM_MAX_RETRIES="2")
        cfg = make_config(tmp_path, token_server.url, SWARM_NATS_TOKEN=TOKEN, OPENROUTER_API_KEY=CANARY)
        proc = await spawn_cli(env, "run", "--headless")
        bus = await Bus(cfg).connect()
        outputs: list[tuple[str, str]] = []
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"engine running" in line
            outputs.append(("start-up line", line.decode()))
            d = await approve(bus, 3)
            await until(lambda: len(fo.requests) >= 6, 30, "the calls with their errors")

            async def results() -> list[Result]:
                while True:
                    rs = [e for e in await events(cfg) if isinstance(e, Result) and e.decision_id == d.id]
                    if len(rs) == 3:
                        return rs
                    await asyncio.sleep(0.2)

            rs = await asyncio.wait_for(results(), 30)
            every = await events(cfg)
            outputs.append(("every event on the log", "\n".join(e.model_dump_json() for e in every)))
            for args in (
                ["status"],
                ["status", "--json"],
                ["config"],
                ["config", "--json"],
                ["doctor"],
                ["cancel", "--all"],
                ["submit", "a task"],
            ):
                res = await asyncio.to_thread(run_cli, args, env)
                outputs.append((" ".join(args), res.stdout + res.stderr))
            # a bad configuration value and a wrong NATS token: the errors name the key, never a secret
            bad = await asyncio.to_thread(run_cli, ["status"], {**env, "SWARM_SCALE": "many"})
            assert bad.returncode == 2 and "scale" in bad.stderr.lower()
            outputs.append(("bad config", bad.stdout + bad.stderr))
            wrong = await asyncio.to_thread(run_cli, ["status"], {**env, "SWARM_NATS_TOKEN": TOKEN + "x"})
            assert wrong.returncode != 0
            outputs.append(("wrong token", wrong.stdout + wrong.stderr))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            await bus.close()
    assert proc.returncode == 0, err[-2000:]
    outputs += [("engine stdout", out.decode()), ("engine stderr", err.decode())]
    reasons = sorted(r.reason for r in rs if r.state == "failed")
    assert any("401" in r for r in reasons) and any("mid-stream" in r for r in reasons), reasons
    assert sum(r["status"] == 500 for r in fo.requests) == 3
    for where, text in outputs:
        assert_clean(text, where)
    for r in rs:
        assert_clean(r.model_dump_json(), "a stored result")
    logs = list((tmp_path / "data").rglob("*.log*"))
    assert logs and any(p.stat().st_size > 0 for p in logs)
    n = assert_tree_clean(tmp_path / "data") + assert_tree_clean(tmp_path / "store")
    print(f"\nsecrets: {len(outputs)} outputs and {n} files (logs, NATS store) checked; failures {reasons}")


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.logs import setup_logging
    from swarm_tui.engine.paths import data_dir, log_path
    from swarm_tui.tui.app import SwarmApp
    from swarm_tui.tui.link import LocalLink

    cfg = load_config(None)
    setup_logging(log_path(data_dir(cfg.paths.data_dir)), "DEBUG", cfg.secrets)

    def boom(self):
        key = self.cfg.openrouter.api_key  # a local that holds the key: a traceback with locals shows it
        config = self.cfg
        raise RuntimeError("forced crash for the secrets test")

    SwarmApp.refresh_state = boom
    app = SwarmApp(LocalLink(assemble(cfg, Bus(cfg))))
    app.run(headless=True)
    print("RETURN", app.return_code, flush=True)
""")


def test_the_crash_screen_prints_no_locals_and_no_key(tmp_path: Path, token_server: EmbeddedServer) -> None:
    env = _env(tmp_path, token_server, "http://127.0.0.1:9/api/v1")
    res = subprocess.run([sys.executable, "-c", CRASH_SCRIPT], env=env, cwd=ROOT, capture_output=True, timeout=90)
    out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
    assert "forced crash for the secrets test" in out, out[-3000:]  # the crash really happened and was printed
    assert "RuntimeError" in out and "boom" in out
    assert "RETURN 1" in out
    assert_clean(out, "the crash output")
    assert "key =" not in out.replace("key = self.cfg", "")  # no locals panel
    logs = list((tmp_path / "data").rglob("*.log*"))
    assert any("the app crashed" in p.read_text(errors="replace") for p in logs)
    assert_tree_clean(tmp_path / "data")


async def test_tui_screens_and_screenshots_never_show_the_key(tmp_path: Path, token_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=401))
        fo.default = Answer(tokens=4)
        cfg = make_config(
            tmp_path, token_server.url, SWARM_NATS_TOKEN=TOKEN, OPENROUTER_API_KEY=CANARY, OPENROUTER_API_BASE=fo.base
        )
        engine = assemble(cfg, Bus(cfg), conductor=False)
        app = SwarmApp(LocalLink(engine), refresh_ms=20)
        shots: list[str] = []
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.ready, 30, "engine ready")
            d = await approve(engine.bus, 2)
            await until(lambda: len(engine.state.results) == 2, 30, "two results")
            await pilot.pause(0.3)
            shots.append(app.export_screenshot())
            for key in ("question_mark", "escape", "tab", "tab", "tab"):
                await pilot.press(key)
                await pilot.pause(0.1)
                shots.append(app.export_screenshot())
            await pilot.press("q")
            await pilot.pause(0.1)
            shots.append(app.export_screenshot())
        states = sorted(r.state for r in engine.state.results.values() if r.decision_id == d.id)
    assert states == ["done", "failed"]
    for i, svg in enumerate(shots):
        assert "<svg" in svg
        assert_clean(svg, f"screenshot {i}")
    assert_clean(repr(app.info), "the app's info")

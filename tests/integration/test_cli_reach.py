"""A one-shot command next to a running engine, with real processes: `submit` in a second terminal while only
`swarm-tui --demo` (here `run --headless --demo`) runs says where the task went and how to reach the demo."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.support.env import base_env, run_cli, spawn_cli


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
    return proc.returncode or 0


def _tasks(env: dict[str, str], *flags: str) -> dict[str, dict[str, object]]:
    res = run_cli(["status", "--json", *flags], env)
    assert res.returncode == 0, res.stderr
    return {t["id"]: t for t in json.loads(res.stdout)["tasks"]}


async def test_submit_beside_a_running_demo_says_where_the_task_went(tmp_path: Path) -> None:
    env = base_env(tmp_path)  # embedded NATS per store: the demo's under <data>/demo, the real one in <data>
    proc = await spawn_cli(env, "run", "--headless", "--demo")
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        assert b"DEMO" in line, line
        res = await asyncio.to_thread(run_cli, ["submit", "x"], env)
        assert res.returncode == 0, res.stderr
        tid = res.stdout.strip()
        assert tid.startswith("t-") and "\n" not in tid  # stdout stays the id alone, for scripts
        note = res.stderr.strip()
        assert note.count("\n") == 0, note  # one line
        assert f"no engine is running on {tmp_path / 'data'}" in note, note  # where the task went
        assert "a demo engine is running: add --demo to reach it" in note, note
        # it is where the line says: in the real store, not in the demo's
        assert tid in await asyncio.to_thread(_tasks, env)
        assert tid not in await asyncio.to_thread(_tasks, env, "--demo")
        # with --demo the running demo engine takes it, and nothing more is said
        res = await asyncio.to_thread(run_cli, ["submit", "--demo", "y"], env)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert res.stdout.strip() in await asyncio.to_thread(_tasks, env, "--demo")
        # status and a control verb on the real store say where the running engine is, in their one line
        res = await asyncio.to_thread(run_cli, ["status"], env)
        assert res.returncode == 0, res.stderr
        engine_line = next(ln for ln in res.stdout.splitlines() if ln.startswith("engine: "))
        assert "not running" in engine_line and "a demo engine is running: add --demo" in engine_line, engine_line
        res = await asyncio.to_thread(run_cli, ["pause"], env)
        assert res.returncode == 0 and res.stdout.count("\n") == 1, res.stdout
        assert "no engine running here" in res.stdout and "add --demo to reach it" in res.stdout, res.stdout
        res = await asyncio.to_thread(run_cli, ["status", "--demo"], env)
        assert "engine: running" in res.stdout and "add --demo" not in res.stdout, res.stdout
    finally:
        assert await _stop(proc) == 0


async def test_submit_beside_a_running_real_engine_with_demo_says_drop_it(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    proc = await spawn_cli(env, "run", "--headless")
    try:
        await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        res = await asyncio.to_thread(run_cli, ["submit", "--demo", "x"], env)
        assert res.returncode == 0, res.stderr
        note = res.stderr.strip()
        assert f"no engine is running on {tmp_path / 'data' / 'demo'}" in note, note
        assert "drop --demo to reach it" in note and note.count("\n") == 0, note
        res = await asyncio.to_thread(run_cli, ["submit", "z"], env)  # the running engine: nothing to say
        assert res.returncode == 0 and res.stderr == "", res.stderr
    finally:
        assert await _stop(proc) == 0


def test_submit_with_no_engine_anywhere_says_the_task_waits(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    res = run_cli(["submit", "x"], env)
    assert res.returncode == 0, res.stderr
    note = res.stderr.strip()
    assert note.startswith("swarm-tui: no engine is running on") and "waits there" in note, note
    assert "demo" not in note and note.count("\n") == 0, note

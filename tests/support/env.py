"""The app's environment in tests: nothing of the user's (config, keys, NATS), and the CLI run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from swarm_tui.engine.config.load import Config, load_config

ROOT = Path(__file__).resolve().parent.parent.parent


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for the app that reads nothing of the user's (no config, no keys, no default NATS)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OPENROUTER_", "OLLAMA_", "XDG_", "OTEL_"))
    }
    # a terminal's size comes from its pty, never the test process's environment: a pytest-xdist worker's holds
    # COLUMNS=80 LINES=24, which shutil (so Textual) reads before the pty, and the 120x36 app drew at 80x24
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    env.update(
        {
            "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
            "SWARM_DATA_DIR": str(tmp_path / "data"),
            "SWARM_NATS_PROBE_DEFAULT": "0",
            "OLLAMA_HOST": "http://127.0.0.1:9",  # nothing listens on the discard port
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def make_config(tmp_path: Path, nats_url: str = "", **extra: str) -> Config:
    env = base_env(tmp_path, **extra)
    if nats_url:
        env["SWARM_NATS_URL"] = nats_url
    return load_config(None, env)


def run_cli(
    args: list[str], env: dict[str, str], *, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "swarm_tui", *args], env=env, cwd=ROOT, input=input, capture_output=True, timeout=timeout
    )
    return subprocess.CompletedProcess(
        res.args, res.returncode, res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    )


async def spawn_cli(
    env: dict[str, str], *args: str, stderr: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """``swarm-tui ARGS`` started as a user starts it, its output piped (``stderr=STDOUT``: both in one)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm_tui",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )

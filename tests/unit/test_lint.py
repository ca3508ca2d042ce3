"""ruff (lint and format) and mypy over the package and the tests, as part of the one test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.env import ROOT

BIN = Path(sys.executable).parent


def test_ruff() -> None:
    res = subprocess.run(
        [str(BIN / "ruff"), "check", "swarm_tui", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout[-3000:]


def test_ruff_format() -> None:
    res = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "swarm_tui", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout[-3000:]


def test_mypy() -> None:
    res = subprocess.run([str(BIN / "mypy"), "swarm_tui"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]

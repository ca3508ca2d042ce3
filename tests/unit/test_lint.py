"""ruff (lint and format), mypy and the import-linter contracts (pyproject.toml), as part of the one test command."""

from __future__ import annotations

import re
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
    """Strict (pyproject.toml) over the package, the tests and the benchmarks, as make check and pre-commit."""
    res = subprocess.run(
        [str(BIN / "mypy"), "swarm_tui", "tests", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-3000:]


def test_import_contracts() -> None:
    """The engine stays headless and layered (the contracts in pyproject.toml). No cache: nothing written to the
    checkout."""
    lint_imports = BIN / "lint-imports"
    # import-linter is in the test extra, like ruff and mypy: missing means a broken setup, not a skip
    assert lint_imports.exists(), "lint-imports is not installed: pip install -e '.[test]'"
    res = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    # Every contract ran (headless engine, engine layers, and the layers inside projection, config and attention):
    # a config that loses one fails here, not silently.
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", res.stdout)
    assert kept and int(kept.group(1)) >= 5, res.stdout[-3000:]

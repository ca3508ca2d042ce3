"""`swarm-tui --demo doctor` checks the demo's setup (its store, the built-in endpoint) and needs no key; without
--demo a missing key still fails the check, and says to try --demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.env import base_env, run_cli


@pytest.mark.parametrize("args", [["--demo", "doctor"], ["doctor", "--demo"]], ids=" ".join)
def test_doctor_with_demo_checks_the_demo_and_needs_no_key(tmp_path: Path, args: list[str]) -> None:
    res = run_cli(args, base_env(tmp_path))  # no OPENROUTER_API_KEY
    assert res.returncode == 0, res.stdout + res.stderr
    lines = {ln[5:].split()[0]: ln for ln in res.stdout.splitlines()}
    assert lines["demo"].startswith("ok ") and "no key needed" in lines["demo"], lines["demo"]
    assert lines["openrouter"].startswith("ok ") and "not used with --demo" in lines["openrouter"]
    assert str(tmp_path / "data" / "demo") in lines["nats"], lines["nats"]  # the demo's own store
    assert "FAIL" not in res.stdout and res.stderr == ""


def test_doctor_without_demo_still_fails_on_a_missing_key(tmp_path: Path) -> None:
    res = run_cli(["doctor"], base_env(tmp_path))
    assert res.returncode == 1
    line = next(ln for ln in res.stdout.splitlines() if " openrouter " in ln)
    assert line.startswith("FAIL") and "try --demo" in line, line
    assert " demo " not in res.stdout

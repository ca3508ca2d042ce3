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


def test_init_local_writes_a_local_config_and_doctor_needs_no_key_then(tmp_path: Path) -> None:
    """Issue 28: `init --local` writes a fully local config (refusing to overwrite it without --force, saying
    where it wrote); with it and no key at all, doctor's openrouter check is fine."""
    env = base_env(tmp_path)  # no OPENROUTER_API_KEY
    where = tmp_path / "xdg-config" / "swarm-tui" / "config.toml"
    res = run_cli(["init", "--local"], env)
    assert res.returncode == 0 and str(where) in res.stdout and res.stderr == "", res.stdout + res.stderr
    text = where.read_text()
    assert 'model = "gemma2:2b"' in text and "ollama pull qwen2.5:0.5b" in text and "headroom_mb = 1536" in text
    again = run_cli(["init", "--local"], env)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "--force" in again.stderr, again.stderr
    assert where.read_text() == text
    assert run_cli(["init", "--local", "--force"], env).returncode == 0
    bare = run_cli(["init"], env)
    assert bare.returncode == 2 and "init --local" in bare.stderr and "Traceback" not in bare.stderr
    cfg = run_cli(["config", "--json"], env)
    assert cfg.returncode == 0 and "openrouter/" not in cfg.stdout.split('"roles', 1)[-1], cfg.stdout
    res = run_cli(["doctor"], env)
    line = next(ln for ln in res.stdout.splitlines() if " openrouter " in ln)
    assert line.startswith("ok ") and "every role is local" in line, line
    assert res.returncode == 0, res.stdout

"""A reader that leaves early (`swarm-tui status | head -1`) ends the command quietly, through a real pipe: no
"internal error", no traceback, exit 141 (128 + SIGPIPE, as cat and git) or 0 when all was written in time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swarm_tui.engine.errors import EXIT_PIPE
from tests.support.env import ROOT, base_env

COMMANDS = [["config"], ["config", "--json"], ["status"], ["status", "--json"], ["--demo", "status"]]


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "swarm_tui", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_reader_gone_before_the_first_line_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    proc = _spawn(args, base_env(tmp_path))
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader has left before a byte was written: every write meets a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait(60) == EXIT_PIPE, err
    assert err == ""


@pytest.mark.parametrize("args", [["config"], ["status"]], ids=" ".join)
def test_head_one_reads_its_line_and_the_command_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    proc = _spawn(args, base_env(tmp_path))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # what `| head -1` does: one line, then close
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) in (0, EXIT_PIPE), err
    assert first.strip() and err == ""

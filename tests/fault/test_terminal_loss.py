"""The real app in a pty: when its terminal goes away it stops cleanly (engine, bus, embedded nats-server)
instead of spinning on a dead stdin and blocking on a dead stdout (it used to need kill -9)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil
import pytest

from tests.support.env import ROOT

ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OPENROUTER_"))}
    env.update(
        TERM="xterm-256color",
        XDG_CONFIG_HOME=str(tmp_path / "c"),
        XDG_DATA_HOME=str(tmp_path / "d"),
        XDG_STATE_HOME=str(tmp_path / "s"),
        XDG_CACHE_HOME=str(tmp_path / "k"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm_tui", "--demo"],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the header says "bus connected"
        if select.select([master], [], [], 0.1)[0]:
            try:
                seen = (seen + os.read(master, 65536))[-200000:]
            except OSError:
                break
        if b"bus connected" in ANSI.sub(b"", seen):
            break
    assert b"bus connected" in ANSI.sub(b"", seen), "the app did not start"
    return proc, master


@pytest.mark.parametrize("how", ["pty closed", "SIGHUP"])
def test_the_app_stops_cleanly_when_its_terminal_goes_away(tmp_path: Path, how: str) -> None:
    proc, master = _start(tmp_path)
    kids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    try:
        assert kids, "the embedded nats-server should be a child"
        if how == "SIGHUP":
            os.kill(proc.pid, signal.SIGHUP)
        os.close(master)  # the terminal is gone (in both cases: an ssh drop closes it and sends SIGHUP)
        master = -1
        assert proc.wait(15) == 0
        time.sleep(0.3)
        assert not [k for k in kids if psutil.pid_exists(k) and psutil.Process(k).status() != "zombie"]
        log = next((tmp_path / "d").rglob("swarm-tui.log")).read_text()
        assert "the engine stopped" in log
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:
            if psutil.pid_exists(k):
                os.kill(k, signal.SIGKILL)

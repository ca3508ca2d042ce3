"""The real app (``swarm-tui --demo``) in a pty, its raw output read back: what a terminal receives."""

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
from collections.abc import Callable
from pathlib import Path

import pyte

from tests.support.env import ROOT, base_env

# escape sequences (CSI, OSC, charset and keypad selections), to read the text a terminal shows
ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78]")


class DemoPty:
    def __init__(
        self, tmp_path: Path, *, size: tuple[int, int] = (120, 36), args: tuple[str, ...] = ("--demo",), **env: str
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.env = base_env(tmp_path, TERM="xterm-256color", **env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm_tui", *args],
            cwd=ROOT,
            env=self.env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.out = b""
        # a terminal emulator fed the same bytes: a frame writes only the cells that changed, so a word on screen
        # need not be contiguous in the bytes (the header's "next beat" may reuse cells of what it replaced)
        self.term = pyte.Screen(*size)
        self._feed = pyte.ByteStream(self.term)

    def read_until(self, pred: Callable[[bytes], bool], timeout: float) -> bool:
        """Read until ``pred(everything read so far)`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return False
                self.out += chunk
                self._feed.feed(chunk)
            if pred(self.out):
                return True
        return False

    def facts(self) -> str:
        """What the app was started with, for a failure's message: the pty's size and the size-related env."""
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(self.master, termios.TIOCGWINSZ, b"\0" * 8))[:2]
        env = {k: v for k, v in self.env.items() if k in ("COLUMNS", "LINES", "TERM") or k.startswith("TEXTUAL")}
        try:
            with open(f"/proc/{self.proc.pid}/environ", "rb") as f:
                child = [
                    e.decode(errors="replace") for e in f.read().split(b"\0") if e.startswith((b"COLUMNS", b"LINES"))
                ]
        except OSError:
            child = []
        return f"pty {cols}x{rows}, env {env}, child {child}, exit {self.proc.poll()}"

    def screen(self) -> str:
        """The terminal's screen now, one line per row."""
        return "\n".join(self.term.display)

    def read_screen_until(self, pred: Callable[[str], bool], timeout: float) -> bool:
        """Read until ``pred(the screen now)`` holds (True) or ``timeout`` passes (False)."""
        return self.read_until(lambda _: pred(self.screen()), timeout)

    def stop(self) -> None:
        """``q``, as a person quits; then SIGTERM, then SIGKILL, each after a wait."""
        if self.proc.poll() is None:
            os.write(self.master, b"q")
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        os.close(self.master)

"""The needs-you alert as a terminal receives it: the real app (``swarm-tui --demo``) in a pty, a task submitted
from a second process, and the raw bytes read back. One decision waiting = one bell and one OSC 9 and one OSC
777, however many frames follow; ``!`` marks it seen; the next decision rings again. Inside tmux (``TMUX`` set,
passthrough off) the bell comes alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.env import run_cli
from tests.support.pty import DemoPty

OSC9 = b"\x1b]9;swarm-tui: "
OSC777 = b"\x1b]777;notify;swarm-tui;"
ALERT = b"\x07" + OSC9  # the bell, then the notification: what one transition writes


def _submit(pty: DemoPty, text: str) -> None:
    res = run_cli(["submit", "--demo", text], pty.env)
    assert res.returncode == 0, res.stderr


@pytest.mark.fault
def test_one_bell_and_one_notification_per_transition(tmp_path: Path) -> None:
    pty = DemoPty(tmp_path)
    try:
        assert pty.read_until(lambda b: b"bus connected" in b, 30), "the app did not start"
        pty.read_until(lambda b: False, 1.5)  # settle: the baseline look happens when the engine is ready
        assert ALERT not in pty.out
        _submit(pty, "summarise the JetStream release notes")
        assert pty.read_until(lambda b: ALERT in b, 30), "no alert for the decision"
        pty.read_until(lambda b: False, 3)  # more frames (countdowns, info polls): no second alert
        assert pty.out.count(ALERT) == 1 and pty.out.count(OSC9) == 1 and pty.out.count(OSC777) == 1
        os.write(pty.master, b"!")  # go there; seen
        pty.read_until(lambda b: False, 1.5)
        _submit(pty, "draft the tmux section of the README")
        assert pty.read_until(lambda b: b.count(ALERT) == 2, 30), "no alert for the decision after seen"
        assert pty.out.count(OSC777) == 2
    finally:
        pty.stop()


@pytest.mark.fault
def test_inside_tmux_without_passthrough_the_bell_comes_alone(tmp_path: Path) -> None:
    # TMUX set but no tmux server to ask: passthrough counts as not allowed, so no OSC may leak into the pane
    pty = DemoPty(tmp_path, TMUX="/nonexistent/tmux-sock,1,0", PATH=f"{tmp_path}:{os.environ['PATH']}")
    try:
        assert pty.read_until(lambda b: b"bus connected" in b, 30), "the app did not start"
        pty.read_until(lambda b: False, 1.5)
        _submit(pty, "compare three embedding models")
        assert pty.read_until(lambda b: b"needs you" in b, 30), "no badge for the decision"
        pty.read_until(lambda b: False, 1)
        assert b"\x07" in pty.out  # the bell
        assert b"\x1b]9;" not in pty.out and b"\x1b]777;" not in pty.out and b"\x1bPtmux;" not in pty.out
    finally:
        pty.stop()

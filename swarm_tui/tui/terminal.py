"""The terminal side of the App's way out: which driver, and the stop signals (a crash's traceback is the
adapter's, ``driver.CrashSafeApp``).

The App decides what happens (its one ``shutdown`` path); these helpers are the mechanics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def real_terminal_driver() -> Any:
    """On Linux, a driver that notices when the terminal goes away (see driver.py); else Textual's choice."""
    if sys.platform.startswith("linux"):
        from swarm_tui.tui.driver import SafeLinuxDriver

        return SafeLinuxDriver
    return None


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGHUP call ``stop`` on the running loop (the terminal is restored by Textual on exit).

    Plain ``signal.signal`` handlers, not ``loop.add_signal_handler``: the loop's wakeup fd can be taken over by
    other code, and then loop-level handlers never run (seen here).
    """
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        loop.call_soon_threadsafe(stop)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)

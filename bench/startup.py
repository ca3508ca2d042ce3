"""Figures 1 and 2 (idle part): start-up to the first full frame and to a connected bus, and what the terminal
receives in the seconds after the first frame; idle RSS and CPU."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil

from .common import Figure, app_env, cpu_seconds, cpu_seconds_tree, proc_tree_rss_mb
from .harness import BUS_UP, Headless, PtyApp, settle_cpu

FOOTER = r"Approve"  # the footer's first key description, on the last row: drawn with the first complete frame

AFTER_FRAME_S = 15.0  # the terminal's bytes are counted this long after the first frame

# Shared libraries that only litellm's import brings in: their presence in the process map means it was loaded.
LITELLM_MARKERS = ("_tiktoken", "tokenizers", "jiter")


def litellm_loaded(pid: int) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return any(m in maps for m in LITELLM_MARKERS)


def startup(runs: int, figs: dict[str, Figure], after_s: float = AFTER_FRAME_S) -> None:
    """`swarm-tui --demo` in a 120x36 pty (embedded nats-server included) and `run --headless --demo`.

    The app runs on for ``after_s`` after its first frame: the bytes written then (the bus connecting, the log
    folding in, the first engine info, the header's countdown) are what a slow link pays for the first seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-start-") as d:
        env = app_env(Path(d))
        for i in range(runs + 1):  # run 0 warms the data dir (streams created) and the bytecode caches
            app = PtyApp(["--demo"], env, 120, 36)
            try:
                app.expect("frame", FOOTER)
                app.expect("bus", BUS_UP)
                frame = app.wait("frame")
                bus = app.wait("bus")
                if i:
                    time.sleep(max(0.0, app.t0 + frame + after_s - time.monotonic()))
                    first = app.bytes_at["frame"]
                    figs["start_frame_kb"].samples.append(first / 1000)
                    figs["start_after_kb"].samples.append((app.bytes - first) / 1000)
            finally:
                app.stop()
            if i:
                figs["start_frame"].samples.append(frame)
                figs["start_bus_tui"].samples.append(bus)
        for i in range(runs + 1):
            h = Headless(env, ("--demo",))
            h.stop()
            if i:
                figs["start_bus"].samples.append(h.ready_s)


def idle(runs: int, idle_s: float, figs: dict[str, Figure]) -> None:
    """The app with no key (the pool takes no jobs, so litellm is never imported), then the demo app."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as d:
        env = app_env(Path(d))
        for _ in range(runs):
            app = PtyApp([], env, 120, 36)
            try:
                app.expect("bus", BUS_UP)
                app.wait("bus")
                settle_cpu(app.pid, timeout=5)
                time.sleep(1.0)
                own, kids = proc_tree_rss_mb(app.pid)
                if litellm_loaded(app.pid):
                    figs["rss_idle"].note = "litellm WAS loaded at idle"
                figs["rss_idle"].samples.append(own)
                figs["rss_idle_nats"].samples.append(kids)
                c0, t0 = cpu_seconds(app.pid), time.monotonic()
                time.sleep(idle_s)
                figs["cpu_idle"].samples.append(100 * (cpu_seconds(app.pid) - c0) / (time.monotonic() - t0))
            finally:
                app.stop()
        for _ in range(runs):
            app = PtyApp(["--demo"], env, 120, 36)
            try:
                app.expect("bus", BUS_UP)
                app.wait("bus")
                time.sleep(1.0)
                settle_cpu(app.pid, timeout=15)
                if litellm_loaded(app.pid):
                    figs["rss_idle_demo"].note = "litellm WAS loaded (the demo calls OpenRouter directly)"
                figs["rss_idle_demo"].samples.append(proc_tree_rss_mb(app.pid)[0])
                # the whole tree at rest with the bus up: CPU of every process, bytes written to the terminal
                c0, b0, t0 = cpu_seconds_tree(app.pid), app.bytes, time.monotonic()
                time.sleep(idle_s)
                took = time.monotonic() - t0
                figs["cpu_idle_tree"].samples.append(100 * (cpu_seconds_tree(app.pid) - c0) / took)
                figs["out_idle"].samples.append((app.bytes - b0) / took)
            finally:
                app.stop()


def children_alive(pid: int) -> int:
    try:
        return len(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return 0

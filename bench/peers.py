"""The peers row: swarm-tui beside other Textual apps, each installed in a venv of its own, measured the same way.

``python -m bench --peers`` (or ``python -m bench.peers``) installs the peers once under
``~/.cache/swarm-tui-bench/peers/<name>`` (pip, from the package index: nothing of the test suite needs them),
then for each app (toolong, the Textual demo), ``runs`` times in a 120x36 pty with a fresh HOME:

- **first settled frame**: process start to the last byte before the output pauses for ``QUIET_S`` (the same
  rule for every app: none of the peers has a marker we could wait for);
- **RSS idle**: every process of the app's tree one second later (swarm-tui: app + embedded nats-server);
- **idle CPU** of the whole tree and **idle output** to the terminal over ``idle_s``.

The medians go in a table of their own in docs/performance.md (between the ``peers`` markers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import ROOT, app_env, cpu_seconds_tree, proc_tree_rss_mb
from .harness import PtyApp

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "swarm-tui-bench" / "peers"
QUIET_S = 0.3
START, END = "<!-- peers -->", "<!-- /peers -->"


@dataclass
class Peer:
    name: str
    spec: str  # what pip installs ("" for swarm-tui itself)
    argv: list[str]  # relative to the venv's bin/ for a peer
    samples: dict[str, list[float]] = field(default_factory=dict)


def log_file(tmp: Path) -> Path:
    """A small log for toolong to open (it needs a file)."""
    p = tmp / "app.log"
    p.write_text(
        "".join(f"2026-12-03T10:{i // 60:02d}:{i % 60:02d} INFO request {i} served in 12 ms\n" for i in range(500))
    )
    return p


def ensure_venv(peer: Peer) -> Path:
    venv = CACHE / peer.name
    marker = venv / ".installed"
    if not marker.exists() or marker.read_text() != peer.spec:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", peer.spec], check=True)
        marker.write_text(peer.spec)
    return venv


def version_of(venv: Path, dist: str) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def settled(app: PtyApp, timeout: float = 20.0) -> float:
    """Seconds from start to the last byte before QUIET_S without output."""
    deadline = time.monotonic() + timeout
    last_bytes, last_change = app.bytes, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        if app.bytes != last_bytes:
            last_bytes, last_change = app.bytes, time.monotonic()
        elif last_bytes and time.monotonic() - last_change >= QUIET_S:
            return last_change - app.t0
    raise RuntimeError("the app never settled")


def measure(argv: list[str], env: dict[str, str], idle_s: float) -> dict[str, float]:
    app = PtyApp([], env, 120, 36, command=argv)
    try:
        frame = settled(app)
        time.sleep(1.0)
        if app.proc.poll() is not None:  # a crash is not a fast, small, quiet app
            raise RuntimeError(f"{argv[-1]} exited with {app.proc.returncode} before it could be measured")
        own, kids = proc_tree_rss_mb(app.pid)
        c0, b0, t0 = cpu_seconds_tree(app.pid), app.bytes, time.monotonic()
        time.sleep(idle_s)
        took = time.monotonic() - t0
        return {
            "frame": frame,
            "rss": own + kids,
            "cpu": 100 * (cpu_seconds_tree(app.pid) - c0) / took,
            "out": (app.bytes - b0) / took,
        }
    finally:
        app.stop()


def run_peers(runs: int, idle_s: float) -> str:
    """The peers table (markdown, between the markers)."""
    peers = [
        Peer("swarm-tui --demo", "", [sys.executable, "-m", "swarm_tui", "--demo"]),
        Peer("toolong", "toolong", ["tl"]),
        # posting 2.11.1 (the third peer) dies at start with SIGSEGV (exit 139) on this machine, in a pty
        # or under `script`: Textual's own demo stands in as the baseline of what Textual itself costs
        Peer("textual demo", "textual", ["python", "-m", "textual"]),
    ]
    versions = {"swarm-tui --demo": "this tree"}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as d:
        tmp = Path(d)
        log = log_file(tmp)
        for p in peers[1:]:
            venv = ensure_venv(p)
            p.argv = [str(venv / "bin" / p.argv[0]), *p.argv[1:]]
            versions[p.name] = version_of(venv, p.spec)
        peers[1].argv.append(str(log))
        for i in range(runs):  # interleaved: each round measures every app once
            for p in peers:
                home = tmp / f"home-{i}-{p.name.replace(' ', '-')}"
                home.mkdir()
                env = app_env(home) | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
                env |= {"XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache")}
                if p.spec:  # a peer runs from its own venv, with nothing of this tree on its path
                    env.pop("PYTHONPATH", None)
                for k, v in measure(p.argv, env, idle_s).items():
                    p.samples.setdefault(k, []).append(v)
    rows = [
        START,
        "",
        f"Peers (`python -m bench --peers`): {runs} interleaved runs each, 120x36 pty, a fresh HOME; medians. "
        f"First settled frame: start to the last byte before {QUIET_S:g} s of quiet (the same rule for every app); "
        f"RSS and CPU of the whole process tree; idle over {idle_s:g} s.",
        "",
        "| app | version | first settled frame | RSS idle (tree) | idle CPU (tree, % core) | idle output |",
        "|---|---|---|---|---|---|",
    ]
    for p in peers:

        def med(k: str, p: Peer = p) -> float:
            return statistics.median(p.samples[k])

        rows.append(
            f"| {p.name} | {versions[p.name]} | {med('frame'):.3f} s | {med('rss'):.0f} MB | {med('cpu'):.2f} "
            f"| {med('out'):.0f} B/s |"
        )
    rows += ["", END]
    return "\n".join(rows)


def splice(report: str, table: str) -> str:
    """The report with its peers table replaced (or added at the end)."""
    if START in report and END in report:
        head, rest = report.split(START, 1)
        return head + table + rest.split(END, 1)[1]
    return report.rstrip("\n") + "\n\n" + table + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    a = ap.parse_args(argv)
    table = run_peers(a.runs, a.idle_s)
    out = Path(a.out)
    out.write_text(splice(out.read_text() if out.exists() else "", table))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: every benchmark, then docs/performance.md (``--out`` elsewhere, ``--quick`` for CI).

Each figure is measured several times in one invocation (the machine is shared and noisy: compare ratios
measured in the same run); the table gives the median and the spread (min – max) with the number of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .common import ROOT, Figure, as_json, machine


@dataclass
class Setting:
    runs: int = 3
    slow_runs: int = 2  # the stream load and the naive loop
    idle_s: float = 30.0
    stream_s: float = 8.0
    configs: tuple[tuple[int, float], ...] = (
        (2, 100),
        (10, 50),
        (10, 100),
        (25, 50),
        (25, 100),
        (50, 50),
        (50, 100),
    )
    n_jobs: int = 10
    job_tokens: int = 100
    job_tps: float = 50.0
    control_runs: int = 5
    cluster_jobs: int = 100


QUICK = Setting(
    runs=1,
    slow_runs=1,
    idle_s=2.0,
    stream_s=2.0,
    configs=((3, 50),),
    n_jobs=3,
    job_tokens=20,
    job_tps=50.0,
    control_runs=1,
    cluster_jobs=30,
)


def figures(s: Setting) -> list[Figure]:
    big = max(s.configs)
    f = [
        Figure(
            "start_frame", "1. start-up: process start → first full frame (`--demo`, 120x36 pty)", "s", "≤ 0.45 s", 0.45
        ),
        Figure("start_bus_tui", "1. start-up: process start → header shows `bus connected` (TUI, embedded NATS)", "s"),
        Figure("start_frame_kb", "1. start-up: the first full frame, bytes to the terminal (`--demo`, 120x36)", "KB"),
        Figure(
            "start_after_kb",
            "1. start-up: output to the terminal in the 15 s after the first frame (`--demo`, 120x36)",
            "KB",
            "≤ 5 KB",
            5.0,
        ),
        Figure(
            "start_bus",
            "1. start-up: process start → engine running on a connected bus (`run --headless --demo`, embedded NATS)",
            "s",
        ),
        Figure("rss_idle", "2. RSS idle, litellm not imported (app process)", "MB", "< 80 MB", 80),
        Figure("rss_idle_nats", "2. RSS idle: the embedded nats-server child", "MB"),
        Figure("rss_idle_demo", "2. RSS idle `--demo` (app process; the demo calls OpenRouter without litellm)", "MB"),
        Figure(
            "rss_stream",
            f"2. RSS with {big[0]} workers streaming at {big[1]:g} tok/s (peak, app process)",
            "MB",
            "< 200 MB",
            200,
        ),
        Figure("cpu_idle", f"2. idle CPU over {s.idle_s:g} s (app process)", "% core", "< 1%", 1.0),
        Figure(
            "cpu_idle_tree",
            f"2. idle CPU over {s.idle_s:g} s, `--demo` with the bus up (app + engine + nats-server)",
            "% core",
            "≤ 0.5%",
            0.5,
        ),
        Figure(
            "out_idle",
            f"2. idle output to the terminal over {s.idle_s:g} s (`--demo`, 120x36)",
            "B/s",
            "≤ 200 B/s",
            200,
        ),
    ]
    small = min(s.configs)
    if small != big:
        f.append(
            Figure(
                "rss_stream_small",
                f"2. RSS with {small[0]} workers streaming at {small[1]:g} tok/s (peak, app process)",
                "MB",
                "< 120 MB",
                120,
            )
        )
    for n, tps in s.configs:
        key = f"{n}x{int(tps)}"
        is_big = (n, tps) == big
        f += [
            Figure(f"lat50_{key}", f"3. {n} workers × {tps:g} tok/s: chunk-to-screen p50", "ms"),
            Figure(
                f"lat99_{key}",
                f"3. {n} workers × {tps:g} tok/s: chunk-to-screen p99",
                "ms",
                "< 100 ms" if is_big else "",
                100 if is_big else None,
            ),
            Figure(
                f"cpu_{key}",
                f"3. {n} workers × {tps:g} tok/s: app CPU",
                "% core",
                "< 60%" if is_big else "",
                60 if is_big else None,
            ),
        ]
    stream = f"{s.job_tokens} tokens at {s.job_tps:g} tok/s"
    f += [
        Figure("wall_one", f"4. one job ({stream}): approve → result", "s"),
        Figure("wall_pool", f"4. {s.n_jobs} jobs through the pool: approve → last result", "s"),
        Figure("wall_ratio", f"4. swarm wall time / ideal (one job's time), {s.n_jobs} jobs", "x", "≤ 1.15x", 1.15),
        Figure("wall_naive", f"4. naive loop (one litellm call after another), {s.n_jobs} jobs", "s"),
        Figure("naive_ratio", "4. naive loop / swarm wall time", "x"),
        Figure("ctl_approve", "5. approve → first request on the wire", "ms", "< 50 ms", 50),
        Figure("ctl_scale", "5. rescale 2 → 10: request → 10 streams open at the endpoint", "ms"),
        Figure("ctl_cancel", "5. cancel → the endpoint sees the stream closed", "ms", "< 50 ms", 50),
        Figure(
            "recovery", "6. nats-server killed (-9) and restarted: restart → next chunk on the bus", "s", "< 2 s", 2.0
        ),
    ]
    from .cluster import figures as cluster_figures

    return f + cluster_figures(s.cluster_jobs)


def report(figs: list[Figure], s: Setting, quick: bool, took: float, notes: dict[str, str]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance",
        "",
        f"Measured {now} on {machine()}; `python -m bench{' --quick' if quick else ''}` took {took:.0f} s.",
        "The machine is shared: absolute times are noisy, ratios measured in the same run are the reliable part.",
        f"Runs per figure: {s.runs} (stream load and the naive loop: {s.slow_runs}; control latency: "
        f"{s.control_runs} each, scale {max(1, s.control_runs // 2)}). Spread is min – max over the runs.",
        "",
        "| figure | median | spread | runs | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f.row() for f in figs]
    missing = [f for f in figs if f.note]
    if missing:
        lines += ["", "Notes from the run:", ""] + [f"- {f.key}: {f.note}" for f in missing]
    lines += ["", "<!-- analysis -->"]
    if notes.get("analysis"):
        lines += ["", notes["analysis"].strip()]
    return "\n".join(lines) + "\n"


async def run_all(s: Setting, figs: dict[str, Figure], only: set[str] | None) -> None:
    from . import startup, stream, swarm

    def want(name: str) -> bool:
        return only is None or name in only

    if want("startup"):
        print("start-up…", flush=True)
        await asyncio.to_thread(startup.startup, s.runs, figs)
    if want("idle"):
        print("idle footprint…", flush=True)
        await asyncio.to_thread(startup.idle, s.runs, s.idle_s, figs)
    if want("stream"):
        print("stream load…", flush=True)
        await stream.stream_load(s.slow_runs, list(s.configs), s.stream_s, figs)
    if want("swarm"):
        print("swarm wall time and control latency…", flush=True)
        await swarm.swarm_figures(s.runs, s.n_jobs, s.job_tokens, s.job_tps, s.slow_runs, s.control_runs, figs)
    if want("recovery"):
        print("recovery…", flush=True)
        await swarm.recovery(s.runs, figs)
    if want("cluster"):
        from .cluster import cluster_figures

        print("cluster…", flush=True)
        await cluster_figures(s.runs, figs, s.cluster_jobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tiny setting (CI): 1 run, few workers, short streams")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="the report (markdown)")
    ap.add_argument("--json", default="", help="also write the raw samples here")
    ap.add_argument("--only", default="", help="comma list: startup,idle,stream,swarm,recovery,cluster,history")
    ap.add_argument(
        "--keep", default="", help="raw samples (--json) of an earlier run: figures this run did not measure take them"
    )
    ap.add_argument(
        "--analysis",
        default=str(ROOT / "bench" / "analysis.md"),
        help="text appended under the table (the explanations of missed targets)",
    )
    ap.add_argument(
        "--configs",
        default="",
        help="stream load settings to run, e.g. 50x100,25x100 (workers x tokens/s; default: all six)",
    )
    ap.add_argument("--runs", type=int, default=0, help="runs per figure (default: 3, the slow ones 2)")
    ap.add_argument(
        "--peers",
        action="store_true",
        help="also measure peer Textual apps (toolong, posting), installed once in venvs of their own (bench/peers.py)",
    )
    a = ap.parse_args(argv)
    s = QUICK if a.quick else Setting()
    if a.configs:
        try:
            configs = tuple((int(n), float(t)) for n, t in (c.split("x") for c in a.configs.split(",")))
        except ValueError:
            ap.error("--configs: a comma list of NxR, e.g. 50x100,25x100")
        s = replace(s, configs=configs)
    if a.runs > 0:
        s = replace(s, runs=a.runs, slow_runs=a.runs, control_runs=a.runs)
    flist = figures(s)
    figs = {f.key: f for f in flist}
    t0 = time.monotonic()
    only = set(a.only.split(",")) if a.only else None
    if only == {"history"}:  # its own section of the report: the rest is left as it is
        from . import history

        print("history (100,000 events)…", flush=True)
        print(history.run(Path(a.out), 20_000 if a.quick else 100_000))
        return 0
    asyncio.run(run_all(s, figs, only))
    if a.keep:
        for old in json.loads(Path(a.keep).read_text()):
            f = figs.get(old["key"])
            if f is not None and not f.samples:
                f.samples = list(old["samples"])
    analysis = Path(a.analysis)
    notes = {"analysis": analysis.read_text() if analysis.exists() and not a.quick else ""}
    text = report(flist, s, a.quick, time.monotonic() - t0, notes)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    from . import peers

    old = Path(a.out).read_text() if Path(a.out).exists() else ""
    if old:  # keep the heartbeat table (python -m bench.heartbeat writes it)
        from .heartbeat import END, START, splice

        if START in old and END in old:
            text = splice(text, START + old.split(START, 1)[1].split(END, 1)[0] + END + "\n")
    if a.peers:
        print("peers…", flush=True)
        text = peers.splice(text, peers.run_peers(s.runs, s.idle_s))
    elif peers.START in old and peers.END in old:  # keep the last peers table
        text = peers.splice(text, peers.START + old.split(peers.START, 1)[1].split(peers.END, 1)[0] + peers.END)
    from . import history

    if history.START in old and history.END in old:  # keep the last history table (--only history writes it)
        text = history.splice(
            text, history.START + old.split(history.START, 1)[1].split(history.END, 1)[0] + history.END
        )
    Path(a.out).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps(as_json(flist), indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

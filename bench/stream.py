"""Figure 3 (and the streaming part of 2): N workers streaming at R tokens/s through the real engine and TUI.

The app runs in a 160x48 pty (its output read all along, as a terminal would), with the bench's own NATS
server and the bench endpoint as OpenRouter. ``SWARM_BENCH_LATENCY_FILE`` makes the app record, for every
worker card it flushes, the worker's token count and the time after the screen refresh; the endpoint recorded
when it sent each token, so latency = render time - send time of the newest token on screen.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .common import Figure, cpu_seconds, percentile
from .harness import BUS_UP, Endpoint, Observer, PtyApp, nats, settle_cpu, swarm_env, until


async def one(
    n: int, tps: float, seconds: float, tmp: Path, ep: Endpoint, url: str, tag: str, profile: Path | None = None
) -> dict[str, Any]:
    lat_file = tmp / f"lat-{tag}.jsonl"
    env = swarm_env(tmp / tag, nats_url=url, base=ep.base, SWARM_BENCH_LATENCY_FILE=str(lat_file))
    tokens = int(tps * seconds)
    await ep.configure(tps=tps, tokens=tokens, first_delay=0)
    app = PtyApp([], env, 160, 48)
    obs = Observer(env)
    out: dict[str, Any] = {}
    try:
        app.expect("bus", BUS_UP)
        app.wait("bus", 30)
        await obs.start()
        await asyncio.to_thread(settle_cpu, app.pid, 0.15, 0.5, 15)  # litellm's warm-up import is done
        tags = [f"{tag}-{i}" for i in range(n)]
        d = await obs.decision(tags)

        async def all_open() -> bool:
            st = await ep.stats()
            return sum(1 for s in st["streams"] if s["tag"] in tags and s["t_end"] is None) >= n

        await until(all_open, 30, f"{n} streams open", every=0.05)
        t0 = time.monotonic()
        proc = psutil.Process(app.pid)
        await asyncio.sleep(min(1.0, seconds / 4))  # past the ramp
        c0, w0 = cpu_seconds(app.pid), time.monotonic()
        rss = []
        window = max(0.5, seconds - (time.monotonic() - t0) - 0.5)
        spy = None
        if profile is not None:  # py-spy (sampling, from outside) over the measured window
            spy = subprocess.Popen(  # noqa: ASYNC220
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(app.pid),
                    "-d",
                    str(int(window)),
                    "-r",
                    "200",
                    "--format",
                    "raw",
                    "-o",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        end = time.monotonic() + window
        while time.monotonic() < end:
            await asyncio.sleep(0.25)
            rss.append(proc.memory_info().rss / 2**20)
        out["cpu_pct"] = 100 * (cpu_seconds(app.pid) - c0) / (time.monotonic() - w0)
        out["rss_mb"] = max(rss) if rss else proc.memory_info().rss / 2**20
        if spy is not None:
            await asyncio.to_thread(spy.wait, 30)
        await until(lambda: obs.done(d) >= n, seconds + 30, f"{n} results", every=0.1)
        await asyncio.sleep(0.3)
        wmap = obs.tag_of_worker()
    finally:
        await obs.stop()
        app.stop()
    st = await ep.stats(sends=True)
    sends = {s["tag"]: s["sends"] for s in st["streams"] if s["tag"].startswith(tag + "-")}
    lats: list[float] = []
    mism = 0
    for line in lat_file.read_text().splitlines() if lat_file.exists() else []:
        wid, k, _sent_at, t_render = json.loads(line)
        sl = sends.get(wmap.get(wid, ""))
        if not sl or k < 1:
            continue
        if k > len(sl):
            mism += 1
            continue
        lats.append(1000 * (t_render - sl[k - 1]))
    out["p50"] = percentile(lats, 50)
    out["p99"] = percentile(lats, 99)
    out["samples"] = len(lats)
    out["mismatch"] = mism
    return out


async def stream_load(runs: int, configs: list[tuple[int, float]], seconds: float, figs: dict[str, Figure]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as d:
        tmp = Path(d)
        srv = nats(tmp / "nats")
        ep = Endpoint()
        try:
            for r in range(runs):
                for n, tps in configs:
                    key = f"{n}x{int(tps)}"
                    res = await one(n, tps, seconds, tmp, ep, srv.url, f"r{r}-{key}")
                    figs[f"lat50_{key}"].samples.append(res["p50"])
                    figs[f"lat99_{key}"].samples.append(res["p99"])
                    figs[f"cpu_{key}"].samples.append(res["cpu_pct"])
                    if (n, tps) == max(configs):
                        figs["rss_stream"].samples.append(res["rss_mb"])
                    elif (n, tps) == min(configs) and "rss_stream_small" in figs:
                        figs["rss_stream_small"].samples.append(res["rss_mb"])
                    if res["mismatch"]:
                        figs[f"lat99_{key}"].note = f"{res['mismatch']} samples beyond the stream's end"
                    await ep.reset()
        finally:
            await ep.close()
            ep.stop()
            srv.stop()


def summarize(profile: Path, top: int = 25) -> str:
    """Inclusive share of samples per package and per function, from py-spy's collapsed stacks."""
    from collections import Counter

    pkg: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        total += c
        frames = stack.split(";")
        seen_p, seen_f = set(), set()
        for f in frames:
            name = f.split(" (")[0]
            path = f.split(" (")[-1]
            for key in (
                "litellm",
                "textual",
                "rich",
                "nats",
                "aiohttp",
                "pydantic",
                "swarm_tui",
                "asyncio",
                "httpx",
                "openai",
            ):
                if f"/{key}/" in path and key not in seen_p:
                    pkg[key] += c
                    seen_p.add(key)
            label = f"{name} ({path.rsplit('/', 2)[-2] if '/' in path else path})"
            if label not in seen_f:
                fn[label] += c
                seen_f.add(label)
    out = [
        f"{total} samples",
        "by package (inclusive): " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in pkg.most_common()),
    ]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in fn.most_common(top)]
    return "\n".join(out)


async def profile_run(n: int, tps: float, seconds: float, dest: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as d:
        tmp = Path(d)
        srv = nats(tmp / "nats")
        ep = Endpoint()
        try:
            return await one(n, tps, seconds, tmp, ep, srv.url, "prof", profile=dest)
        finally:
            await ep.close()
            ep.stop()
            srv.stop()

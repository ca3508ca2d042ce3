"""``python -m bench --only history``: ``status --at`` and the fold to the end on a log of 100,000 events.

Generates realistic events (tasks, decisions, approvals, workers running and done, results with answers, spend,
a few controls: ``tests/support/past.py``) into a temporary nats-server, then times the whole ``swarm-tui status
--at`` command (a subprocess, wall) at an early, a middle and a late point, cold (no checkpoint) and warm (the
checkpoints the cold run left), and the fold to the log's end in this process with and without checkpoints (what
opening replay costs). The table goes into docs/performance.md between its markers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.checkpoint import EVERY, CheckpointStore, decode, encode, paused_gc
from swarm_tui.engine.history.fold import fold_to

from .common import ROOT, app_env, machine

CPU: list[float] = []
START, END = "<!-- history -->", "<!-- /history -->"
TARGET_S = 2.0


async def fill(bus: Bus, n: int, answer_chars: int = 400) -> int:
    """About ``n`` events published without waiting for each ack (batches, then a flush); the log's last seq."""
    from tests.support.past import round_events

    assert bus.nc is not None
    t0, i, sent = time.time() - n, 0, 0
    while sent < n:
        for ev in round_events(i, t0 + i * 0.5, answer_chars=answer_chars):
            await bus.nc.publish(event_subject(ev), ev.to_bytes())
            sent += 1
        i += 1
        if i % 200 == 0:
            await bus.nc.flush()
    await bus.nc.flush()
    for _ in range(600):
        st = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state
        if st.messages >= sent:
            return int(st.last_seq)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the stream holds {st.messages} of {sent} events")


def status_at(env: dict[str, str], at: int) -> float:
    """The command's wall time (its CPU time is in ``CPU``: the machine is shared, wall includes waiting)."""
    before = os.times()
    t = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "swarm_tui", "status", "--at", str(at)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - t
    after = os.times()
    CPU.append(after.children_user + after.children_system - before.children_user - before.children_system)
    if res.returncode != 0 or not res.stdout.startswith("as of"):
        raise RuntimeError(f"status --at {at} failed: {res.stderr.strip()[-300:]}")
    return took


def replay_open(tmp: Path, env: dict[str, str], at: int) -> float:
    """``swarm-tui replay --from AT`` in a pty: wall time from its start to the screen showing that position (the
    app notes when the first frame after the log's open is drawn: ``SWARM_BENCH_READY_FILE``)."""
    from tests.support.pty import DemoPty

    ready = tmp / "replay-ready"
    ready.unlink(missing_ok=True)
    t = time.time()
    app = DemoPty(
        tmp,
        args=("replay", "--from", str(at)),
        SWARM_NATS_URL=env["SWARM_NATS_URL"],
        SWARM_DATA_DIR=env["SWARM_DATA_DIR"],
        SWARM_BENCH_READY_FILE=str(ready),
    )
    try:
        if not app.read_until(lambda _out: ready.exists() and ready.read_text().endswith("\n"), timeout=180):
            raise RuntimeError(f"replay --from {at} did not show its position")
        return float(ready.read_text()) - t
    finally:
        app.stop()


async def measure(n: int = 100_000) -> tuple[list[tuple[str, str]], dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
    srv = EmbeddedServer(tmp / "nats", memory_mb=256, disk_mb=4096).run()
    rows: list[tuple[str, str]] = []
    figs: dict[str, float] = {}
    try:
        env = app_env(tmp, SWARM_NATS_URL=srv.url, XDG_DATA_HOME=str(tmp / "xdg-data"))
        cfg = load_config(None, env)
        bus = Bus(cfg)
        await bus.connect()
        t = time.monotonic()
        last = await fill(bus, n)
        figs["generate"] = time.monotonic() - t
        info = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state
        rows.append(
            (
                "the log",
                f"{info.messages:,} events, {info.bytes / 2**20:.1f} MiB, generated in {figs['generate']:.1f} s",
            )
        )
        history = tmp / "data" / "history"
        # late: the worst case, just before a checkpoint is due (EVERY - 1 events to fold after the nearest)
        points = {"early": max(1, last // 20), "middle": last // 2, "late": (last // EVERY) * EVERY - 1}
        for name, at in points.items():
            shutil.rmtree(history, ignore_errors=True)
            cold = await asyncio.to_thread(status_at, env, at)
            cold_cpu = CPU[-1]
            warm = min([await asyncio.to_thread(status_at, env, at) for _ in range(3)])
            warm_cpu = min(CPU[-3:])
            figs[f"{name}_cold"], figs[f"{name}_warm"] = cold, warm
            rows.append(
                (
                    f"`status --at {at:,}` ({name}), cold / warm: wall (CPU)",
                    f"{cold:.2f} s ({cold_cpu:.2f} s) / {warm:.2f} s ({warm_cpu:.2f} s)",
                )
            )
        late = points["late"]
        shutil.rmtree(history, ignore_errors=True)
        figs["replay_cold"] = await asyncio.to_thread(replay_open, tmp, env, late)
        figs["replay_warm"] = min([await asyncio.to_thread(replay_open, tmp, env, late) for _ in range(3)])
        rows.append(
            (
                f"`swarm-tui replay --from {late:,}` (late) to that event on screen, cold / warm: wall",
                f"{figs['replay_cold']:.2f} s / {figs['replay_warm']:.2f} s",
            )
        )
        log = BusLog(bus)
        ident = await log.identity()
        t = time.monotonic()
        with paused_gc():  # as status --at folds
            full = await fold_to(log, last, max_scale=cfg.swarm.max_scale)
        figs["fold_cold"] = time.monotonic() - t
        store = CheckpointStore(max_scale=cfg.swarm.max_scale, identity=ident, directory=history)
        t = time.monotonic()
        with paused_gc():
            await fold_to(log, last, max_scale=cfg.swarm.max_scale, checkpoints=store)
        figs["fold_warm"] = time.monotonic() - t
        rows.append(
            (
                "fold to the end in this process (replay's open), no checkpoint / from the nearest",
                f"{figs['fold_cold']:.2f} s / {figs['fold_warm']:.2f} s",
            )
        )
        t = time.monotonic()
        data = encode(full, ident)
        figs["encode"] = time.monotonic() - t
        t = time.monotonic()
        decode(data, identity=ident, max_scale=cfg.swarm.max_scale)
        figs["decode"] = time.monotonic() - t
        rows.append(
            (
                f"one checkpoint at {last:,} ({len(data) / 2**20:.1f} MiB): encode / load",
                f"{figs['encode']:.2f} s / {figs['decode']:.2f} s",
            )
        )
        t = time.monotonic()
        async for _ in log.read(1, last):
            pass
        figs["read"] = time.monotonic() - t
        rows.append(("BusLog.read of the whole log (receive only)", f"{figs['read']:.2f} s"))
        await bus.close()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, figs


def section(rows: list[tuple[str, str]], figs: dict[str, float]) -> str:
    worst = max(figs.get(f"{p}_warm", 0.0) for p in ("early", "middle", "late", "replay"))
    met = "met" if worst < TARGET_S else f"missed by {worst - TARGET_S:.2f} s"
    lines = [
        START,
        "## The past: `status --at` on a long log (`python -m bench --only history`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}. A checkpoint every "
        f"{EVERY:,} events. Target: `status --at` and opening replay < {TARGET_S:.0f} s wall with checkpoints "
        f"(warm): {met}.",
        "",
        "| what | time |",
        "|---|---|",
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += [
        "",
        "Wall is the whole command as a person waits for it; CPU is its own time (the machine is shared, so wall",
        "includes waiting for a core). Warm: a checkpoint at most EVERY - 1 events before the point (late is that",
        "worst case); the command is Python's start and imports (~0.6 s), the bus, one checkpoint's load and the",
        "fold of the rest. Cold: the fold from the log's start plus writing every checkpoint due on the way (each",
        "the whole state); paid once per log by the first reader of the past (`status --at`, `replay`, the app's",
        "timeline), which writes the checkpoints the next ones load. The engine writes none: it would need a second",
        "fold of the whole log beside its own (twice its memory), as its live state is not the log's fold (its",
        "scale from the config, its own writes applied before the log delivers them).",
    ]
    return "\n".join(lines + ["", END])


def splice(doc: str, block: str) -> str:
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def run(out: Path, n: int = 100_000) -> str:
    rows, figs = asyncio.run(measure(n))
    block = section(rows, figs)
    old = out.read_text() if out.exists() else ""
    out.write_text(splice(old, block))
    return block

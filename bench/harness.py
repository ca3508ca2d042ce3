"""The pieces every benchmark stands on: the endpoint process, a NATS server, the app in a pty, a headless
engine, and an observer on the bus that publishes decisions and watches what happens.

Everything started here is stopped by the same object's ``stop()`` (with time limits), and the benchmarks use
them as context managers, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Result, Task, WorkerEvent, new_id
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.control_requests import request

from .common import ROOT, app_env

# The header's filled dot: drawn only while the bus is connected (widgets/header_bar.py). Not the words "bus
# connected": a frame writes only the cells that changed (tui/screen_cells.py), so the words never pass whole when
# the dot turns, and with no key the header says "● bus (embedded)" to leave room for the key's state.
BUS_UP = r"●"

MODEL = "openrouter/google/gemini-2.5-flash-lite"
KEY = "sk-or-v1-bench-not-a-real-key-000000"


# ---------------------------------------------------------------- the endpoint (its own process)
class Endpoint:
    def __init__(self, tps: float = 50, tokens: int = 200) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.endpoint", "--tps", str(tps), "--tokens", str(tokens)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.match(r"port (\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"the bench endpoint did not start: {line!r}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.url}/api/v1"
        self._session: aiohttp.ClientSession | None = None

    async def _s(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def configure(self, **kw: float) -> None:
        async with (await self._s()).post(f"{self.url}/bench/config", json=kw) as r:
            await r.read()

    async def reset(self) -> None:
        async with (await self._s()).post(f"{self.url}/bench/reset") as r:
            await r.read()

    async def stats(self, sends: bool = False) -> dict[str, Any]:
        async with (await self._s()).get(f"{self.url}/bench/stats", params={"sends": "1" if sends else "0"}) as r:
            return dict(await r.json())

    async def stream(self, tag: str) -> dict[str, Any] | None:
        for s in (await self.stats())["streams"]:
            if s["tag"] == tag:
                return dict(s)
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stop(self) -> None:
        stop_proc(self.proc)


def stop_proc(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- NATS
def nats(store: Path, port: int = -1) -> EmbeddedServer:
    return EmbeddedServer(store, port=port, memory_mb=256, disk_mb=2048).run()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def swarm_env(tmp: Path, *, nats_url: str = "", base: str = "", **extra: str) -> dict[str, str]:
    """The app's environment: a private data dir, no user config, the bench endpoint as OpenRouter."""
    kw = {
        "SWARM_BUDGET_USD": "1000",
        "SWARM_SCALE": "50",
        "SWARM_DEBOUNCE_S": "3600",
        "SWARM_INTERVAL_S": "3600",
        "SWARM_APPROVAL": "manual",
        "SWARM_HEADROOM_MB": "64",
    }
    if nats_url:
        kw["SWARM_NATS_URL"] = nats_url
    if base:
        kw.update(OPENROUTER_API_BASE=base, OPENROUTER_API_KEY=KEY)
    kw.update(extra)
    return app_env(tmp, **kw)


# ---------------------------------------------------------------- processes: headless engine, app in a pty
class Headless:
    """``swarm-tui run --headless`` until ``stop()``; ``ready_s``: process start to "engine running"."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = (), timeout: float = 30) -> None:
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm_tui", "run", "--headless", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.out: list[str] = []
        deadline = t0 + timeout
        self.ready_s = float("nan")
        os.set_blocking(self.proc.stdout.fileno(), True)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            self.out.append(line)
            if "engine running" in line:
                self.ready_s = time.monotonic() - t0
                break
        if self.ready_s != self.ready_s:
            self.stop()
            raise RuntimeError("the headless engine did not start: " + "".join(self.out[-5:]))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.out = (self.out + [line.decode(errors="replace")])[-50:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_proc(self.proc, signal.SIGTERM)


ANSI = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78]")


class PtyApp:
    """The full-screen app in a pseudo-terminal of a fixed size; its output is read (and counted) all along."""

    def __init__(
        self, args: list[str], env: dict[str, str], cols: int = 120, rows: int = 36, *, command: list[str] | None = None
    ) -> None:
        """``swarm-tui ARGS`` in the pty, or ``command`` (another app: bench/peers.py)."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(env, TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "swarm_tui", *args],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.bytes = 0
        self._tail = b""
        self._marks: dict[str, float] = {}
        self.bytes_at: dict[str, int] = {}  # bytes read when each mark was seen (its chunk included)
        self._want: list[tuple[str, re.Pattern[bytes]]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def expect(self, name: str, pattern: str) -> None:
        with self._lock:
            self._want.append((name, re.compile(pattern.encode())))

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            self.bytes += len(data)
            with self._lock:
                if not self._want:
                    continue
                self._tail = (self._tail + data)[-65536:]
                text = ANSI.sub(b"", self._tail)
                for name, pat in list(self._want):
                    if pat.search(text):
                        self._marks[name] = now - self.t0
                        self.bytes_at[name] = self.bytes
                        self._want.remove((name, pat))

    def wait(self, name: str, timeout: float = 20) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self._marks:
                return self._marks[name]
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError(
            f"the app did not show {name!r} within {timeout}s: "
            + ANSI.sub(b"", self._tail)[-300:].decode(errors="replace")
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_proc(self.proc, signal.SIGTERM, timeout=20)
        with contextlib.suppress(OSError):
            os.close(self.master)


def settle_cpu(pid: int, below: float = 0.15, window: float = 0.5, timeout: float = 15) -> None:
    """Wait until the process uses less than ``below`` of a core over ``window`` (litellm's warm-up done)."""
    p = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c0 = sum(p.cpu_times()[:2])
        time.sleep(window)
        if (sum(p.cpu_times()[:2]) - c0) / window < below:
            return


# ---------------------------------------------------------------- the observer on the bus
class Observer:
    """A bus client of the bench's own: publishes tasks and decisions, sends controls, records events."""

    def __init__(self, env: dict[str, str]) -> None:
        self.cfg = load_config(None, env)
        self.bus = Bus(self.cfg)
        self.results: dict[str, tuple[Result, float]] = {}  # task id -> (result, arrival time)
        self.workers: dict[str, WorkerEvent] = {}  # task id -> newest worker event
        self.tags: dict[str, str] = {}  # task id -> tag
        self.chunk_times: list[float] = []
        self._follower: Any = None
        self._chunks: Any = None

    async def start(self, chunks: bool = False) -> Observer:
        await self.bus.connect()
        self._follower = await self.bus.replay(self._on_event, follow=True)
        if chunks:
            await self.watch_chunks()
        return self

    async def watch_chunks(self) -> None:
        assert self.bus.nc is not None

        async def cb(msg: Any) -> None:
            self.chunk_times.append(time.time())

        self._chunks = await self.bus.nc.subscribe(S.CHUNK_ALL, cb=cb)

    def _on_event(self, subject: str, ev: Any, seq: int) -> None:
        if isinstance(ev, Result):
            self.results[ev.task_id] = (ev, time.time())
        elif isinstance(ev, WorkerEvent):
            self.workers[ev.task_id] = ev

    async def decision(self, tags: list[str], *, max_tokens: int = 100000, approve: bool = True) -> Decision:
        """One task per tag (its text names the tag, so the endpoint knows the stream) and one decision."""
        now = time.time()
        tasks = []
        for tag in tags:
            t = Task(id=new_id("t"), text=f"bench-job-{tag}: write", created_at=now, source="bench")
            self.tags[t.id] = tag
            tasks.append(t)
            await self.bus.publish_event(t, msg_id=t.id)
        plan = [PlanItem(task_id=t.id, role="research", model=MODEL, max_tokens=max_tokens) for t in tasks]
        d = Decision(
            id=new_id("d"),
            task_ids=[t.id for t in tasks],
            plan=plan,
            source="rules",
            created_at=now,
            expires_at=now + 900,
        )
        await self.bus.publish_event(d, msg_id=d.id)
        if approve:
            await self.bus.publish_event(
                Approval(decision_id=d.id, action="approved", by="bench", at=time.time()), msg_id=f"{d.id}-final"
            )
        return d

    async def control(self, verb: str, **args: Any) -> Any:
        reply = await request(self.bus, verb, {"by": "bench", **args}, timeout=5)
        if reply is None or not reply.ok:
            raise RuntimeError(f"control {verb} failed: {reply}")
        return reply

    def worker_of(self, tag: str) -> str | None:
        for tid, t in self.tags.items():
            if t == tag and tid in self.workers:
                return self.workers[tid].worker_id
        return None

    def tag_of_worker(self) -> dict[str, str]:
        return {ev.worker_id: self.tags[tid] for tid, ev in self.workers.items() if tid in self.tags}

    def done(self, d: Decision) -> int:
        return sum(1 for t in d.task_ids if t in self.results)

    async def stop(self) -> None:
        if self._chunks is not None:
            with contextlib.suppress(Exception):
                await self._chunks.unsubscribe()
        if self._follower is not None:
            with contextlib.suppress(Exception):
                await self._follower.stop()
        await self.bus.close()


async def until(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.01) -> float:
    t0 = time.monotonic()
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)

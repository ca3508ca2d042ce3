"""RAM readings and the headroom policy.

Readings come from psutil (system total and available, this process's RSS and its children's, such as the
embedded nats-server) and from Ollama's ``/api/ps`` (each loaded model's size). Local models are memory-mapped,
so headroom is judged on the system's *available* memory, not on process RSS. The guard samples on a timer and
keeps ~10 minutes of history for a sparkline. A sample reads ``/proc/meminfo`` (one small read, on the loop);
the costlier parts are taken less often at rest (idle CPU): the processes' RSS (a dozen /proc reads, in a
thread) every ``RSS_REFRESH_S`` and ``/api/ps`` (aiohttp) every ``PS_REFRESH_S``, both at once when available
RAM moved by ``MOVE_MB`` since they were last taken. Listeners (``on_move``) hear of a reading that moved by
``MOVE_MB``, crossed the headroom or changed the loaded models: the app polls the engine's info at once. The
conductor and the pool ask ``headroom_ok(extra_mb)`` before local work; cloud work is never held back by RAM.
The reading source is injectable, so tests can simulate a 6 GB machine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.config.sections import OllamaSection, RamSection
from swarm_tui.engine.guards.protocols import RamReading
from swarm_tui.engine.info import LocalModel, RamInfo, RamSummary
from swarm_tui.engine.lifecycle import cancel_and_wait, within
from swarm_tui.engine.models import ollama_name

log = logging.getLogger(__name__)

MB = 1024 * 1024
HISTORY_S = 600.0
PS_BACKOFF_S = 15.0  # /api/ps is asked less often while Ollama does not answer
PS_REFRESH_S = 15.0  # ... and at rest while it does (a model loading or unloading moves available RAM: at once)
RSS_REFRESH_S = 10.0  # the processes' RSS at rest
MOVE_MB = 64.0  # available RAM moved this much: RSS and /api/ps are read at once, listeners are told

Source = Callable[[], RamReading]
OllamaPs = Callable[[], Awaitable[list[LocalModel]]]


def child_pids(pid: int) -> list[int] | None:
    """Every descendant of ``pid`` from Linux's ``/proc/<pid>/task/<tid>/children`` (a few small reads);
    None where that file does not exist (another OS, a kernel without it): then psutil walks every process."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # it ended while we looked
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def own_rss_mb() -> tuple[float, float]:
    """RSS of this process and of its children (the embedded nats-server, worker processes), in MB.

    The children come from ``/proc/<pid>/task/*/children`` where Linux has it: ``psutil``'s ``children()``
    reads /proc of every process of the machine, a quarter of the idle engine's CPU at one sample per 2 s."""
    me = os.getpid()
    own = psutil.Process(me).memory_info().rss / MB
    pids = child_pids(me)
    procs: list[psutil.Process] = []
    if pids is None:
        with contextlib.suppress(psutil.Error):
            procs = psutil.Process(me).children(recursive=True)
    else:
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
    kids = 0.0
    for c in procs:
        with contextlib.suppress(psutil.Error):
            kids += c.memory_info().rss / MB
    return own, kids


def meminfo_mb() -> tuple[float, float]:
    """(total, available) MB from ``/proc/meminfo`` (what psutil reads too, without its other work); psutil where
    that file or its MemAvailable line is missing."""
    total = avail = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        total = avail = None
    if total is None or avail is None:
        vm = psutil.virtual_memory()
        total, avail = vm.total, vm.available
    return total / MB, avail / MB


def psutil_reading() -> RamReading:
    """One reading from psutil (blocking for a few ms: call it in a thread)."""
    vm = psutil.virtual_memory()
    own, kids = own_rss_mb()
    return RamReading(
        total_mb=vm.total / MB, available_mb=vm.available / MB, own_rss_mb=own, children_rss_mb=kids, at=time.time()
    )


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def parse_ps(body: Any) -> list[LocalModel]:
    """Ollama's ``{"models": [{"name", "size", "size_vram"}]}`` to ``[{"name", "size_mb"}]``, where ``size_mb``
    is the model's share of *RAM*: Ollama's API doc ("List Running Models") gives ``size`` as the whole loaded
    model, VRAM included, and ``size_vram`` as the part on the GPU, so RAM is ``size - size_vram``."""
    out: list[LocalModel] = []
    models = body.get("models") if isinstance(body, dict) else None
    for m in models if isinstance(models, list) else []:
        if not isinstance(m, dict):
            continue
        name = m.get("name") or m.get("model")
        size = _num(m.get("size", 0))
        vram = _num(m.get("size_vram", 0)) or 0.0
        if isinstance(name, str) and size is not None:
            out.append({"name": name[:128], "size_mb": round(max(0.0, size - max(0.0, vram)) / MB, 1)})
    return out


def ollama_ps_client(host: str, timeout: float = 2.0) -> OllamaPs:
    """An async callable: GET {host}/api/ps; [] when Ollama does not answer."""
    from swarm_tui.engine.models import ollama_url

    url = ollama_url(host) + "/api/ps"

    async def ps() -> list[LocalModel]:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, s.get(url) as resp:
                if resp.status != 200:
                    return []
                return parse_ps(await resp.json(content_type=None))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            raise ConnectionError("ollama not reachable") from None

    return ps


def _summary(r: RamReading, headroom: float) -> RamSummary:
    return {
        "total_mb": round(r.total_mb),
        "available_mb": round(r.available_mb),
        "headroom_mb": headroom,
        "low": r.available_mb < headroom,
        "own_rss_mb": round(r.own_rss_mb, 1),
        "children_rss_mb": round(r.children_rss_mb, 1),
        "local_models": list(r.local_models),
    }


def ram_snapshot(cfg: Config) -> RamSummary:
    """A one-off reading for `status` and `doctor` with no engine running (no Ollama models)."""
    return _summary(psutil_reading(), cfg.ram.headroom_mb)


class RamGuard:
    name = "ram"

    def __init__(
        self,
        ram: RamSection,
        ollama: OllamaSection,
        *,
        source: Source | None = None,
        ollama_ps: OllamaPs | None | bool = True,
        clock: Callable[[], float] = time.time,
        sample_s: float | None = None,
    ) -> None:
        """``ollama_ps``: True (default) asks Ollama at ``ollama.host``; None/False: never; or a callable."""
        self.ram = ram
        self.ollama = ollama
        self.headroom_mb = float(ram.headroom_mb)
        self.sample_s = float(sample_s if sample_s is not None else ram.sample_s)
        self.clock = clock
        self.source = source
        if ollama_ps is True:
            self._ps: OllamaPs | None = ollama_ps_client(ollama.host)
        else:
            self._ps = ollama_ps or None
        self._last: RamReading | None = None
        self._models: list[LocalModel] = []
        self._ps_next = 0.0
        self.ollama_reachable: bool | None = None
        self._hist: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=max(2, math.ceil(HISTORY_S / self.sample_s) + 1)
        )
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.samples = 0
        self.low_since: float | None = None
        self._rss: tuple[float, float] = (0.0, 0.0)  # own and children's RSS as last read
        self._rss_at = (float("-inf"), 0.0)  # (monotonic time, available MB) of that read
        self._ps_avail = 0.0  # available MB when /api/ps was last asked
        self._listeners: list[Callable[[], None]] = []
        self._told: tuple[float, bool, tuple[str, ...]] | None = None  # the reading listeners last heard of

    # ------------------------------------------------------------------ reading
    async def _read(self) -> RamReading:
        if self.source is not None:
            return self.source()
        total, avail = meminfo_mb()
        now = time.monotonic()
        at, avail_then = self._rss_at
        if now - at >= max(self.sample_s, RSS_REFRESH_S) or abs(avail - avail_then) >= MOVE_MB:
            self._rss = await asyncio.to_thread(own_rss_mb)
            self._rss_at = (now, avail)
        own, kids = self._rss
        return RamReading(total_mb=total, available_mb=avail, own_rss_mb=own, children_rss_mb=kids, at=time.time())

    async def _read_models(self, available_mb: float) -> list[LocalModel]:
        if self._ps is None:
            return []
        now = time.monotonic()
        moved = abs(available_mb - self._ps_avail) >= MOVE_MB
        if now < self._ps_next and not (moved and self.ollama_reachable):
            return self._models
        self._ps_avail = available_mb
        try:
            self._models = list(await self._ps())
            self.ollama_reachable = True
            self._ps_next = now + max(self.sample_s, PS_REFRESH_S) - self.sample_s / 2
        except Exception:  # noqa: BLE001 - Ollama absent or confused: no models, ask again later
            self._models = []
            self.ollama_reachable = False
            self._ps_next = now + PS_BACKOFF_S
        return self._models

    def on_move(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after a sample that moved available RAM by ``MOVE_MB`` since the reading it last
        heard of, crossed the headroom, or changed the loaded models."""
        self._listeners.append(listener)

    def _tell(self, r: RamReading) -> None:
        key = (r.available_mb, r.available_mb < self.headroom_mb, tuple(m["name"] for m in r.local_models))
        told, self._told = self._told, key
        if told is None or (abs(key[0] - told[0]) < MOVE_MB and key[1:] == told[1:]):
            if told is not None:
                self._told = told  # small drifts add up against the reading last told, not the previous one
            return
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not stop the sampling that guards the RAM
                log.exception("RAM listener failed")

    async def sample(self) -> RamReading:
        """Take one reading now (also what the timer does)."""
        r = await self._read()
        r.local_models = list(await self._read_models(r.available_mb))
        r.at = self.clock()
        self._last = r
        self._hist.append((r.at, r.available_mb))
        self.samples += 1
        low = r.available_mb < self.headroom_mb
        if low and self.low_since is None:
            self.low_since = r.at
            log.warning(
                "RAM below headroom: %.0f MB available, headroom %.0f MB: local work is held",
                r.available_mb,
                self.headroom_mb,
            )
        elif not low and self.low_since is not None:
            self.low_since = None
            log.info("RAM headroom recovered: %.0f MB available", r.available_mb)
        self._changed.set()  # wake whoever waits for headroom; they check again
        self._changed = asyncio.Event()
        self._tell(r)
        return r

    def reading(self) -> RamReading:
        if self._last is None:  # before the first sample: one direct reading (cheap, once)
            r = self.source() if self.source is not None else psutil_reading()
            r.at = self.clock()
            self._last = r
        return self._last

    def headroom_ok(self, extra_mb: float = 0.0) -> bool:
        """True while available RAM minus ``extra_mb`` stays at or above the headroom."""
        return self.reading().available_mb - max(0.0, extra_mb) >= self.headroom_mb

    @property
    def low(self) -> bool:
        return not self.headroom_ok()

    def loaded_mb(self, model: str) -> float | None:
        """Size of a model Ollama has loaded now (None: not loaded); loading it again costs nothing."""
        want = ollama_name(model)
        for m in self.reading().local_models:
            if m["name"] == want or m["name"] == f"{want}:latest":
                return float(m["size_mb"])
        return None

    async def wait_headroom(self, extra_mb: float = 0.0, timeout: float | None = None) -> bool:
        """Wait until ``headroom_ok(extra_mb)`` (checked at every sample); False on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.headroom_ok(extra_mb):
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await within(self._changed.wait(), left if left is not None else self.sample_s * 2)
        return True

    def history(self) -> list[tuple[float, float]]:
        """(time, available MB) of the last ~10 minutes, oldest first."""
        return list(self._hist)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.sample()
        self._task = asyncio.create_task(self._loop(), name="ram-sampler")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sample_s)
            try:
                await self.sample()
            except Exception as exc:  # noqa: BLE001 - a failed reading keeps the last one
                log.debug("RAM sample failed: %s", type(exc).__name__)

    def info(self) -> RamInfo:
        return {
            **_summary(self.reading(), self.ram.headroom_mb),
            "ollama_reachable": self.ollama_reachable,
            "sample_s": self.sample_s,
            "history": [[round(t, 1), round(mb)] for t, mb in list(self._hist)[-60:]],
        }

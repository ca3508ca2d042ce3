"""Shared helpers for the benchmarks: statistics, machine description, subprocess environment."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    target: str = ""  # human text, e.g. "< 0.6 s"
    limit: float | None = None  # the target as a number
    lower_is_better: bool = True
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.samples), max(self.samples)) if self.samples else None

    @property
    def met(self) -> bool | None:
        if self.limit is None or self.median is None:
            return None
        return self.median <= self.limit if self.lower_is_better else self.median >= self.limit

    def row(self) -> str:
        def f(v: float | None) -> str:
            if v is None:
                return "-"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"

        sp = self.spread
        spread = f"{f(sp[0])} – {f(sp[1])}" if sp else "-"
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return (
            f"| {self.name} | {f(self.median)} {self.unit} | {spread} | {len(self.samples)} | {self.target or '-'} "
            f"| {met} |"
        )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    vs = sorted(values)
    k = max(0, min(len(vs) - 1, int(round(p / 100 * (len(vs) - 1)))))
    return vs[k]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.system()} {platform.machine()}, {psutil.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
        f"Python {sys.version.split()[0]}"
    )


def app_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OPENROUTER_", "OLLAMA_", "XDG_"))}
    env.update(
        {
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "SWARM_DATA_DIR": str(tmp / "data"),
            "SWARM_NATS_PROBE_DEFAULT": "0",
            "OLLAMA_HOST": "http://127.0.0.1:9",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def proc_tree_rss_mb(pid: int) -> tuple[float, float]:
    """(RSS of the process, RSS of its children) in MB."""
    p = psutil.Process(pid)
    own = p.memory_info().rss / 2**20
    kids = 0.0
    for c in p.children(recursive=True):
        try:
            kids += c.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return own, kids


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def cpu_seconds_tree(pid: int) -> float:
    """CPU seconds of a process and every child it has now (the app, its nats-server)."""
    p = psutil.Process(pid)
    total = cpu_seconds(pid)
    for c in p.children(recursive=True):
        try:
            t = c.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def as_json(figs: list[Figure]) -> list[dict[str, Any]]:
    return [{"key": f.key, "median": f.median, "samples": f.samples, "unit": f.unit} for f in figs]

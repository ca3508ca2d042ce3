"""RAM readings (psutil, and Ollama's /api/ps for loaded models) and the headroom policy."""

from __future__ import annotations

import os
from typing import Any

import psutil

from .config import Config

MB = 1024 * 1024


def own_rss_mb() -> tuple[float, float]:
    """RSS of this process and of its children (the embedded nats-server, worker processes), in MB."""
    me = psutil.Process(os.getpid())
    own = me.memory_info().rss / MB
    kids = 0.0
    for c in me.children(recursive=True):
        try:
            kids += c.memory_info().rss / MB
        except psutil.Error:
            pass
    return own, kids


def ram_snapshot(cfg: Config) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    own, kids = own_rss_mb()
    headroom = cfg["ram.headroom_mb"]
    avail = vm.available / MB
    return {
        "total_mb": round(vm.total / MB), "available_mb": round(avail), "headroom_mb": headroom,
        "low": avail < headroom, "own_rss_mb": round(own, 1), "children_rss_mb": round(kids, 1),
        "local_models": [],
    }

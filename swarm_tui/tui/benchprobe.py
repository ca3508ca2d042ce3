"""Bench-only instrumentation, off unless ``SWARM_BENCH_LATENCY_FILE`` is set (see bench/).

For every worker card the flush timer refreshes, it records the worker's token count and the newest chunk's
``sent_at``, and, once the screen has been refreshed (``call_after_refresh``), the time: the benchmark turns
that into chunk-to-screen latency against the endpoint's send times. Samples are appended as JSON lines.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


class LatencyProbe:
    def __init__(self, path: str) -> None:
        self.path = path
        self.tokens: dict[str, int] = {}
        self.sent: dict[str, float] = {}
        self.pending: list[tuple[str, int, float]] = []
        self.samples: list[tuple[str, int, float, float]] = []
        self._written_at = time.monotonic()

    @classmethod
    def from_env(cls) -> LatencyProbe | None:
        path = os.environ.get("SWARM_BENCH_LATENCY_FILE", "")
        return cls(path) if path else None

    def chunk(self, c: Any) -> None:
        self.tokens[c.worker_id] = self.tokens.get(c.worker_id, 0) + c.tokens
        self.sent[c.worker_id] = c.sent_at

    def flushed(self, worker_id: str) -> None:
        self.pending.append((worker_id, self.tokens.get(worker_id, 0), self.sent.get(worker_id, 0.0)))

    def rendered(self) -> None:
        now = time.time()
        self.samples.extend((w, k, s, now) for w, k, s in self.pending)
        self.pending.clear()
        if time.monotonic() - self._written_at > 2.0:
            self.write()

    def write(self) -> None:
        self._written_at = time.monotonic()
        if not self.samples:
            return
        with open(self.path, "a") as fh:
            fh.writelines(json.dumps(s) + "\n" for s in self.samples)
        self.samples.clear()

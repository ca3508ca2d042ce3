"""How much the event log holds and keeps: its events, bytes and oldest event, and the stream's limits
(``log.max_age_days``, ``log.max_bytes``: JetStream drops the oldest events past either). ``doctor`` and
``status`` show it; read from the stream itself, so it is what the server keeps, whatever this config says."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypedDict

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.history.buslog import BusLog, StreamBus

MIB = 1024 * 1024
FULL_SHARE = 0.9  # from here on the log is said to be nearly full: its oldest events are about to go


class LogUsage(TypedDict):
    """The stream's figures: ``oldest`` is the first kept event's stored time (None when the log is empty);
    ``max_age_days`` and ``max_bytes`` are 0 when the stream has no such limit."""

    events: int
    bytes: int
    first_seq: int
    last_seq: int
    oldest: float | None
    max_age_days: float
    max_bytes: int


async def log_usage(bus: StreamBus) -> LogUsage:
    info = await bus.jetstream.stream_info(S.EVENTS_STREAM)
    b = await BusLog(bus).bounds()
    age = info.config.max_age or 0.0
    cap = info.config.max_bytes or 0
    return {
        "events": b.count,
        "bytes": b.size_bytes,
        "first_seq": b.first_seq,
        "last_seq": b.last_seq,
        "oldest": None if b.empty else b.first_time,
        "max_age_days": round(age / 86400, 2) if age > 0 else 0,
        "max_bytes": cap if cap > 0 else 0,
    }


def usage_line(u: Mapping[str, Any]) -> str:
    """``12,345 events, 4.2 MiB (max 256 MiB), oldest 2026-11-05 09:12 (kept 30 days)``, a size under 1 MiB in
    KiB (``u``: a ``LogUsage``, or ``status --json``'s log block, which holds its keys)."""
    cap = f"max {u['max_bytes'] / MIB:,.0f} MiB" if u["max_bytes"] else "no size cap"
    kept = f"kept {u['max_age_days']:g} days" if u["max_age_days"] else "kept with no age limit"
    if not u["events"]:
        return f"empty ({cap}, {kept})"
    oldest = time.strftime("%Y-%m-%d %H:%M", time.localtime(u["oldest"] or 0))
    n = u["events"]
    size = f"{u['bytes'] / MIB:,.1f} MiB" if u["bytes"] >= MIB else f"{u['bytes'] / 1024:,.1f} KiB"
    return f"{n:,} event{'s' if n != 1 else ''}, {size} ({cap}), oldest {oldest} ({kept})"


def nearly_full(u: LogUsage) -> bool:
    return bool(u["max_bytes"]) and u["bytes"] >= FULL_SHARE * u["max_bytes"]

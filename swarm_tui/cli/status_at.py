"""``swarm-tui status --at SEQ|TIME``: the state as it was just after an event of the log, folded there.

The same projection and the same output as ``status``; what only a running engine knows (its pool, conductor,
lane, this machine's RAM) is not in the log and is said to be so. The fold starts from the nearest checkpoint
(``engine/history/checkpoint.py``) and leaves new ones behind. Nothing is published.
"""

from __future__ import annotations

import json
import time
from typing import Any

from swarm_tui.cli.commands import connected
from swarm_tui.cli.status import StatusData, assemble, format_status
from swarm_tui.engine.bus.timefmt import local_text
from swarm_tui.engine.bus.topology import describe
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.guards.spend_status import offline_spend_summary
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.checkpoint import log_checkpoints, paused_gc
from swarm_tui.engine.history.fold import Fold, fold_to
from swarm_tui.engine.history.when import parse_point
from swarm_tui.engine.info import InfoError, StatusBus
from swarm_tui.engine.paths import data_dir

NOT_RECORDED = "not recorded in the log"


def _when(t: float) -> str:
    return local_text(t, "%Y-%m-%d %H:%M:%S")


async def status_at_data(cfg: Config, at: str, *, now: float | None = None) -> tuple[StatusData, dict[str, Any]]:
    """``status``'s data at the point ``at`` (as typed), and the ``at`` part of its JSON (with a ``note`` when the
    point is after the log's end, or before its first event: the empty state, seq 0). A point before the log's
    first event when older events aged out is a ``SwarmError`` (what was then is no longer known).

    A time typed to the second is all of that second (``Point.span``): typing back a time this command printed
    lands on the event it was printed for."""
    point = parse_point(at, now=time.time() if now is None else now)
    async with connected(cfg, read_only=True) as bus:
        log = BusLog(bus)
        b = await log.bounds()
        if b.empty:
            raise SwarmError(f"--at {at}: the event log is empty: there is no past to show yet")
        if point.kind == "seq":
            before = point.seq < b.first_seq
        else:  # a time to the second: before the log when that whole second is
            before = point.value + point.span <= b.first_time if point.span else point.value < b.first_time
        if before and b.first_seq > 1:
            raise SwarmError(
                f"--at {at}: before the log starts at event {b.first_seq:,} ({_when(b.first_time)}): "
                "older events aged out"
            )
        note = ""
        if before:  # nothing was logged before it: the state before event 1 is the empty one
            note = f"--at {at} is before the log's first event ({_when(b.first_time)}): nothing had happened yet"
            fold = Fold(max_scale=cfg.swarm.max_scale, time=point.value)
        else:
            if point.kind == "seq":
                end = point.seq
            else:  # the last event stored at or before that time (to the end of its second when typed so)
                # (seq_at reads "at or after" with two microseconds of slack for the stored times' rounding: past it)
                end = await log.seq_at(point.value + (point.span or 5e-6)) - 1
            if end > b.last_seq or (point.kind == "time" and point.value > b.last_time):
                note = f"--at {at} is after the log's last event: this is the latest state"
                end = b.last_seq
            store = await log_checkpoints(log, max_scale=cfg.swarm.max_scale, data=data_dir(cfg.paths.data_dir))
            with paused_gc(freeze=True):  # a one-shot command: nothing it folds is let go of before it ends
                fold = await fold_to(log, end, max_scale=cfg.swarm.max_scale, checkpoints=store)
        bus_info: StatusBus = {
            "kind": bus.kind,
            "state": bus.state,
            "malformed": {},
            "warnings": list(bus.warnings),
            "topology": await describe(bus),
        }
    return _data(cfg, fold, bus_info), {
        "seq": fold.seq,
        "time": fold.time,
        "requested": at,
        "last_seq": b.last_seq,
        "skipped": fold.skipped,
        "note": note,
    }


def _data(cfg: Config, fold: Fold, bus_info: StatusBus) -> StatusData:
    state = fold.state
    spend = offline_spend_summary(cfg, state)  # the fold's spend: today's ledger is not the past's
    spend["price_source"] = NOT_RECORDED
    gone: InfoError = {"error": NOT_RECORDED}
    data = assemble(cfg, state, {}, bus_info, spend, gone)
    data["conductor"] = data["pool"] = data["lane"] = gone
    return data


def format_at(data: StatusData, at: dict[str, Any]) -> str:
    where = f"event {at['seq']:,}" if at["seq"] else "before event 1"
    first = f"as of {_when(at['time'])} ({where} of {at['last_seq']:,})"
    lines = [first] + ([f"note: {at['note']}"] if at["note"] else [])
    text = format_status(data | {"conductor": None}).splitlines()
    # the engine line speaks of now; the past's engine parts are not in the log
    text = [f"engine, conductor, pool, local lane, RAM: {NOT_RECORDED}" if t.startswith("engine:") else t for t in text]
    return "\n".join(lines + text)


async def status_at(cfg: Config, as_json: bool, at: str) -> int:
    data, where = await status_at_data(cfg, at)
    if as_json:
        print(json.dumps({"at": where, **data}, indent=2, default=str))
        return 0
    print(format_at(data, where))
    return 0

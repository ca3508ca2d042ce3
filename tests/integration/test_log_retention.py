"""The event log's limits come from ``log.max_age_days`` and ``log.max_bytes``; an existing stream is brought to
them when the engine starts (``connect(log_limits=True)``: ``ensure_stream`` updates it), never by another
process that sets the bus up (a one-shot command keeps the limits the stream has); ``doctor`` and ``status``
show the log's size and oldest event against them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Task
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.usage import MIB, LogUsage, nearly_full, usage_line
from tests.support.env import base_env, run_cli


async def test_a_stream_made_with_one_limit_is_updated_to_the_new_one(cfg: Config) -> None:
    first = Bus(cfg.replace(log__max_age_days=30, log__max_bytes=64 * 1024 * 1024))
    await first.connect()
    try:
        made = (await first.jetstream.stream_info(S.EVENTS_STREAM)).config
        assert (made.max_age, made.max_bytes) == (30 * 86400.0, 64 * 1024 * 1024)
    finally:
        await first.close()
    other = Bus(cfg.replace(log__max_age_days=2, log__max_bytes=20_000_000))
    await other.connect()  # a command, a worker: creates what is missing, keeps the log's limits
    try:
        kept = (await other.jetstream.stream_info(S.EVENTS_STREAM)).config
        assert (kept.max_age, kept.max_bytes) == (30 * 86400.0, 64 * 1024 * 1024)
    finally:
        await other.close()
    second = Bus(cfg.replace(log__max_age_days=2, log__max_bytes=20_000_000))
    await second.connect(log_limits=True)  # the engine's start
    try:
        now = (await second.jetstream.stream_info(S.EVENTS_STREAM)).config
        assert (now.max_age, now.max_bytes) == (2 * 86400.0, 20_000_000)
    finally:
        await second.close()


async def test_doctor_and_status_show_the_log_s_size_oldest_event_and_limits(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    t0 = time.time()
    for i in range(3):
        await bus.publish_event(Task(id=f"t-{i}", text=f"task {i}", created_at=t0))
    oldest = (await BusLog(bus).bounds()).first_time
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(oldest))
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    doctor = run_cli(["doctor"], env)
    line = next(ln for ln in doctor.stdout.splitlines() if ln[5:].startswith("log "))
    assert re.fullmatch(rf"ok   log +3 events, \d\.\d KiB \(max 256 MiB\), oldest {when} \(kept 30 days\)", line), line
    plain = run_cli(["status"], env).stdout
    assert line.split("log", 1)[1].strip() in plain, plain
    log = json.loads(run_cli(["status", "--json"], env).stdout)["log"]
    assert log["events"] == log["stored"] == 3 and log["first_seq"] == 1 and log["last_seq"] == 3
    assert log["oldest"] == oldest and 0 < log["bytes"] < 4096
    assert (log["max_age_days"], log["max_bytes"]) == (30, 256 * 1024 * 1024)


def test_a_nearly_full_log_is_a_warning_and_an_empty_one_says_so() -> None:
    u: LogUsage = {
        "events": 12_345,
        "bytes": 250 * MIB,
        "first_seq": 1,
        "last_seq": 12_345,
        "oldest": 1_900_000_000.0,
        "max_age_days": 30,
        "max_bytes": 256 * MIB,
    }
    assert usage_line(u).startswith("12,345 events, 250.0 MiB (max 256 MiB), oldest ")
    assert nearly_full(u) and not nearly_full(u | {"bytes": 100 * MIB})
    empty = u | {"events": 0, "bytes": 0, "oldest": None, "max_bytes": 0}
    assert usage_line(empty) == "empty (no size cap, kept 30 days)"

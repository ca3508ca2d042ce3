"""``swarm-tui status --at``: the state as it was just after an event, the output of ``status``, nothing published."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.source import MemoryLog
from tests.support.env import base_env, run_cli
from tests.support.past import stored_log


async def _stored(bus: Bus) -> dict[str, int]:
    """Every stream's message count: reading the past must change none (no events, dead letters or controls)."""
    return {i.config.name or "": i.state.messages for i in await bus.jetstream.streams_info()}


async def _fill(bus: Bus, rounds: int) -> list[int]:
    """The rounds published as events (times in the past); the sequence of each round's last event."""
    events = stored_log(rounds, t0=time.time() - 3600, garbage=False)
    for st in events:
        await bus.publish(st.subject, st.data)
    return [st.seq for i, st in enumerate(events) if i + 1 == len(events) or events[i + 1].time != st.time]


async def test_status_at_a_seq_is_the_fold_there_and_publishes_nothing(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    ends = await _fill(bus, 6)
    last = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq
    streams = await _stored(bus)
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    at = ends[2]
    res = run_cli(["status", "--json", "--at", str(at)], env)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["at"]["seq"] == at and d["at"]["requested"] == str(at) and d["log"]["last_seq"] == at
    expect = (await fold_to(MemoryLog(stored_log(6, garbage=False)), at, max_scale=50)).state.snapshot()
    assert [t["id"] for t in d["tasks"]] == [t["id"] for t in expect["tasks"]] == ["t-p00000", "t-p00001", "t-p00002"]
    assert d["spend_log"]["total_usd"] == expect["spend_log"]["total_usd"] > 0
    assert d["pool"] == {"error": "not recorded in the log"} and d["engine"] is None
    text = run_cli(["status", "--at", str(at)], env)
    first = text.stdout.splitlines()[0]
    assert text.returncode == 0 and first.startswith("as of ") and first.endswith(f"(event {at:,} of {last:,})")
    assert "\nengine, conductor, pool, local lane, RAM: not recorded in the log\n" in text.stdout
    assert "error=" not in text.stdout and "prices: not recorded in the log" in text.stdout
    assert await _stored(bus) == streams  # nothing published


async def test_status_at_a_time_before_or_after_the_log(tmp_path: Path, nats_server: EmbeddedServer, bus: Bus) -> None:
    await _fill(bus, 3)
    last = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    before = run_cli(["status", "--at", "-2h"], env)  # nothing was logged before event 1: the empty state
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[0].endswith(f"(before event 1 of {last:,})"), before.stdout
    assert "note: --at -2h is before the log's first event (" in before.stdout
    newest = [s async for s in BusLog(bus).read(last, last)][0]
    later = datetime.fromtimestamp(newest.time + 0.5).isoformat()  # after the last event, whatever the load
    after = run_cli(["status", "--at", later], env)
    assert after.returncode == 0, after.stderr
    assert (
        f"(event {last:,} of {last:,})" in after.stdout
        and f"note: --at {later} is after the log's last event" in after.stdout
    )
    fifth = [s async for s in BusLog(bus).read(5, 5)][0]
    iso = datetime.fromtimestamp(fifth.time).isoformat()  # local time, as a person types it
    mid = run_cli(["status", "--json", "--at", iso], env)
    assert mid.returncode == 0, mid.stderr
    assert json.loads(mid.stdout)["at"] | {"time": 0} == {
        "seq": 5,
        "time": 0,
        "requested": iso,
        "last_seq": last,
        "skipped": 0,
        "note": "",
    }
    bad = run_cli(["status", "--at", "yesterday"], env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq == last

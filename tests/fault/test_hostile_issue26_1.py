"""Adversary 1 on issue 26 (the past from the command line and files): each test fails while the flaw is there."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from swarm_tui.cli.history import history_line
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.bus.wire import LogEvent, SpendEntry, Task
from swarm_tui.engine.errors import UsageError
from swarm_tui.engine.history.checkpoint import CheckpointStore
from swarm_tui.engine.history.filelog import read_log_file
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.source import MemoryLog, Stored
from swarm_tui.engine.history.tasks import history_rows
from swarm_tui.engine.history.when import parse_point
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.tui.widgets.timeline_bar import TimelineView, timeline_line
from tests.support.past import T0, stored_log


def _stored(seq: int, ev: LogEvent, t: float = T0) -> Stored:
    return Stored(seq, t, event_subject(ev), ev.to_bytes())


def _spend(i: int, cost: float, at: float) -> SpendEntry:
    return SpendEntry(
        id=f"j-x{i}", model="m", worker_id=f"w-x{i}", decision_id="d-x", task_id="t-x", cost_usd=cost, at=at
    )


def test_a_spend_dated_in_the_distant_past_breaks_every_fold_after_it() -> None:
    """A spend entry on its own subject whose ``at`` is far in the past (-1e13: the trust check only refuses
    times AHEAD of their storing, and the wire model allows any finite float) passes ``refusal`` and then
    ``SwarmState._on_spend`` -> ``utc_day`` raises ValueError (year out of range). Every fold that crosses it
    (status --at, replay, history, export --task's fold) dies with 'internal error' for good: one forged event,
    kept by the log for log.max_age_days, takes the whole past away. Fold.apply should skip what it cannot fold
    (or trust.refusal should refuse an impossible date)."""
    events = [_stored(1, Task(id="t-x", text="q", created_at=T0)), _stored(2, _spend(1, 0.01, -1e13))]
    events += [_stored(3, Task(id="t-y", text="later", created_at=T0))]
    fold = asyncio.run(fold_to(MemoryLog(events), 3, max_scale=50))  # raised ValueError: year ... out of range
    assert "t-y" in fold.state.tasks


def test_a_task_dated_in_the_distant_past_breaks_the_history_command() -> None:
    """A task whose ``created_at`` is -1e13 (accepted: only times ahead of storing are refused) is folded, and
    ``swarm-tui history`` then fails for every user ('internal error') because ``history_line`` formats it with
    ``datetime.fromtimestamp`` (cli/history.py), which raises ValueError for such a year. One submitted task
    hides the whole history until it ages out of the log."""
    state = SwarmState(session_start=0.0, clock=lambda: T0)
    state.apply(Task(id="t-old", text="from before time", created_at=-1e13), 1)
    state.apply(Task(id="t-ok", text="a normal task", created_at=T0), 2)
    lines = [history_line(r) for r in history_rows(state)]  # raised ValueError
    assert any("a normal task" in s for s in lines)


def test_an_exported_file_with_a_huge_integer_time_is_a_one_line_error(tmp_path: Path) -> None:
    """filelog._event_of checks the time with ``math.isfinite(t)``: for a JSON integer of 400 digits that raises
    OverflowError (int too large to convert to float), which is not caught, so ``replay --file`` on such a file
    ends in 'internal error' instead of the promised one-line UsageError naming the line (filelog's module doc:
    the file is untrusted input)."""
    ev = Task(id="t-1", text="q", created_at=T0)
    line = '{"seq": 1, "time": 1' + "0" * 400 + ', "subject": "swarm.evt.task.t-1", "event": ' + ev.to_bytes().decode()
    p = tmp_path / "huge.jsonl"
    p.write_text(line + "}\n")
    with pytest.raises(UsageError):
        read_log_file(p)  # raised OverflowError


def test_an_exported_file_with_a_far_future_time_breaks_the_replay_timeline(tmp_path: Path) -> None:
    """read_log_file accepts any finite time >= 0 (1e12 is the year 33658). The replay's timeline line then
    formats it with datetime.fromtimestamp (widgets/timeline_bar.py), which raises ValueError: replay --file of
    such a file crashes the app on its first frame. Either the reader bounds a stored time (JetStream's are
    real clock times) or the line shows it without crashing."""
    ev = Task(id="t-1", text="q", created_at=1e12)
    line = json.dumps({"seq": 1, "time": 1e12, "subject": "swarm.evt.task.t-1", "event": json.loads(ev.to_bytes())})
    p = tmp_path / "far.jsonl"
    p.write_text(line + "\n")
    try:
        log = read_log_file(p)
    except UsageError:
        return  # refused at the door: fine
    st = asyncio.run(_first(log))
    text = timeline_line(TimelineView(st.time, st.seq, 1, 1.0, False, 1.0, 2.0))  # raised ValueError
    assert "event 1 of 1" in text.plain


async def _first(log: MemoryLog) -> Stored:
    async for st in log.read(1, 1):
        return st
    raise AssertionError("empty")


def test_spend_totals_that_overflow_to_infinity_break_the_checkpoint_writer(tmp_path: Path) -> None:
    """SpendEntry.cost_usd is ge=0 with no upper bound, so two entries of 1e308 are valid and the fold's total
    becomes inf. The checkpoint encoder has allow_nan=False, so ``CheckpointStore.offer`` raises ValueError inside
    ``fold_to`` (it is not the OSError ``put`` catches): every status --at / replay point past the next multiple
    of EVERY fails with 'internal error', while the live app only shows a silly total. A checkpoint that cannot be
    written should be skipped (fold on), not end the fold."""
    events = stored_log(1, garbage=False)
    n = len(events)
    events += [_stored(n + 1, _spend(1, 1e308, T0)), _stored(n + 2, _spend(2, 1e308, T0))]
    events += [_stored(n + 3, Task(id="t-after", text="after", created_at=T0))]
    store = CheckpointStore(max_scale=50, identity="log-1", directory=tmp_path / "history", every=n + 3)
    fold = asyncio.run(fold_to(MemoryLog(events), n + 3, max_scale=50, checkpoints=store))  # raised ValueError
    assert "t-after" in fold.state.tasks


def test_at_a_date_of_year_one_east_of_utc_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--at 0001-01-01`` (or --since/--from) on a machine east of UTC: parse_point calls dt.timestamp() on the
    naive local time, which raises ValueError('year 0 is out of range'); it is not turned into the one-line
    UsageError (exit 2) that every other bad point gets, so status --at / history --since / replay --from say
    'internal error' and exit 1."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        with pytest.raises(UsageError):
            parse_point("0001-01-01", now=T0)  # raised ValueError
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


_GAP_HANG = """
import asyncio, json
from pathlib import Path
from swarm_tui.engine.bus.wire import Task
from swarm_tui.engine.history.filelog import read_log_file
from swarm_tui.engine.history.timeline import Timeline
p = Path({path!r})
lines = []
for seq in (1, 2**62):
    ev = json.loads(Task(id=f"t-{{seq}}", text="q", created_at=1.9e9).to_bytes())
    lines.append(json.dumps({{"seq": seq, "time": 1.9e9, "subject": f"swarm.evt.task.t-{{seq}}", "event": ev}}))
p.write_text("\\n".join(lines) + "\\n")
async def main():
    tl = Timeline(read_log_file(p), max_scale=50)
    await tl.open(None)
    await tl.step(1)
    print("stepped to", tl.seq)
asyncio.run(main())
"""


def test_a_file_with_a_huge_seq_gap_freezes_replay_on_the_first_step(tmp_path: Path) -> None:
    """read_log_file accepts any increasing seqs up to 2**63-1, and Timeline._next skips a gap by reading
    ``_AHEAD`` (256) sequence numbers at a time: a two-line file with seqs 1 and 2**62 makes the first right-arrow
    (or space: tick uses _next too) loop ~1.8e16 times. MemoryLog.read never awaits, so the event loop is held:
    the replay app freezes for good, q and ctrl+c included. A gap should be crossed by asking the source for the
    next stored seq (bisect for a file; the bus's next=True read), not by counting through it."""
    import subprocess
    import sys

    code = _GAP_HANG.format(path=str(tmp_path / "gap.jsonl"))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("replay's step over a seq gap of 2**62 did not end in 5 s (the loop counts through the gap)")
    assert "stepped to 4611686018427387904" in out.stdout, out.stderr[-2000:]


def test_a_sparse_file_keeps_a_checkpoint_of_every_event_in_memory() -> None:
    """replay --file gives the Timeline a CheckpointStore with no directory; ``due`` is once per bucket of EVERY
    seqs and ``prune`` returns at once without a directory, so KEEP never applies to memory. A file whose seqs are
    10,000 apart (any export-log --task of a long log is sparse like this; a hostile one makes it so) gets a full
    encoded copy of the growing state for EVERY event, all kept: memory and time grow as the square of the file
    (1,000 events of 100 KB texts: ~50 GB). The in-memory store should be bounded like the files (KEEP/MAX_BYTES)."""
    from swarm_tui.engine.history.checkpoint import EVERY, KEEP

    events = [_stored(i * EVERY, Task(id=f"t-{i}", text="q" * 100, created_at=T0)) for i in range(1, 101)]
    store = CheckpointStore(max_scale=50)  # as run_replay makes it for a file
    asyncio.run(fold_to(MemoryLog(events), 100 * EVERY, max_scale=50, checkpoints=store))
    assert len(store._mem) <= KEEP, f"{len(store._mem)} checkpoints held in memory ({store.written} encoded)"


def test_a_checkpoint_folded_under_another_max_scale_is_loaded_as_this_ones(tmp_path: Path) -> None:
    """What a fold applies depends on swarm.max_scale (trust.refusal refuses a scale control above it), but a
    checkpoint file is keyed only by the log's identity, FORMAT and LAYOUT, not by the max_scale it was folded
    under. status --at once with max_scale 50 leaves a checkpoint in which `scale 40` was applied; after the
    user lowers swarm.max_scale to 10 (or runs with another config on the same data dir), status --at says scale
    40 where a fold of the log says the 40 was refused: the past's answer depends on whether a cache file exists."""
    from swarm_tui.engine.bus.wire import ControlEvent

    events = [_stored(1, Task(id="t-1", text="q", created_at=T0))]
    events += [_stored(2, ControlEvent(what="scale", value=40, by="cli", at=T0))]
    events += [_stored(3, Task(id="t-2", text="q2", created_at=T0))]
    d = tmp_path / "history"
    first = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=2)
    asyncio.run(fold_to(MemoryLog(events), 3, max_scale=50, checkpoints=first))
    assert first.written == 1
    later = CheckpointStore(max_scale=10, identity="log-1", directory=d, every=2)
    via_checkpoint = asyncio.run(fold_to(MemoryLog(events), 3, max_scale=10, checkpoints=later))
    fresh = asyncio.run(fold_to(MemoryLog(events), 3, max_scale=10))
    assert fresh.state.scale is None and fresh.skipped == 1
    assert (via_checkpoint.state.scale, via_checkpoint.skipped) == (fresh.state.scale, fresh.skipped)


def test_a_checkpoint_forgets_the_fold_clock_when_stored_times_go_back() -> None:
    """Fold's clock is the LATEST stored time seen (max), but a checkpoint keeps only the last event's time and
    decode sets the clock to it. When stored times are not in order (an exported file is only checked for seq
    order; a server clock stepped back), a fold resumed from a checkpoint has an earlier "now" than the same fold
    from the start, so 'today' spend differs: replay --file's Spend panel changes after a step back (which loads
    an in-memory checkpoint) at the same event."""
    day = 86400.0
    events = [_stored(1, Task(id="t-1", text="q", created_at=T0), T0 + 2 * day)]
    events += [_stored(2, Task(id="t-2", text="q2", created_at=T0), T0)]
    events += [_stored(3, _spend(1, 0.5, T0), T0)]
    store = CheckpointStore(max_scale=50, every=2)
    asyncio.run(fold_to(MemoryLog(events), 2, max_scale=50, checkpoints=store))
    via_checkpoint = asyncio.run(fold_to(MemoryLog(events), 3, max_scale=50, checkpoints=store))
    fresh = asyncio.run(fold_to(MemoryLog(events), 3, max_scale=50))
    assert via_checkpoint.state.today_spend() == fresh.state.today_spend()


async def test_status_at_a_time_when_the_logs_last_message_was_deleted(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """BusLog.bounds reads the last event with ``_get(st.last_seq)``; JetStream keeps last_seq when that message
    is deleted (``nats stream rmm``, a redaction), the get is NotFound, and last_time falls back to FIRST_time.
    Then every time after the first event is 'after the log': ``seq_at`` returns last_seq+1 and status --at TIME
    prints the latest state with 'note: ... after the log's last event' for a point in the middle of the log
    (replay's ] jump is clamped to first_time and goes back to the start). bounds should read the last stored
    event at or before last_seq (a get with next from the end, or a reverse search)."""
    from datetime import datetime

    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.history.buslog import BusLog
    from tests.support.env import base_env, run_cli

    for st in stored_log(3, t0=time.time() - 3600, garbage=False):
        await bus.publish(st.subject, st.data)
    last = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq
    await bus.jetstream.delete_msg(S.EVENTS_STREAM, last)  # one message taken out of the log: its newest
    fifth = [s async for s in BusLog(bus).read(5, 5)][0]
    iso = datetime.fromtimestamp(fifth.time).isoformat()
    res = run_cli(["status", "--json", "--at", iso], base_env(tmp_path, SWARM_NATS_URL=nats_server.url))
    assert res.returncode == 0, res.stderr
    at = json.loads(res.stdout)["at"]
    assert (at["seq"], at["note"]) == (5, ""), at  # was: seq 46 (the latest), "after the log's last event"


def test_a_log_max_bytes_the_config_allows_but_the_embedded_server_cannot_hold(tmp_path: Path) -> None:
    """log.max_bytes accepts up to 1 TiB and doctor says 'raise log.max_bytes to keep more', but the embedded
    server's file store is nats.embedded_disk_mb (default 1024 MB): with log.max_bytes = 2 GiB JetStream refuses
    the event stream (err 10047 'insufficient storage resources available'), and every command that connects
    (status, submit, the app, status --at) waits ~32 s and then says 'swarm-tui: internal error: ServerError'.
    Nothing names the key. The config should refuse it (or the stream's error should name log.max_bytes and the
    disk cap), at once."""
    import subprocess

    from tests.support.env import base_env, run_cli

    env = base_env(tmp_path)
    conf = tmp_path / "xdg-config" / "swarm-tui"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text("[log]\nmax_bytes = 2147483648\n")  # 2 GiB: in log.max_bytes' range
    try:
        res = run_cli(["status"], env, timeout=12)
    except subprocess.TimeoutExpired:
        pytest.fail("status with log.max_bytes over the embedded disk cap did not answer in 12 s (it takes ~32 s)")
    assert "internal error" not in res.stderr, res.stderr
    assert res.returncode == 0 or "log.max_bytes" in res.stderr, res.stderr


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from swarm_tui.engine.history.checkpoint import CheckpointStore
d = Path({path!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) as one on a full disk does
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
s = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=10)
for seq in (10, 20, 30):
    s.put(b"x" * 100_000, seq)
print(sorted(p.name for p in d.iterdir()))
"""


def test_a_checkpoint_that_cannot_be_written_leaves_its_partial_file_behind(tmp_path: Path) -> None:
    """CheckpointStore.put writes ``<id>-<seq>.tmp`` and, when the write fails (a full disk: ENOSPC; here EFBIG
    from a file size limit), logs and keeps the checkpoint in memory but never removes the partial .tmp; prune
    only looks at *.ckpt. On a full data dir every status --at / replay leaves one more partial file per
    checkpoint it tried (up to hundreds of MB each), keeping the disk full for the engine's own store."""
    import subprocess
    import sys

    d = tmp_path / "history"
    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK.format(path=str(d))], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert not [p.name for p in d.iterdir() if p.suffix == ".tmp"], out.stdout


def test_a_history_line_of_wide_characters_fits_the_terminal() -> None:
    """history_line cuts the task's text to the room the terminal leaves counted in characters (len), not in
    terminal cells: a task in Chinese/Japanese (2 cells a character) or emoji makes each `swarm-tui history`
    line up to twice the width, so it wraps and the list is unreadable. (ASCII fits at 120 columns.)"""
    from rich.cells import cell_len

    s = SwarmState(session_start=0.0, clock=lambda: T0)
    s.apply(Task(id="t-ascii", text="a" * 300, created_at=T0), 1)
    s.apply(Task(id="t-wide", text="群" * 300, created_at=T0), 2)
    widths = {r.task_id: cell_len(history_line(r, 120)) for r in history_rows(s)}
    assert widths["t-ascii"] <= 120
    assert widths["t-wide"] <= 120, widths  # was 171 cells


async def test_status_at_the_time_it_printed_for_the_first_event(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """status --at prints times to the second ('as of 2026-12-05 11:09:51', 'before the log starts at event 1
    (2026-12-05 11:09:51)'), but a typed time is compared to the microsecond. Typing back the time the tool
    printed for the log's first event is refused as 'before the log starts at event 1 (<that same time>)': the
    error contradicts itself, and a person cannot reach the first second of the log by the times shown."""
    from swarm_tui.cli.status_at import _when
    from swarm_tui.engine.history.buslog import BusLog
    from tests.support.env import base_env, run_cli

    for st in stored_log(1, t0=time.time() - 3600, garbage=False):
        await bus.publish(st.subject, st.data)
    first = [s async for s in BusLog(bus).read(1, 1)][0]
    shown = _when(first.time)  # as status --at prints it
    res = run_cli(["status", "--at", shown], base_env(tmp_path, SWARM_NATS_URL=nats_server.url))
    assert f"before the log starts at event 1 ({shown})" not in res.stderr, res.stderr


async def test_the_history_command_publishes_dead_letters(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """`swarm-tui history` reads the log with ``bus.replay`` (the live reader), which sets every message that does
    not decode or is refused aside by PUBLISHING it to swarm.dead.<kind> (trust.DeadLetters.set_aside). So a
    read-only look at the past writes to the bus (issue 26: history publishes nothing; status --at and
    export-log use Fold, which only counts). A log with one forged approval makes each run add a dead letter
    (deduplicated only within the stream's window), from any reader's login that may publish there."""
    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.bus.wire import Approval
    from tests.support.env import base_env, run_cli

    for st in stored_log(1, t0=time.time() - 3600, garbage=False):
        await bus.publish(st.subject, st.data)
    forged = Approval(decision_id="d-p00000", action="approved", by="tui", at=time.time())
    await bus.publish("swarm.evt.worker.w-evil", forged.to_bytes())  # a worker's login approving a decision
    await bus.publish("swarm.evt.task.t-junk", b"{not json")
    before = {i.config.name: i.state.messages for i in await bus.jetstream.streams_info()}
    res = run_cli(["history"], base_env(tmp_path, SWARM_NATS_URL=nats_server.url))
    assert res.returncode == 0, res.stderr
    after = {i.config.name: i.state.messages for i in await bus.jetstream.streams_info()}
    assert after == before, f"history changed the streams: {before} -> {after} (dead letters: {S.dead('x')})"


async def test_a_read_only_look_at_the_past_rewrites_the_logs_retention(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """status --at, history and export-log connect with ``connected(cfg)`` -> ``Bus.connect()`` -> setup ->
    ``ensure_stream``, which UPDATES the existing SWARM_EVENTS stream to this process's log.max_age_days and
    log.max_bytes. A person looking at the past from a laptop whose config has the defaults (30 days, 256 MiB)
    against a hub whose engine keeps 512 MiB shrinks the shared log for everyone, and JetStream drops the oldest
    events at once: the read-only view of the past deletes the past. Only the engine (or an explicit command)
    should change the log's limits; a reader should connect with setup=False, as replay's link does."""
    from swarm_tui.engine.bus import subjects as S
    from tests.support.env import base_env, run_cli

    for st in stored_log(1, t0=time.time() - 3600, garbage=False):
        await bus.publish(st.subject, st.data)
    info = await bus.jetstream.stream_info(S.EVENTS_STREAM)
    info.config.max_bytes = 512 * 1024 * 1024  # the hub engine's log.max_bytes: 512 MiB
    await bus.jetstream.update_stream(info.config)
    res = run_cli(["status", "--at", "3"], base_env(tmp_path, SWARM_NATS_URL=nats_server.url))
    assert res.returncode == 0, res.stderr
    after = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).config.max_bytes
    assert after == 512 * 1024 * 1024, f"status --at set the shared log's max_bytes to {after}"


def test_export_masks_the_configured_nats_credentials_seed(tmp_path: Path) -> None:
    """export-log promises 'secrets never included' and masks cfg.secrets + url_logins + key-shaped strings
    (sk-or-, sk-, swarm-nats-). The NATS login of a hub deployment is a .creds file or an nkey seed file
    (nats.creds, nats.nkey_seed): the app reads them to connect, but neither their seed (SU…, 58 base32
    characters) nor the user JWT is a 'secret' option nor key-shaped, so a task like 'why does my login fail?
    <pasted creds>' is exported with the seed in clear: whoever gets the shared file can log in as that user."""
    from swarm_tui.cli.export import url_logins
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.history.export import Scrubber
    from tests.support.env import base_env

    seed = "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTAM"
    creds = tmp_path / "user.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig\n"
        "------END NATS USER JWT------\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    cfg = load_config(None, base_env(tmp_path, SWARM_NATS_CREDS=str(creds)))
    task = Task(id="t-1", text=f"my hub login fails, here is my creds file:\n{creds.read_text()}", created_at=T0)
    out = Scrubber(cfg.secrets + url_logins(cfg)).scrub(_stored(1, task))  # as export_log scrubs every event
    assert seed not in out.data.decode(), "the nkey seed of nats.creds is in the exported event"


def test_export_masks_a_key_after_an_escaped_newline() -> None:
    """The key-shaped pattern starts with ``\\b``: a key glued to a word character is not masked. Text that
    quotes JSON or a Python string holds escapes as characters ('...\\nsk-or-v1-…', '%3Dsk-or-v1-…' in a URL):
    there 'n' or 'D' touches the key, so an answer quoting a config or a request log is exported with a working
    OpenRouter key that is not the configured one (another person's, a rotated one)."""
    from swarm_tui.engine.history.export import Scrubber

    key = "sk-or-v1-" + "0123456789abcdef" * 4
    texts = [f'env = "A=1\\n{key}"', f"https://example.com/cb?token%3D{key}"]
    for text in texts:
        task = Task(id="t-1", text=text, created_at=T0)
        out = Scrubber([]).scrub(_stored(1, task))
        assert key not in out.data.decode(), text


async def test_reading_a_range_of_deleted_events_at_the_logs_end_never_returns(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """BusLog.read runs an ordered consumer from start_seq and waits on its queue until a message at or past
    end_seq, or one with num_pending 0, arrives. When every event from start_seq to the stream's last_seq was
    deleted (last_seq is kept), no message ever arrives and ``await queue.get()`` waits forever. The replay's
    Timeline._next asks exactly that after the last stored event (start = last stored + 1 <= bounds.last_seq):
    the right arrow or play at the end of such a log never returns and the timeline is stuck."""
    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.history.buslog import BusLog

    for st in stored_log(1, t0=time.time() - 3600, garbage=False):
        await bus.publish(st.subject, st.data)
    last = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.last_seq
    await bus.jetstream.delete_msg(S.EVENTS_STREAM, last)

    async def read() -> list[Stored]:
        return [s async for s in BusLog(bus).read(last, last + 255)]

    try:
        got = await asyncio.wait_for(read(), 3)
    except TimeoutError:
        pytest.fail(f"BusLog.read({last}, {last + 255}) over a deleted tail did not return in 3 s")
    assert got == []

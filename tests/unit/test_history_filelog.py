"""An exported log file read back: untrusted input, so every way it can be wrong is one line naming the line,
and a forged event in it is refused when folded, as the live reader refuses it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.wire import ControlEvent, Task
from swarm_tui.engine.errors import SwarmError, UsageError
from swarm_tui.engine.history import filelog
from swarm_tui.engine.history.filelog import read_log_file, write_log_file
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.source import Stored

T0 = 1_900_000_000.0


def _task(seq: int, tid: str) -> Stored:
    return Stored(seq, T0 + seq, S.evt("task", tid), Task(id=tid, text=f"text {tid}", created_at=T0).to_bytes())


def _line(seq: int, tid: str = "t-1") -> str:
    return filelog.line_of(_task(seq, tid))


def _file(tmp_path: Path, *lines: str | bytes) -> Path:
    p = tmp_path / "run.jsonl"
    p.write_bytes(b"\n".join(x.encode() if isinstance(x, str) else x for x in lines) + b"\n")
    return p


def _refused(path: Path) -> str:
    with pytest.raises(UsageError) as err:
        read_log_file(path)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


async def test_written_whole_private_and_read_back_the_same(tmp_path: Path) -> None:
    events = [_task(1, "t-1"), _task(2, "t-2"), _task(5, "t-3")]
    p = tmp_path / "out.jsonl"
    assert write_log_file(p, events) == 3
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary file left
    log = read_log_file(p)
    assert [(s.seq, s.time, s.subject) for s in log.events] == [(s.seq, s.time, s.subject) for s in events]
    assert sorted((await fold_to(log, 5, max_scale=50)).state.tasks) == ["t-1", "t-2", "t-3"]


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    p = tmp_path / "out.jsonl"
    p.write_text("mine\n")
    with pytest.raises(UsageError, match="exists: give --force"):
        write_log_file(p, [_task(1, "t-1")])
    assert p.read_text() == "mine\n" and len(list(tmp_path.iterdir())) == 1
    assert write_log_file(p, [_task(1, "t-1")], force=True) == 1
    assert json.loads(p.read_text())["seq"] == 1


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def events() -> list[Stored]:
        raise RuntimeError("the bus went away")

    p = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with filelog.NewLogFile(p) as out:
            out.write(_task(1, "t-1"))
            events()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SwarmError, match="cannot write"):
        write_log_file(tmp_path / "no-such-dir" / "out.jsonl", [])


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ((_line(1), "{not json"), "line 2 is not an event"),
        ((_line(1), b"\x00\xff\xfe binary \x89PNG"), "line 2 is not an event"),
        (('{"seq": 1, "time": 1, "subject": "x"}',), "line 1 is not an event"),
        (('{"seq": true, "time": 1, "subject": "x", "event": {}}',), "line 1 is not an event"),
        (('{"seq": 1, "time": NaN, "subject": "x", "event": {}}',), "line 1 is not an event"),
        (('{"seq": 0, "time": 1, "subject": "x", "event": {}}',), "line 1 is not an event"),
        (('{"seq": 1, "time": 1, "subject": "x", "event": []}',), "line 1 is not an event"),
        (("[" * 100_000,), "line 1 is not an event"),
        ((_line(1), _line(2), _line(2, "t-2")), "line 3 has seq 2 after seq 2"),
        ((_line(3), "", _line(2)), "line 3 has seq 2 after seq 3"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_line(tmp_path: Path, lines: tuple[str | bytes, ...], says: str) -> None:
    assert says in _refused(_file(tmp_path, *lines))


def test_too_big_a_file_or_line_or_no_file_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "cannot read" in _refused(tmp_path / "absent.jsonl")
    assert "is not a file" in _refused(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "is not a file" in _refused(fifo)  # refused without waiting for a writer
    monkeypatch.setattr(filelog, "MAX_LINE_BYTES", 300)
    assert "line 2 is" in _refused(_file(tmp_path, _line(1), _line(2).replace("text t-1", "x" * 300)))
    monkeypatch.setattr(filelog, "MAX_FILE_BYTES", 1000)
    assert "is over" in _refused(_file(tmp_path, *[_line(i) for i in range(1, 20)]))


async def test_a_forged_event_in_a_file_is_refused_when_folded(tmp_path: Path) -> None:
    forged = ControlEvent(what="scale", value=500, at=T0)  # out of range
    lying = Stored(
        3, T0 + 3, S.evt("task", "t-9"), Task(id="t-2", text="on another's subject", created_at=T0).to_bytes()
    )
    p = _file(
        tmp_path,
        _line(1),
        filelog.line_of(Stored(2, T0 + 2, S.evt("control", "scale"), forged.to_bytes())),
        filelog.line_of(lying),
        '{"seq": 4, "time": 1900000004, "subject": "swarm.evt.task.t-5", "event": {"type": "task", "id": 5}}',
    )
    fold = await fold_to(read_log_file(p), 4, max_scale=50)
    assert list(fold.state.tasks) == ["t-1"] and fold.state.scale is None and fold.skipped == 3

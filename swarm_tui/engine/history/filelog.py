"""A log in a file: what ``export-log`` writes and ``replay --file`` reads, with no bus at all.

JSON Lines, one stored event a line: ``{"seq": 12, "time": 1764950400.123, "subject": "swarm.evt.task.t-…",
"event": {…}}``, where ``event`` is the message exactly as the bus carries it (the wire format), in log order,
each sequence number once. The file is written beside its destination and renamed into place whole (never half
written), mode 0600 (the events say what the tasks were about).

A reader treats the file as untrusted input. It is read whole into memory, so it is bounded: at most
``MAX_FILE_BYTES`` (512 MiB, twice the event log's default cap) and ``MAX_LINE_BYTES`` a line. A line that is not
an event of this format (not JSON, binary junk, a missing or mistyped field, a time that is not a number from 1970
to the year 9999), a sequence number repeated or going back: a one-line ``UsageError`` naming the line, nothing
read. Stored times may go back (a server's clock stepped back does that to a bus log too): the timeline's jumps
never move against their direction (docs/bus.md). An event that parses but is forged (a wrong subject, a bad
field, a time ahead of its storing) is kept here and refused when it is folded, as the live reader refuses it
(``fold.Fold``: decode, then ``trust.refusal``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from swarm_tui.engine.bus.wire import MAX_MSG_BYTES
from swarm_tui.engine.errors import SwarmError, UsageError
from swarm_tui.engine.history.source import MemoryLog, Stored

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_LINE_BYTES = 4 * MAX_MSG_BYTES  # an event of the largest size, with every character escaped in the worst case
MAX_SEQ = 2**63 - 1  # JetStream's sequence numbers are uint64; no log reaches this
# A stored time is a clock's (from 1970): at most the last day of the year 9999 less one, so it is a date in every
# time zone (datetime's range ends with that year)
MAX_TIME = 253_402_214_400 - 86_400
PRIVATE_FILE = 0o600


def line_of(st: Stored) -> str:
    """One stored event as a line of the file (no newline)."""
    event = json.loads(st.data)
    return json.dumps({"seq": st.seq, "time": st.time, "subject": st.subject, "event": event}, ensure_ascii=False)


class NewLogFile:
    """The file being written: a private temporary file beside ``path``, put in place when the ``with`` ends
    without an error (removed when it ends with one). An existing ``path`` is refused unless ``force``."""

    def __init__(self, path: Path, *, force: bool = False) -> None:
        self.path, self.force = path, force
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.count = 0
        refuse_existing(path, force)

    def __enter__(self) -> NewLogFile:
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except OSError as exc:
            raise _cannot_write(self.path, exc) from None
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        return self

    def write(self, st: Stored) -> None:
        self.file.write(line_of(st) + "\n")
        self.count += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            if kind is None:
                self._put_in_place()
        except OSError as err:
            raise _cannot_write(self.path, err) from None
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    def _put_in_place(self) -> None:
        if self.force:
            os.replace(self.tmp, self.path)
            return
        try:
            os.link(self.tmp, self.path)  # fails if a file appeared there meanwhile: it is never overwritten
        except FileExistsError:
            refuse_existing(self.path, False)
        except OSError:  # a file system without hard links
            refuse_existing(self.path, False)
            os.replace(self.tmp, self.path)


def refuse_existing(path: Path, force: bool) -> None:
    if not force and (path.exists() or path.is_symlink()):
        raise UsageError(f"{_shown(path)} exists: give --force to replace it, or another --out")


def write_log_file(path: Path, events: Iterable[Stored], *, force: bool = False) -> int:
    """Write ``events`` to ``path`` (whole, 0600); the number written."""
    with NewLogFile(path, force=force) as out:
        for st in events:
            out.write(st)
    return out.count


def read_log_file(path: Path) -> MemoryLog:
    """The events of a file ``export-log`` wrote; anything else is a one-line ``UsageError`` (module doc)."""
    raw = _read_bounded(path)
    events: list[Stored] = []
    last = 0
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            raise UsageError(
                f"{_shown(path)}: line {n} is {len(line):,} bytes; an event's line is at most {MAX_LINE_BYTES:,}"
            )
        st = _event_of(line)
        if st is None:
            raise UsageError(f"{_shown(path)}: line {n} is not an event of an exported log (export-log writes them)")
        if st.seq <= last:
            raise UsageError(
                f"{_shown(path)}: line {n} has seq {st.seq} after seq {last}: an exported log has each event once, "
                "in log order"
            )
        last = st.seq
        events.append(st)
    return MemoryLog(events)


def _read_bounded(path: Path) -> bytes:
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # before opening: a FIFO would wait for a writer
            raise UsageError(f"{_shown(path)} is not a file (give a file export-log wrote)")
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # bounded even if it grew since
    except OSError as exc:
        raise UsageError(f"cannot read {_shown(path)}: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(
            f"{_shown(path)} is over {MAX_FILE_BYTES // 2**20} MiB, more than a log file may be: "
            "export less of the log (export-log --task or --since)"
        )
    return raw


def _event_of(line: bytes) -> Stored | None:
    try:
        obj = json.loads(line)
        seq, t, subject, event = obj["seq"], obj["time"], obj["subject"], obj["event"]
        data = json.dumps(event, ensure_ascii=False).encode()
    except (ValueError, KeyError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    ok_seq = isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_SEQ
    # compared, never converted: a JSON integer of 400 digits does not fit a float (OverflowError); NaN compares False
    ok_time = isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= MAX_TIME
    if not (ok_seq and ok_time and isinstance(subject, str) and isinstance(event, dict)):
        return None
    return Stored(seq, float(t), subject, data)


def _cannot_write(path: Path, exc: OSError) -> SwarmError:
    return SwarmError(f"cannot write {_shown(path)}: {exc.strerror or type(exc).__name__}")


def _shown(path: Path) -> str:
    """The path made printable for a one-line message (a file name may hold control characters)."""
    return "".join(c if c.isprintable() else "?" for c in str(path))

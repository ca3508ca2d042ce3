"""A log in a file: what ``export-log`` writes and ``replay --file`` reads, with no bus at all.

JSON Lines, one stored event a line: ``{"seq": 12, "time": 1764950400.123, "subject": "swarm.evt.task.t-…",
"event": {…}}``, where ``event`` is the message exactly as the bus carries it (the wire format). A reader treats
the file as untrusted input: every event is decoded and checked again when it is folded (``fold.Fold``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from swarm_tui.engine.errors import UsageError
from swarm_tui.engine.history.source import MemoryLog, Stored


def line_of(st: Stored) -> str:
    """One stored event as a line of the file (no newline)."""
    event = json.loads(st.data)
    return json.dumps({"seq": st.seq, "time": st.time, "subject": st.subject, "event": event}, ensure_ascii=False)


def write_log_file(path: Path, events: Iterable[Stored]) -> int:
    """Write ``events`` to ``path``; the number written."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for st in events:
            f.write(line_of(st) + "\n")
            n += 1
    return n


def read_log_file(path: Path) -> MemoryLog:
    """The events of a file ``export-log`` wrote; a line that is not one is a one-line ``UsageError``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    events: list[Stored] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            seq, t, subject, event = obj["seq"], obj["time"], obj["subject"], obj["event"]
            ok = isinstance(seq, int) and seq >= 1 and isinstance(t, int | float) and isinstance(subject, str)
            if not ok or not isinstance(event, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise UsageError(f"{path}: line {n} is not an event of an exported log (export-log writes them)") from None
        events.append(Stored(seq, float(t), subject, json.dumps(event).encode()))
    return MemoryLog(events)

"""``export-log``: events of a log written to a file (``filelog``'s format) to share a run or replay it elsewhere.

All of the log from a point, or one task's own events: the task, the decisions that plan it, their approvals,
the events of its workers (started, done, failed), their results and spend, and the controls that name one of
its workers, answers or decisions (cancel, promote). A decision that planned several tasks is kept whole.

Events carry no secret by design, but a person may paste one into a task's text or an answer: every string of
every event is scrubbed of the configured secrets and of anything shaped like an API key (the logger's
``Redactor``) before it is written. A stored message that is not an event at all (it does not decode) is left
out and counted. Reading the log publishes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus.wire import Event, decode
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.history.filelog import NewLogFile
from swarm_tui.engine.history.source import LogSource, Stored
from swarm_tui.engine.logs import Redactor


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: how many events, their first and last sequence (0 when none), and how many stored
    messages were left out because they are not events."""

    count: int
    first_seq: int
    last_seq: int
    skipped: int


class TaskEvents:
    """Which events are one task's, learnt in log order (a decision names the task, an approval its decision)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.decisions: set[str] = set()
        self.names: set[str] = set()  # its workers' and jobs' ids: what a cancel or a promote targets

    def wants(self, ev: Event) -> bool:
        if ev.type == "task":
            return ev.id == self.task_id
        if ev.type == "decision":
            if self.task_id in ev.task_ids or any(p.task_id == self.task_id for p in ev.plan):
                self.decisions.add(ev.id)
                return True
            return False
        if ev.type == "approval":
            return ev.decision_id in self.decisions
        if ev.type in ("worker", "result", "spend"):
            if ev.task_id != self.task_id:
                return False
            self.names.add(ev.worker_id)
            self.names.add(ev.job_id if ev.type != "spend" else ev.id)
            return True
        if ev.type == "control":  # promote: a job id; cancel: "worker:ID", "decision:ID" (or "all": not its own)
            named = ev.target.split(":", 1)[-1]
            return bool(named) and (named in self.names or named in self.decisions)
        return False


class Scrubber:
    """Every string of an event with the secrets masked (``***``, as the log file masks them)."""

    def __init__(self, secrets: list[str]) -> None:
        self.redactor = Redactor(secrets)

    def scrub(self, st: Stored) -> Stored:
        obj = json.loads(st.data)
        clean = self._walk(obj)
        if clean == obj:
            return st
        return Stored(st.seq, st.time, st.subject, json.dumps(clean, ensure_ascii=False).encode())

    def _walk(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.redactor.scrub(v)
        if isinstance(v, list):
            return [self._walk(x) for x in v]
        if isinstance(v, dict):
            return {self._walk(k): self._walk(x) for k, x in v.items()}
        return v


async def export_log(
    source: LogSource,
    path: Path,
    *,
    start_seq: int = 1,
    task_id: str | None = None,
    secrets: list[str] | None = None,
    force: bool = False,
) -> Exported:
    """Write the events with ``seq >= start_seq`` (only ``task_id``'s when given) to ``path``, up to the log's
    last event when the export began. ``path`` is created whole or not at all (``filelog.NewLogFile``)."""
    end = (await source.bounds()).last_seq
    scrubber = Scrubber(secrets or [])
    wanted = TaskEvents(task_id) if task_id is not None else None
    first = last = skipped = 0
    # a task's decisions and workers are learnt from its first event on, whatever ``start_seq`` is
    read_from = 1 if wanted is not None else start_seq
    with NewLogFile(path, force=force) as out:
        async for st in source.read(read_from, end):
            try:
                ev = decode(st.data)
            except InvalidMessage:
                skipped += st.seq >= start_seq
                continue
            if (wanted is not None and not wanted.wants(ev)) or st.seq < start_seq:
                continue
            out.write(scrubber.scrub(st))
            first, last = first or st.seq, st.seq
    return Exported(out.count, first, last, skipped)

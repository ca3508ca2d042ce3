"""Where the past comes from: the stored events of the log, in order, with their log position and time.

Two sources give the same ``Stored`` records: the bus's event stream (``BusLog``, JetStream's sequence and
stored time) and a file written by ``export-log`` (``FileLog``). Whatever reads the past (the fold up to a
point, the replay's timeline, the history) takes a ``LogSource`` and does not care which.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Stored:
    """One event as the log stored it: its sequence number (from 1), when the log stored it (UNIX seconds), its
    subject and its bytes (the wire format, not yet decoded: a reader decodes and checks it as it would live)."""

    seq: int
    time: float
    subject: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Bounds:
    """The log's extent: first and last sequence (0, 0 when empty), their times, how many events and bytes."""

    first_seq: int
    last_seq: int
    first_time: float
    last_time: float
    count: int
    size_bytes: int

    @property
    def empty(self) -> bool:
        return self.count == 0


class LogSource(Protocol):
    """The stored events of one log, read-only."""

    async def bounds(self) -> Bounds:
        """The log's extent now (a live log grows)."""
        ...

    def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        """The events with ``start_seq <= seq <= end_seq``, in order (a gap where the log lost or aged one out)."""
        ...

    async def seq_at(self, t: float) -> int:
        """The sequence of the first event stored at or after ``t``; ``last_seq + 1`` when there is none."""
        ...


class MemoryLog:
    """A log held in memory (an exported file once read, or a test's events): the same answers as the bus's."""

    def __init__(self, events: list[Stored]) -> None:
        self.events = sorted(events, key=lambda s: s.seq)
        self._seqs = [s.seq for s in self.events]

    async def bounds(self) -> Bounds:
        if not self.events:
            return Bounds(0, 0, 0.0, 0.0, 0, 0)
        first, last = self.events[0], self.events[-1]
        size = sum(len(s.data) for s in self.events)
        return Bounds(first.seq, last.seq, first.time, last.time, len(self.events), size)

    async def read(self, start_seq: int, end_seq: int) -> AsyncIterator[Stored]:
        i = bisect_left(self._seqs, start_seq)
        while i < len(self.events) and self.events[i].seq <= end_seq:
            yield self.events[i]
            i += 1

    async def seq_at(self, t: float) -> int:
        for s in self.events:  # times are in log order, but a file may hold them otherwise: the first at or after
            if s.time >= t:
                return s.seq
        return (self.events[-1].seq + 1) if self.events else 1

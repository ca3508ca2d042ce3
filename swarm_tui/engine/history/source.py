"""Where the past comes from: the stored events of the log, in order, with their log position and time.

Two sources give the same ``Stored`` records: the bus's event stream (``BusLog``, JetStream's sequence and
stored time) and a file written by ``export-log`` (``FileLog``). Whatever reads the past (the fold up to a
point, the replay's timeline, the history) takes a ``LogSource`` and does not care which.
"""

from __future__ import annotations

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

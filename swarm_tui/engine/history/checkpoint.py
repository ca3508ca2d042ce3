"""Checkpoints of the fold: the projection kept every ``every`` events, so a late point of a long log is folded
from the nearest one instead of from the start (``fold.Checkpoints``).

A checkpoint is one document: a header line (format, the layout of the state it was written from, the log's
identity, the sequence, the body's length and CRC-32), then the fold as JSON. ``CheckpointStore`` keeps them in
memory and, given a directory, in files there (``<data dir>/history/``), keyed by the log's identity (the
stream's creation time) so another log's file is never used, and by the ``swarm.max_scale`` it was folded under
(the fold refuses a scale control above it, so another value folds another state). A file that is truncated,
corrupt, of another format or layout, or of another log is ignored (one log line) and the point is folded from
the log instead.

Loading builds the models WITHOUT validating them again: the file is our own, written from events that were
decoded and checked when they were folded, into the user's private data dir, and only the read-only views of the
past (``status --at``, replay, history) load one; the live engine and app never do (docs/security.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import zlib
from bisect import bisect_right, insort
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from swarm_tui.engine.bus.wire import (
    Clamp,
    Decision,
    MergeChoice,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    Usage,
    WorkerEvent,
)
from swarm_tui.engine.history.fold import Fold
from swarm_tui.engine.projection.state import DecisionView, SpendTotals, SwarmState, TaskView

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the fold's clock kept, the key holds max_scale
EVERY = 5_000  # events between two checkpoints: a point folds at most EVERY - 1 events past one (docs/performance.md)
KEEP = 24  # checkpoints kept for one log (the newest): 120,000 events of them
MAX_BYTES = 512 * 1024 * 1024  # and at most this much of them on disk
_MAGIC = b"swarm-tui-checkpoint"
_MODELS: tuple[type[BaseModel], ...] = (
    Task,
    Decision,
    PlanItem,
    Clamp,
    MergeChoice,
    WorkerEvent,
    Result,
    Usage,
    SpendEntry,
)
_VIEWS: tuple[type[Any], ...] = (TaskView, DecisionView, SpendTotals)


def _layout() -> str:
    """A fingerprint of the shapes a checkpoint holds: a file written by a version whose models or views had other
    fields is not loaded (it would build objects that lack, or carry stray, fields)."""
    parts = [f"{c.__name__}:{','.join(c.model_fields)}" for c in _MODELS]
    parts += [f"{c.__name__}:{','.join(f.name for f in dataclasses.fields(c))}" for c in _VIEWS]
    return f"{zlib.crc32(';'.join(parts).encode()):08x}"


LAYOUT = _layout()


# ---------------------------------------------------------------------------------------------- encoding
def _plain(o: Any) -> Any:
    if isinstance(o, BaseModel):
        return o.__dict__
    raise TypeError(f"a checkpoint cannot hold a {type(o).__name__}")


def _view(v: Any, **swap: Any) -> dict[str, Any]:
    return {f.name: swap.get(f.name, getattr(v, f.name)) for f in dataclasses.fields(v)}


def fold_doc(fold: Fold) -> dict[str, Any]:
    s = fold.state
    return {
        "seq": fold.seq,
        "time": fold.time,
        "clock": fold.clock.now,  # the latest stored time seen: stored times may go back, so not always ``time``
        "skipped": fold.skipped,
        "session_start": s.session_start,
        "tasks": [_view(t, task=t.task.__dict__) for t in s.tasks.values()],
        "decisions": [_view(d, decision=_decision_doc(d.decision)) for d in s.decisions.values()],
        "workers": [w.__dict__ for w in s.workers.values()],
        "results": [r.__dict__ | {"usage": r.usage.__dict__} for r in s.results.values()],
        "duplicate_results": s.duplicate_results,
        "spend_entries": [e.__dict__ for e in s.spend_entries.values()],
        "duplicate_spend": s.duplicate_spend,
        "spend_days": s.spend_days,
        "spend": _view(s.spend),
        "scalars": {k: getattr(s, k) for k in _SCALARS},
        "seen": s.seen,
        "refused_controls": s.refused_controls,
    }


def _decision_doc(d: Decision) -> dict[str, Any]:
    """A decision's fields with its nested models as theirs (no ``default`` hook: the encoder stays in C)."""
    nested = {k: [m.__dict__ for m in getattr(d, k)] for k in ("plan", "clamps", "merge")}
    return d.__dict__ | nested


_SCALARS = ("scale", "commanded_scale", "paused", "ceiling_usd", "last_seq", "events", "version")


_ENCODE = json.JSONEncoder(default=_plain, separators=(",", ":"), allow_nan=False).encode


def _sliced(doc: dict[str, Any]) -> str:
    """``doc`` as JSON, one list item at a time: run in a thread, this lets the event loop in between (one
    ``json.dumps`` of the whole document holds the interpreter lock throughout: ~130 ms for 20 MB)."""
    parts = []
    for k, v in doc.items():
        value = "[" + ",".join([_ENCODE(x) for x in v]) + "]" if isinstance(v, list) else _ENCODE(v)
        parts.append(_ENCODE(k) + ":" + value)
    return "{" + ",".join(parts) + "}"


def encode(fold: Fold, identity: str, *, sliced: bool = False) -> bytes:
    """The fold as a checkpoint's bytes (a copy: the fold may move on at once). ``sliced``: about twice the time,
    but a thread that runs it gives the event loop its turns."""
    doc = fold_doc(fold)
    body = (_sliced(doc) if sliced else _ENCODE(doc)).encode()
    head = b" ".join(
        [_MAGIC, str(FORMAT).encode(), LAYOUT.encode(), _token(identity, fold.max_scale), str(fold.seq).encode()]
        + [str(len(body)).encode(), f"{zlib.crc32(body):08x}".encode()]
    )
    return head + b"\n" + body


def _token(identity: str, max_scale: int) -> bytes:
    """The key of a log's checkpoints: its identity and the max_scale they were folded under."""
    return f"{identity or '-'}@{max_scale}".replace(" ", "_").replace("/", "_").encode()


class BadCheckpoint(ValueError):
    """Not a checkpoint this version wrote for this log (the reason is the message)."""


def decode(data: bytes, *, identity: str, max_scale: int) -> Fold:
    """A fresh ``Fold`` from a checkpoint's bytes; ``BadCheckpoint`` for anything else."""
    head, _, body = data.partition(b"\n")
    parts = head.split(b" ")
    if len(parts) != 7 or parts[0] != _MAGIC:
        raise BadCheckpoint("not a checkpoint")
    if parts[1] != str(FORMAT).encode() or parts[2] != LAYOUT.encode():
        raise BadCheckpoint("written by another version")
    if parts[3] != _token(identity, max_scale):
        raise BadCheckpoint("of another log or swarm.max_scale")
    if parts[5] != str(len(body)).encode() or parts[6] != f"{zlib.crc32(body):08x}".encode():
        raise BadCheckpoint("truncated or corrupt (its checksum does not match)")
    try:
        with paused_gc():
            return _build(json.loads(body), max_scale)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise BadCheckpoint(f"unreadable ({type(exc).__name__})") from None


@contextlib.contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """No cycle collection while a block makes many objects that all live on (a checkpoint's models, a fold's):
    the collector would walk the growing heap again and again for nothing (4x the time of a load).

    ``freeze``: then move every object to the permanent generation (``gc.freeze``), or the first collections after
    walk them all once more. Only for a one-shot command (``status --at``): a frozen object is never collected, so
    a process that lives on (replay stepping back, the app's timeline) would keep every fold it let go of."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was:
            gc.enable()


_set = object.__setattr__


def _model(cls: type[Any], d: dict[str, Any]) -> Any:
    """A model from its own fields, not validated again (see the module's docstring for why that is allowed)."""
    m = object.__new__(cls)
    _set(m, "__dict__", d)
    _set(m, "__pydantic_fields_set__", set(d))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def _decision(d: dict[str, Any]) -> Decision:
    d["plan"] = [_model(PlanItem, p) for p in d["plan"]]
    d["clamps"] = [_model(Clamp, c) for c in d["clamps"]]
    d["merge"] = [_model(MergeChoice, m) for m in d["merge"]]
    d["item_costs"] = [tuple(c) for c in d["item_costs"]]
    return _model(Decision, d)  # type: ignore[no-any-return]


def _result(d: dict[str, Any]) -> Result:
    d["usage"] = _model(Usage, d["usage"])
    return _model(Result, d)  # type: ignore[no-any-return]


def _build(doc: dict[str, Any], max_scale: int) -> Fold:
    s = SwarmState(session_start=float(doc["session_start"]))
    for t in doc["tasks"]:
        t["task"] = _model(Task, t["task"])
        s.tasks[t["task"].id] = TaskView(**t)
    for d in doc["decisions"]:
        d["decision"] = _decision(d["decision"])
        s.decisions[d["decision"].id] = DecisionView(**d)
    for w in doc["workers"]:
        s.workers[w["worker_id"]] = _model(WorkerEvent, w)
    for r in doc["results"]:
        s.results[r["job_id"]] = _result(r)
    for e in doc["spend_entries"]:
        s.spend_entries[e["id"]] = _model(SpendEntry, e)
    s.duplicate_results = Counter(doc["duplicate_results"])
    s.duplicate_spend = Counter(doc["duplicate_spend"])
    s.spend_days = defaultdict(float, doc["spend_days"])
    sp = doc["spend"]
    sp["by_model"] = defaultdict(float, sp["by_model"])
    sp["by_decision"] = defaultdict(float, sp["by_decision"])
    s.spend = SpendTotals(**sp)
    for k in _SCALARS:
        setattr(s, k, doc["scalars"][k])
    s.seen = dict(doc["seen"])
    s.refused_controls = Counter(doc["refused_controls"])
    fold = Fold(max_scale=max_scale, state=s, seq=int(doc["seq"]), time=float(doc["time"]))
    fold.skipped = int(doc["skipped"])
    fold.clock.now = float(doc["clock"])
    return fold


# ---------------------------------------------------------------------------------------------- the store
class CheckpointStore:
    """``fold.Checkpoints`` kept in memory and, with a ``directory``, in files there for the log ``identity``.

    ``offer`` keeps one checkpoint per ``every`` events (the first fold that reaches each multiple); ``nearest``
    loads the latest one at or before a point as a fresh ``Fold``. Files beyond ``keep``, past ``max_bytes``,
    older than the log's first event (``first_seq``: they can no longer be continued) or of another log are
    removed when one is written."""

    def __init__(
        self,
        *,
        max_scale: int,
        identity: str = "",
        directory: Path | None = None,
        every: int = EVERY,
        keep: int = KEEP,
        max_bytes: int = MAX_BYTES,
        first_seq: int = 0,
    ) -> None:
        self.max_scale, self.identity, self.directory = max_scale, identity, directory
        self.every, self.keep, self.max_bytes, self.first_seq = max(1, every), max(1, keep), max_bytes, first_seq
        self._mem: dict[int, bytes] = {}
        self._seqs: list[int] = []  # every kept sequence, memory and files, sorted
        self._buckets: set[int] = set()
        self._folded: dict[int, int] = {}  # events folded up to a checkpoint this store made (a file's: unknown)
        self.written = 0  # checkpoints encoded by this store (the bench and tests read it)
        for seq in self._files():
            self._note(seq)

    def _note(self, seq: int) -> None:
        if seq not in self._seqs:
            insort(self._seqs, seq)
        self._buckets.add(seq // self.every)

    def _path(self, seq: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{_token(self.identity, self.max_scale).decode()}-{seq:012d}.ckpt"

    def _files(self) -> list[int]:
        """The sequences of this log's files (none without a directory)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        prefix = _token(self.identity, self.max_scale).decode() + "-"
        out = []
        for p in self.directory.glob("*.ckpt"):
            if p.name.startswith(prefix) and p.stem[len(prefix) :].isdigit():
                out.append(int(p.stem[len(prefix) :]))
        return sorted(s for s in out if s >= self.first_seq)

    def due(self, seq: int) -> bool:
        return seq >= self.every and seq // self.every not in self._buckets

    def offer(self, fold: Fold) -> None:
        if not self.due(fold.seq) or self._sparse(fold):
            return
        try:
            data = encode(fold, self.identity)
        except (ValueError, TypeError, RecursionError) as exc:  # a total gone to inf (allow_nan=False): fold on
            log.warning("history: no checkpoint at event %d (%s): it is folded from the log", fold.seq, exc)
            self._buckets.add(fold.seq // self.every)  # once a bucket, not again at every event of it
            return
        self.put(data, fold.seq)

    def _sparse(self, fold: Fold) -> bool:
        """Fewer than ``every`` events folded since the checkpoint before: a sparse log (a file of one task of a
        long log, seqs far apart) would otherwise be encoded, all of the state, at nearly every event."""
        folded = fold.state.events + fold.skipped
        i = bisect_right(self._seqs, fold.seq - 1)
        before = self._folded.get(self._seqs[i - 1], -1) if i else 0
        if before >= 0 and folded - before < self.every:
            return True
        self._folded[fold.seq] = folded
        return False

    def put(self, data: bytes, seq: int) -> None:
        """Keep an encoded checkpoint (``encode``): in memory, and in a file when the store has a directory."""
        self.written += 1
        self._note(seq)
        if self.directory is None:
            self._mem[seq] = data
            self.prune()
            return
        tmp = self._path(seq).with_suffix(".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._path(seq))
        except OSError as exc:  # a full or read-only disk: keep it in memory, fold as before
            log.warning("history: cannot write a checkpoint in %s: %s", self.directory, exc.strerror or exc)
            with contextlib.suppress(OSError):  # a partial file would keep a full disk full
                tmp.unlink()
            self._mem[seq] = data
            self.prune()
            return
        self.prune()

    def nearest(self, seq: int) -> Fold | None:
        i = bisect_right(self._seqs, seq)
        while i > 0:
            i -= 1
            at = self._seqs[i]
            try:
                return decode(self._read(at), identity=self.identity, max_scale=self.max_scale)
            except (BadCheckpoint, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                log.warning("history: checkpoint at event %d ignored (%s): folding from the log", at, reason)
                self._forget(at)
                i = min(i, len(self._seqs))
        return None

    def _read(self, seq: int) -> bytes:
        if seq in self._mem:
            return self._mem[seq]
        return self._path(seq).read_bytes()

    def _forget(self, seq: int) -> None:
        self._mem.pop(seq, None)
        self._folded.pop(seq, None)
        if seq in self._seqs:
            self._seqs.remove(seq)
        self._buckets = {s // self.every for s in self._seqs}
        if self.directory is not None:
            with contextlib.suppress(OSError):
                self._path(seq).unlink()

    def prune(self) -> None:
        """Remove what is useless or too much: other logs' (or max_scales') files, those before the log's first
        event, the oldest beyond ``keep`` or beyond ``max_bytes``; in memory as on disk (a file's replay keeps
        them all in memory: a sparse file would keep a copy of the state for every event)."""
        if self.directory is not None:
            mine = {self._path(s).name for s in self._seqs}
            for p in self.directory.glob("*.ckpt"):
                if p.name not in mine:
                    with contextlib.suppress(OSError):
                        p.unlink()
        for s in [s for s in self._seqs if s < self.first_seq]:
            self._forget(s)
        while len(self._seqs) > self.keep:
            self._forget(self._seqs[0])
        sizes = {s: self._size(s) for s in self._seqs}
        while len(self._seqs) > 1 and sum(sizes[s] for s in self._seqs) > self.max_bytes:
            self._forget(self._seqs[0])

    def _size(self, seq: int) -> int:
        if seq in self._mem:
            return len(self._mem[seq])
        return _size(self._path(seq)) if self.directory is not None else 0


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


async def log_checkpoints(log: Any, *, max_scale: int, data: Path) -> CheckpointStore:
    """The store of the bus log ``log`` (a ``BusLog``): its files under ``<data>/history/``, keyed by the log's
    identity, those before its first event left out. What ``status --at``, ``replay`` and the app's timeline
    share, so one of them writes what the others load."""
    b = await log.bounds()
    return CheckpointStore(
        max_scale=max_scale, identity=await log.identity(), directory=data / "history", first_seq=b.first_seq
    )

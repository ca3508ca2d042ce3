"""Checkpoints of the fold: a state loaded from one is the state folded from the events; a bad file is ignored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from swarm_tui.engine.history.checkpoint import CheckpointStore, decode, encode
from swarm_tui.engine.history.fold import Fold, fold_to
from swarm_tui.engine.history.source import MemoryLog
from tests.support.past import stored_log


def _views(f: Fold) -> dict[str, Any]:
    s = f.state
    return {
        "snapshot": s.snapshot(),
        "where": (f.seq, f.time, f.skipped, s.last_seq, s.events, s.version, s.session_start),
        "models": (s.tasks, s.decisions, s.workers, s.results, s.spend_entries),
        "counts": (s.duplicate_results, s.duplicate_spend, s.refused_controls, dict(s.spend_days), s.seen),
        "spend": s.spend,
        "views": [
            (t.id, s.task_spend(t.id), s.task_round(t.id), s.task_results(t.id), s.promoted_result(t.id))
            for t in s.tasks.values()
        ],
        "derived": (
            [d.plan for d in s.pending_decisions()],
            [d.estimate for d in s.decisions.values()],
            s.pending_tasks(),
            s.live_workers(),
            s.today_spend(),
        ),
    }


def _fold(events: Any, end: int, store: Any = None) -> Fold:
    log = MemoryLog(events)
    if store is None:
        return asyncio.run(fold_to(log, end, max_scale=50))
    return asyncio.run(fold_to(log, end, max_scale=50, checkpoints=store))


def test_a_state_loaded_from_its_checkpoint_is_the_state_folded_from_the_events() -> None:
    events = stored_log(12)
    for end in (7, len(events) // 2, len(events)):
        folded = _fold(events, end)
        loaded = decode(encode(folded, "log-1"), identity="log-1", max_scale=50)
        assert _views(loaded) == _views(folded)
        # both move on alike: the loaded fold is a fresh one the caller owns
        for st in events[end:]:
            folded.apply(st)
            loaded.apply(st)
        assert _views(loaded) == _views(folded)
    assert folded.skipped == 1 and folded.state.spend.entries and folded.state.seen and folded.state.ceiling_usd


def test_the_store_keeps_one_every_n_and_folds_from_the_nearest(tmp_path: Path) -> None:
    events = stored_log(20)
    store = CheckpointStore(max_scale=50, identity="log-1", directory=tmp_path / "history", every=40)
    full = _fold(events, len(events), store)
    files = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert len(files) == len(events) // 40 and store.written == len(files)
    again = CheckpointStore(max_scale=50, identity="log-1", directory=tmp_path / "history", every=40)
    near = again.nearest(len(events))
    assert near is not None and near.seq == (len(events) // 40) * 40
    near.apply(events[near.seq])  # the copy is the caller's: the next one is fresh
    assert again.nearest(len(events)).seq == (len(events) // 40) * 40  # type: ignore[union-attr]
    assert _views(_fold(events, len(events), again)) == _views(full)
    assert again.written == 0
    # another log's store never uses these files, and writing removes them
    other = CheckpointStore(max_scale=50, identity="log-2", directory=tmp_path / "history", every=40)
    assert other.nearest(len(events)) is None


def test_a_truncated_corrupt_or_foreign_checkpoint_is_ignored_and_the_log_folded(tmp_path: Path, caplog: Any) -> None:
    events = stored_log(10)
    d = tmp_path / "history"
    store = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=50)
    full = _fold(events, len(events), store)
    paths = sorted(d.iterdir())
    assert len(paths) >= 2
    paths[-1].write_bytes(paths[-1].read_bytes()[:-100])  # truncated
    raw = paths[-2].read_bytes()
    paths[-2].write_bytes(raw.replace(b"question", b"questiox", 1))  # corrupt
    again = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=50)
    assert _views(_fold(events, len(events), again)) == _views(full)
    warned = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warned) == 2 and all("\n" not in w for w in warned)
    head, _, body = raw.partition(b"\n")
    parts = head.split(b" ")
    parts[1] = b"999"
    for bad in (b" ".join(parts) + b"\n" + body, b"", b"\n" + json.dumps({}).encode()):
        paths[0].write_bytes(bad)
        assert CheckpointStore(max_scale=50, identity="log-1", directory=d, every=50).nearest(60) is None


def test_pruned_by_count_bytes_and_the_logs_first_event(tmp_path: Path) -> None:
    events = stored_log(20)
    d = tmp_path / "history"
    store = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=20, keep=3)
    _fold(events, len(events), store)
    seqs = sorted(int(p.stem.split("-")[-1]) for p in d.iterdir())
    assert len(seqs) == 3 and seqs[-1] == (len(events) // 20) * 20
    small = CheckpointStore(max_scale=50, identity="log-1", directory=d, every=20, max_bytes=1, first_seq=seqs[1])
    small.prune()
    assert [int(p.stem.split("-")[-1]) for p in d.iterdir()] == [seqs[-1]]


def test_a_sparse_log_is_checkpointed_by_the_events_folded_not_by_its_seqs() -> None:
    from dataclasses import replace

    events = stored_log(2, garbage=False)
    sparse = [replace(st, seq=i * 1_000) for i, st in enumerate(events, 1)]  # one event every 1,000 seqs
    store = CheckpointStore(max_scale=50, every=10)
    fold = asyncio.run(fold_to(MemoryLog(sparse), sparse[-1].seq, max_scale=50, checkpoints=store))
    assert store.written == len(events) // 10  # one per 10 events folded, not one per event (each a new bucket)
    assert fold.seq == sparse[-1].seq

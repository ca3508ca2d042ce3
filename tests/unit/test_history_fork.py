"""A fold's fork (what a step back of the replay starts from) is the same state, and moves on alone."""

from __future__ import annotations

import asyncio

import pytest

from swarm_tui.engine.history import timeline as timeline_mod
from swarm_tui.engine.history.checkpoint import CheckpointStore, encode
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.fork import FORKED, fork
from swarm_tui.engine.history.source import MemoryLog
from swarm_tui.engine.history.timeline import Timeline
from swarm_tui.engine.history.when import Point
from swarm_tui.engine.projection.state import SwarmState
from tests.support.past import stored_log


def test_a_fork_copies_every_attribute_of_the_state() -> None:
    assert set(vars(SwarmState(session_start=0.0))) == FORKED  # a new one: copy it in fork.py


def test_a_fork_is_the_same_fold_and_moves_on_alone() -> None:
    events = stored_log(3)
    half = len(events) // 2
    fold = asyncio.run(fold_to(MemoryLog(events), half, max_scale=50))
    before = encode(fold, "x")
    copy = asyncio.run(fork(fold))
    assert encode(copy, "x") == before and copy.clock.now == fold.clock.now and copy.state is not fold.state
    for st in events[half:]:
        copy.apply(st)
    assert encode(fold, "x") == before  # the original did not move
    whole = asyncio.run(fold_to(MemoryLog(events), len(events), max_scale=50))
    assert encode(copy, "x") == encode(whole, "x")


async def test_steps_back_from_the_kept_fold_give_the_folds_from_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeline_mod, "BACK", 3)  # the kept fold is passed, moved nearer, and too far: each path
    monkeypatch.setattr(timeline_mod, "_FAR", 12)
    events = stored_log(4)
    log = MemoryLog(events)
    tl = Timeline(log, max_scale=50, checkpoints=CheckpointStore(max_scale=50, every=7))
    await tl.open(Point("seq", len(events)))
    await tl.jump(-1e9)
    await tl.goto(len(events))  # on: the kept fold is now far behind
    while await tl.step(-1):
        fresh = await fold_to(log, tl.seq, max_scale=50)
        assert encode(tl.fold, "x") == encode(fresh, "x"), tl.seq

"""The recorder (engine/recorder.py): publish first, then apply; with ``around``, apply after the block."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_tui.engine.bus.wire import ControlEvent, Msg, Task
from swarm_tui.engine.projection.recorder import Recorder
from swarm_tui.engine.projection.state import SwarmState


class FakeBus:
    def __init__(self, state: SwarmState, *, fail: bool = False) -> None:
        self.state = state
        self.fail = fail
        self.published: list[tuple[str, str | None, int]] = []  # (type, msg_id, events applied at that moment)

    async def publish_event(self, m: Msg, *, msg_id: str | None = None) -> Any:
        if self.fail:
            raise ConnectionError("bus down")
        self.published.append((getattr(m, "type", "?"), msg_id, self.state.events))
        return None


async def test_record_publishes_with_its_msg_id_then_applies() -> None:
    st = SwarmState()
    bus = FakeBus(st)
    record = Recorder(bus, st)
    await record(Task(id="t-a", text="x", created_at=1.0), msg_id="t-a")
    assert bus.published == [("task", "t-a", 0)]  # not applied before it was published
    assert "t-a" in st.tasks and st.last_seq == 0  # applied, with no log position of its own


async def test_nothing_is_applied_when_the_publish_fails() -> None:
    st = SwarmState()
    record = Recorder(FakeBus(st, fail=True), st)
    with pytest.raises(ConnectionError):
        await record(ControlEvent(what="pause", at=1.0))
    assert not st.paused and st.events == 0


async def test_around_applies_after_the_block_and_not_after_an_error() -> None:
    st = SwarmState()
    bus = FakeBus(st)
    record = Recorder(bus, st)
    async with record.around(ControlEvent(what="scale", value=4, at=1.0)):
        assert bus.published == [("control", None, 0)] and st.scale is None  # the KV mark goes here
    assert st.scale == 4
    with pytest.raises(RuntimeError):
        async with record.around(ControlEvent(what="scale", value=9, at=2.0)):
            raise RuntimeError("the KV put failed")
    assert st.scale == 4 and len(bus.published) == 2  # published (the log has it), not applied here

"""A read of the bus's log whose server stops answering mid-read ends with one line, never hangs (the timeline's
lock would then refuse every later key)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.history import buslog
from swarm_tui.engine.history.buslog import BusLog


class _Silent:
    """A JetStream that says it holds events and then delivers none."""

    async def stream_info(self, _: str) -> Any:
        return SimpleNamespace(state=SimpleNamespace(messages=3, first_seq=1, last_seq=3, bytes=30))

    async def get_msg(self, _: str, *, seq: int, **__: Any) -> Any:  # the first event is there to read
        return SimpleNamespace(seq=seq, time=None, subject="swarm.evt.task.t-1", data=b"{}")

    async def subscribe(self, *_: Any, **__: Any) -> Any:
        async def unsubscribe() -> None:
            pass

        return SimpleNamespace(unsubscribe=unsubscribe)


async def test_a_read_the_bus_stops_answering_ends_with_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buslog, "READ_IDLE_S", 0.05)
    log = BusLog(SimpleNamespace(jetstream=_Silent()))
    with pytest.raises(SwarmError, match="stopped sending events"):
        async for _ in log.read(1, 3):
            pass

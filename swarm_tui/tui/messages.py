"""The App's own messages: engine happenings turned into Textual messages. Frequent ones coalesce."""

from __future__ import annotations

from textual.message import Message

from swarm_tui.engine.info import EngineInfo


class StateChanged(Message):
    """Something in the event log moved; a burst (a replay, 50 workers finishing) becomes one message."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StateChanged)


class BusStateChanged(Message):
    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, BusStateChanged)


class InfoUpdated(Message):
    def __init__(self, info: EngineInfo) -> None:
        super().__init__()
        self.info = info

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, InfoUpdated)


class InfoMoved(Message):
    """The engine's info moved on its own (a RAM move): poll it now."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, InfoMoved)


class LinkReady(Message):
    """The engine (or the remote link) is running and caught up with the log."""


class RoomReady(Message):
    """The control room's panels are mounted: the App may draw into them, start its timers and the engine."""

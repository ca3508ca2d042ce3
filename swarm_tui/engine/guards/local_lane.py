"""The local lane: the conductor's model and local (ollama_chat/) workers take turns on this machine.

A 6 GB machine cannot run two local inferences at once, so every local inference holds the lane. Waiters are
served in arrival order; ``info()`` shows who holds it and who waits (status and the TUI show it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from swarm_tui.engine.info import LaneInfo


class LocalLane:
    name = "lane"

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.holder: str = ""
        self.model: str = ""  # the holder's model, as Ollama names it ("" when free)
        self.since: float = 0.0
        self.waiting: list[str] = []
        self.turns = 0

    @contextlib.asynccontextmanager
    async def turn(self, who: str, model: str = "") -> AsyncIterator[None]:
        self.waiting.append(who)
        try:
            await self._lock.acquire()
        finally:
            self.waiting.remove(who)
        self.holder, self.model, self.since = who, model, time.time()
        self.turns += 1
        try:
            yield
        finally:
            self.holder, self.model, self.since = "", "", 0.0
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def held_by(self) -> str:
        """The holder in words: "the heart (gemma2:2b)", "d-1-w0 (qwen2.5:0.5b)"; "" when the lane is free."""
        who = "the heart" if self.holder == "conductor" else self.holder
        return f"{who} ({self.model})" if who and self.model else who

    def info(self) -> LaneInfo:
        return {
            "holder": self.holder,
            "model": self.model,
            "since": self.since or None,
            "waiting": list(self.waiting),
            "turns": self.turns,
        }

"""What a call has produced so far (``Progress``), held within bounds, and the callbacks that hear of it.

A provider decides how much text it sends; the worker decides how much it keeps. The answer and the reasoning
are each held up to ``wire.MAX_TEXT`` characters (what a Result or a Chunk can carry): the rest is counted,
not kept. Numbers from the provider are used only when finite and in range: a ``1e400`` or ``NaN`` is an
unknown, never an ``inf`` in a SpendEntry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarm_tui.engine.bus.numbers import nonnegative
from swarm_tui.engine.bus.wire import MAX_TEXT

Callback = Callable[[str, float], None]
MAX_COUNT = 10**12  # a token count above this is a provider's lie, not a count
MAX_GENERATION_ID = 200  # characters of a generation id (OpenRouter's are ~40)


@dataclass
class Sink:
    """Who hears of a call's progress: ``on_text(text, at)`` for every piece of the answer kept,
    ``on_reasoning(text, at)`` for every piece of reasoning kept, ``on_generation(id)`` when the generation
    id becomes known (from the ``X-Generation-Id`` header or the first chunk of any kind)."""

    on_text: Callback
    on_reasoning: Callback | None = None
    on_generation: Callable[[str], None] | None = None


@dataclass
class Progress:
    """What a call has produced so far; kept when it is cancelled or fails."""

    parts: list[str] = field(default_factory=list)
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # the provider's usage.cost
    usage_seen: bool = False
    started: float = 0.0
    first_token_at: float = 0.0
    generation_id: str = ""  # OpenRouter's generation id (every chunk's ``id``): GET /generation?id=...
    reasoning_parts: list[str] = field(default_factory=list)  # delta.reasoning: shown dimmed, not the answer
    reasoning_tokens: int = 0  # reasoning deltas seen (with or without text: encrypted ones have none)
    finish_reason: str = ""
    response_model: str = ""  # the model that answered, as the provider names it (a chunk's ``model``)
    opened: bool = False  # the provider answered 200 (it took the request: it may bill it)
    held: int = 0  # characters of the answer kept (at most ``limit``)
    cut: int = 0  # characters of the answer past ``limit``, counted, not kept
    reasoning_held: int = 0
    reasoning_cut: int = 0
    limit: int = MAX_TEXT

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    @property
    def cut_note(self) -> str:
        """What a result says when the answer was longer than what is kept ("" when nothing was cut)."""
        if not self.cut:
            return ""
        return f"output cut at {self.limit} characters ({self.cut} more not kept)"

    def reset(self) -> None:
        self.parts.clear()
        self.tokens = self.prompt_tokens = self.completion_tokens = 0
        self.cost, self.usage_seen, self.first_token_at = None, False, 0.0
        self.generation_id = ""
        self.reasoning_parts.clear()
        self.reasoning_tokens, self.finish_reason, self.response_model = 0, "", ""
        self.opened = False
        self.held = self.cut = self.reasoning_held = self.reasoning_cut = 0


def note_generation(progress: Progress, gid: Any, sink: Sink, *, replace: bool = True) -> None:
    """A generation id seen (a header or a chunk's ``id``): kept, and told once per new id. ``replace``: a
    chunk's id wins over the header's; the litellm wrapper keeps the first one it saw."""
    if not gid or not isinstance(gid, str) or gid == progress.generation_id:
        return
    if progress.generation_id and not replace:
        return
    if len(gid) > MAX_GENERATION_ID or not gid.isprintable():
        return  # not an id OpenRouter could answer for: the attempt is charged as one without an id
    progress.generation_id = gid
    if sink.on_generation is not None:
        sink.on_generation(gid)


def _fit(text: str, room: int) -> tuple[str, int]:
    """``text`` cut to the ``room`` left (characters), and how many characters were cut."""
    if len(text) <= room:
        return text, 0
    room = max(0, room)
    return text[:room], len(text) - room


def add_text(progress: Progress, text: str, sink: Sink) -> None:
    now = time.time()
    if not progress.first_token_at:
        progress.first_token_at = now
    progress.tokens += 1
    text, cut = _fit(text, progress.limit - progress.held)
    progress.cut += cut
    if text:
        progress.parts.append(text)
        progress.held += len(text)
    sink.on_text(text, now)  # "" past the limit: the token still counts (the screen's rate, the stall limit)


def add_reasoning(progress: Progress, text: str, sink: Sink) -> None:
    progress.reasoning_tokens += 1
    text, cut = _fit(text, progress.limit - progress.reasoning_held)
    progress.reasoning_cut += cut
    if text:
        progress.reasoning_parts.append(text)
        progress.reasoning_held += len(text)
        if sink.on_reasoning is not None:
            sink.on_reasoning(text, time.time())


def count(v: Any) -> int:
    """A token count from the provider: a finite number in 0..MAX_COUNT, else 0 (unknown)."""
    c = nonnegative(v)
    return int(c) if c is not None and c <= MAX_COUNT else 0


def finite_cost(v: Any) -> float | None:
    """A cost from the provider: a finite number >= 0, else None (unknown: reconciled or charged its worst)."""
    return nonnegative(v)


def take_usage(progress: Progress, prompt: Any, completion: Any, cost: Any) -> None:
    progress.usage_seen = True
    progress.prompt_tokens = count(prompt)
    progress.completion_tokens = count(completion)
    c = finite_cost(cost)
    if c is not None:
        progress.cost = c

"""OpenRouter's SSE stream read by hand: its lines, its chunks, its end, and the stall timer.

What the reader believes follows OpenRouter's streaming doc (https://openrouter.ai/docs/api-reference/streaming):

- Lines starting with ``:`` are comments (``: OPENROUTER PROCESSING``, sent "to prevent connection timeouts"):
  they prove the connection alive and carry nothing else.
- ``data: {...}`` lines are chunks: content and reasoning deltas, an ``error`` event ("Handling Errors During
  Streaming": the HTTP status stays 200, the event carries ``error.code``, ``finish_reason: "error"``), the final
  ``usage``. Every chunk's ``id`` is the generation id.
- A stream is finished when the provider says so: ``data: [DONE]``, or a choice's ``finish_reason``. A body
  that ends without either was cut (a proxy's timeout, a provider that died): that is a retryable
  "stream ended early", the partial output kept and the attempt reconciled with GET /generation, never a
  finished answer.
- A line is at most ``MAX_LINE`` bytes. aiohttp's own line reader stops at twice its read buffer (512 KiB),
  and a long ``reasoning.encrypted`` detail can be longer; past ``MAX_LINE`` the line is refused as a stream
  error, not retried (the provider took the call: it bills it, and a retry would bill it again).
- Numbers are finite: Python's json reads ``NaN``, ``Infinity`` and ``1e400`` (as ``inf``); here they read as
  unknown (None).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from swarm_tui.engine.swarm.call_errors import CallError, short, stream_error
from swarm_tui.engine.swarm.progress import Progress, Sink, add_reasoning, add_text, note_generation, take_usage

MAX_LINE = 8 * 1024 * 1024  # bytes of one SSE line


class LineTooLong(Exception):
    pass


def _finite_float(text: str) -> float | None:
    v = float(text)
    return v if math.isfinite(v) else None


def _no_constant(text: str) -> None:
    return None  # NaN, Infinity, -Infinity: not JSON, read as unknown


loads = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant).decode


@dataclass
class Limits:
    """The stall limit (no byte at all) and the limit to the first content token (from ``started``)."""

    stall: float
    content: float | None
    started: float  # time.time() of the request

    def content_left(self) -> float | None:
        return None if self.content is None else self.content - (time.time() - self.started)

    def error(self, why: str, progress: Progress) -> CallError:
        if why == "content":
            doing = "the model was still reasoning" if progress.reasoning_tokens else "only keepalives came"
            return CallError("fatal", f"no content within {self.content:g}s ({doing})")
        quiet = not progress.tokens and not progress.reasoning_tokens
        what = "no first token" if quiet else "the stream stalled"
        return CallError("retryable", f"{what} within {self.stall:g}s")


async def split_lines(blocks: AsyncIterator[bytes], limit: int = MAX_LINE) -> AsyncIterator[str]:
    """The lines of a byte stream as text, without their line ends; ``LineTooLong`` past ``limit`` bytes."""
    tail = bytearray()
    async for block in blocks:
        if b"\n" not in block:
            tail += block
            if len(tail) > limit:
                raise LineTooLong(len(tail))
            continue
        lines = block.split(b"\n")
        if tail:
            tail += lines[0]
            lines[0] = bytes(tail)
            tail.clear()
        rest = lines.pop()
        for raw in lines:
            if len(raw) > limit:
                raise LineTooLong(len(raw))
            yield raw.decode("utf-8", "replace").rstrip("\r")
        if rest:
            tail += rest
            if len(tail) > limit:
                raise LineTooLong(len(tail))
    if tail:
        yield tail.decode("utf-8", "replace").rstrip("\r")


def _too_long() -> CallError:
    return CallError(
        "stream_error",
        f"a line of the stream was over {MAX_LINE // 2**20} MiB: refused (not retried: the call is billed)",
    )


async def read_sse(lines: Any, limits: Limits, progress: Progress, sink: Sink, secrets: list[str]) -> None:
    """Read OpenRouter's SSE lines into ``progress`` until the provider says the stream is finished.

    Any line resets the stall limit, comments included: a stall is no byte at all. The first content token
    has its own, longer limit. After a ``finish_reason`` the answer is complete: a drop or a stall while the
    usage chunk is awaited ends the read (the cost is then asked of GET /generation), it is not retried.
    """
    loop = asyncio.get_running_loop()
    stall = StallTimer(loop, limits, progress)
    done = False
    try:
        async for line in lines:
            stall.last = loop.time()
            if not line.startswith("data:"):
                continue
            if len(line) > MAX_LINE:  # litellm's httpx lines have no limit of their own
                raise _too_long()
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                obj = loads(data)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                absorb_dict(obj, progress, sink, secrets)
    except asyncio.CancelledError:
        if stall.fired and stall.task.uncancel() == 0:
            if progress.finish_reason:
                return
            raise limits.error(stall.why, progress) from None
        raise
    except CallError:
        raise
    except LineTooLong:
        raise _too_long() from None
    except Exception as exc:  # noqa: BLE001 - httpx/aiohttp transport errors: the connection went away
        if progress.finish_reason:
            return
        raise CallError("retryable", "connection lost mid-stream: " + short(exc, secrets)) from None
    finally:
        stall.stop()
    if not done and not progress.finish_reason:
        raise CallError(
            "retryable",
            f"stream ended early: no finish_reason and no [DONE] after {progress.tokens} tokens",
        )


class StallTimer:
    """Cancels the current task when no line came for the stall limit, or no content token by the content
    limit (``why`` says which).

    One timer that re-arms itself from the time of the last line, instead of a new timeout per chunk
    (``asyncio.wait_for`` per chunk, or ``Timeout.reschedule``, cost 2-7% of the loop at 5000 chunks/s).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits, progress: Progress) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task, self.loop, self.gap, self.progress = task, loop, limits.stall, progress
        self.last = loop.time()
        left = limits.content_left()
        self.content_due = None if left is None else self.last + max(0.0, left)
        self.fired = False
        self.why = ""
        self.handle: asyncio.TimerHandle | None = loop.call_at(self._due(), self._check)

    def _due(self) -> float:
        due = self.last + self.gap
        if self.content_due is not None:
            if self.progress.tokens:
                self.content_due = None  # content came: only the stall limit is left
            else:
                due = min(due, self.content_due)
        return due

    def _check(self) -> None:
        now = self.loop.time()
        due = self._due()
        if now >= due:
            stalled = now >= self.last + self.gap
            self.fired, self.handle, self.why = True, None, "stall" if stalled else "content"
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def absorb_dict(obj: dict[str, Any], progress: Progress, sink: Sink, secrets: list[str]) -> None:
    note_generation(progress, obj.get("id"), sink)
    if isinstance(obj.get("model"), str) and not progress.response_model:
        progress.response_model = obj["model"][:128]
    err = obj.get("error")
    if err is not None:
        if isinstance(err, dict):
            meta = err.get("metadata")
            raise stream_error(
                err.get("code"),
                str(err.get("message") or ""),
                meta.get("headers") if isinstance(meta, dict) else None,
                secrets,
            )
        raise stream_error(None, str(err), None, secrets)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        take_usage(progress, usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("cost"))
    for ch in obj.get("choices") or ():
        if not isinstance(ch, dict):
            continue
        delta = ch.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content")
            if text and isinstance(text, str):
                add_text(progress, text, sink)
            if "reasoning" in delta or "reasoning_details" in delta:
                _reasoning_dict(delta, progress, sink)
        finish = ch.get("finish_reason")
        if finish:
            if finish == "error":
                raise CallError("stream_error", "error mid-stream: the provider ended the stream with an error")
            progress.finish_reason = str(finish)[:40]


def _reasoning_dict(delta: dict[str, Any], progress: Progress, sink: Sink) -> None:
    """``delta.reasoning`` (text), else the texts of ``delta.reasoning_details`` (an encrypted detail has none
    but still proves the model works). OpenRouter's "Reasoning Tokens" doc."""
    text = delta.get("reasoning")
    if not (text and isinstance(text, str)):
        details = delta.get("reasoning_details")
        if not (details and isinstance(details, list)):
            return
        text = "".join(str(d.get("text") or d.get("summary") or "") for d in details if isinstance(d, dict))
    add_reasoning(progress, text, sink)

"""One worker call: a litellm stream, its progress, and what went wrong in words a person can act on.

litellm is imported lazily (``import litellm`` costs ~2 s and ~115 MB), with its price map kept local and its
debug output off. Findings that shaped this file (litellm 1.106.2, measured against tests/fake_openrouter.py):

- ``usage`` (with OpenRouter's ``cost``) reaches the caller only when ``stream_options={"include_usage":
  True}`` is passed: then the last chunk carries ``usage`` and ``usage.cost`` is OpenRouter's real cost.
  Without it litellm drops the usage chunk. The openrouter provider adds ``usage: {include: true}`` itself.
- An error chunk after HTTP 200 (``finish_reason: "error"``) raises ``MidStreamFallbackError`` whose
  ``original_exception`` is an ``APIError``; a dropped connection or a read stall raises the same class with an
  ``APIConnectionError`` inside. ``timeout=`` is a per-read limit (a stall longer than it raises).
- 429 is ``RateLimitError`` with ``litellm_response_headers`` holding ``retry-after``; 402 and 5xx are
  ``APIError`` with ``status_code``.
- Cancelling the task that iterates the stream closes the HTTP connection at once (~20 ms).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_litellm: Any = None


def get_litellm() -> Any:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        litellm.telemetry = False
        for flag in ("turn_off_message_logging", "disable_streaming_logging"):
            if hasattr(litellm, flag):
                setattr(litellm, flag, True)
        _no_sync_ollama_lookup()
        # litellm brings ~250k long-lived objects: every full (gen 2) collection then walked them, ~170 ms
        # with the GIL held (seen as periodic 300-500 ms gaps in the chunk-to-screen latency). They live as
        # long as the process: move them out of the collector's reach.
        gc.freeze()
        _litellm = litellm
    return _litellm


def _no_sync_ollama_lookup() -> None:
    """litellm's success logging asks Ollama ``POST /api/show`` for model info after every ``ollama_chat/``
    call, with a *synchronous* httpx client on the event loop: it stalls every stream of the pool for the
    round trip (and deadlocks against an Ollama served from the same loop). Local calls cost nothing, so
    answer that lookup without the network."""
    try:
        from litellm.llms.ollama.common_utils import OllamaModelInfo
    except ImportError:  # pragma: no cover - another litellm layout
        return

    def offline_info(self: Any, model: str, api_base: str | None = None, api_key: str | None = None) -> dict[str, Any]:
        return {"key": model.split("/", 1)[-1], "litellm_provider": "ollama", "mode": "chat",
                "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "max_tokens": None,
                "max_input_tokens": None, "max_output_tokens": None}

    OllamaModelInfo.get_runtime_model_info = offline_info  # type: ignore[method-assign]


_import_lock: asyncio.Lock | None = None


async def load_litellm() -> Any:
    """Import litellm off the event loop (~2 s of CPU: done inline, it would stall heartbeats and streams)."""
    global _import_lock
    if _litellm is not None:
        return _litellm
    if _import_lock is None:
        _import_lock = asyncio.Lock()
    async with _import_lock:
        return await asyncio.to_thread(get_litellm)


class CallError(Exception):
    """A failed call, classified.

    kind: ``rate_limited`` (429), ``out_of_credit`` (402), ``retryable`` (5xx, timeouts, dropped connection),
    ``stream_error`` (an error chunk mid-stream: fail, keep the partial output), ``fatal`` (401/400/404 ...).
    """

    def __init__(self, kind: str, reason: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


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

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def reset(self) -> None:
        self.parts.clear()
        self.tokens = self.prompt_tokens = self.completion_tokens = 0
        self.cost, self.usage_seen, self.first_token_at = None, False, 0.0


def _redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return re.sub(r"(sk-or-[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+", r"\1***", text)


def _short(exc: BaseException, secrets: list[str]) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    m = re.search(r'"message":\s*"([^"]{1,200})"', text)
    if m:
        text = m.group(1)
    for noise in ("litellm.", "MidStreamFallbackError: ", "APIConnectionError: ", "APIError: ",
                  "OpenrouterException - ", "Message: ", "RateLimitError: "):
        text = text.replace(noise, "")
    text = text.split(" Original exception")[0].split(", Metadata")[0].strip(" :-")
    return _redact(text, secrets)[:200] or type(exc).__name__


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        resp = getattr(exc, "response", None)
        headers = getattr(resp, "headers", None)
    if not headers:
        return None
    try:
        raw = headers.get("retry-after") or headers.get("Retry-After")
        return max(0.0, float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException, secrets: list[str] | None = None) -> CallError:
    """A litellm (or asyncio) exception as a CallError with a short reason that holds no secret."""
    if isinstance(exc, CallError):
        return exc
    secrets = secrets or []
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return CallError("retryable", "timed out")
    name = type(exc).__name__
    inner = getattr(exc, "original_exception", None)
    if name == "MidStreamFallbackError" and inner is not None:
        iname = type(inner).__name__
        if iname in ("APIConnectionError", "Timeout", "InternalServerError", "ServiceUnavailableError"):
            return CallError("retryable", "connection lost mid-stream: " + _short(inner, secrets))
        return CallError("stream_error", "error mid-stream: " + _short(inner, secrets))
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    reason = _short(exc, secrets)
    if status == 429 or name == "RateLimitError":
        return CallError("rate_limited", f"rate limited (429): {reason}", status=429,
                         retry_after=_retry_after(exc))
    if status == 402:
        return CallError("out_of_credit", f"out of credit (402): {reason}", status=402)
    if status in (401, 403):
        return CallError("fatal", f"the provider refused the key ({status}): {reason}", status=status)
    if name in ("Timeout", "APIConnectionError") or (status is not None and (status >= 500 or status == 408)):
        return CallError("retryable", f"{'HTTP ' + str(status) + ': ' if status else ''}{reason}", status=status)
    if status is not None:
        return CallError("fatal", f"HTTP {status}: {reason}", status=status)
    return CallError("retryable" if isinstance(exc, OSError) else "fatal", reason)


async def stream_call(*, model: str, messages: list[dict[str, str]], max_tokens: int, api_base: str,
                      api_key: str | None, timeout: float, first_token_timeout: float, progress: Progress,
                      on_text: Callable[[str, float], None], secrets: list[str] | None = None) -> Progress:
    """Stream one completion into ``progress``, calling ``on_text(text, at)`` for every piece.

    The time to the first token is limited by ``first_token_timeout``, each later gap by the same limit,
    and the whole call by ``timeout``. Raises CallError. Cancelling the calling task closes the stream.
    """
    litellm = await load_litellm()
    progress.started = time.time()
    kwargs: dict[str, Any] = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens,
                              "api_base": api_base, "timeout": timeout, "num_retries": 0,
                              "stream_options": {"include_usage": True}}
    if api_key:
        kwargs["api_key"] = api_key
    try:
        async with asyncio.timeout(timeout):
            try:
                resp = await asyncio.wait_for(litellm.acompletion(**kwargs), first_token_timeout)
            except TimeoutError:
                raise CallError("retryable", f"no answer within {first_token_timeout:g}s") from None
            lines = raw_sse_lines(resp) if model.startswith("openrouter/") else None
            if lines is not None:
                try:
                    await _read_sse(lines, first_token_timeout, progress, on_text, secrets or [])
                finally:
                    await _close(resp)
            else:
                await _read_wrapper(resp, first_token_timeout, progress, on_text)
    except TimeoutError:
        raise CallError("retryable", f"the call took longer than {timeout:g}s") from None
    except CallError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - litellm raises many types; classify them all
        raise classify(exc, secrets) from None
    return progress


async def _read_wrapper(resp: Any, gap: float, progress: Progress, on_text: Callable[[str, float], None]) -> None:
    """The general path: litellm's stream wrapper (one pydantic ModelResponseStream per chunk)."""
    it = resp.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), gap)
        except StopAsyncIteration:
            break
        except TimeoutError:
            what = "no first token" if not progress.tokens else "the stream stalled"
            raise CallError("retryable", f"{what} within {gap:g}s") from None
        _absorb(chunk, progress, on_text)


def raw_sse_lines(resp: Any) -> Any:
    """The provider's SSE lines under litellm's stream wrapper, or None when this response has none.

    litellm 1.106.2 (pinned exactly) builds, for an OpenAI-compatible provider such as openrouter/, a
    ``CustomStreamWrapper`` whose ``completion_stream`` is a ``BaseModelResponseIterator`` over httpx's
    ``aiter_lines()``. Through the wrapper every chunk costs two pydantic objects and the wrapper's per-chunk
    bookkeeping (~35% of a core at 5000 chunks/s, profiled); reading the lines directly costs one
    ``json.loads``. Anything else (another layout, a mocked response) returns None: the wrapper path is used.
    """
    stream = getattr(resp, "completion_stream", None)
    if stream is None or getattr(stream, "http_response", None) is None:
        return None
    lines = getattr(stream, "streaming_response", None)
    if lines is None or not hasattr(lines, "__aiter__") or type(stream).__name__ == "MockResponseIterator":
        return None
    return lines


async def _close(resp: Any) -> None:
    """Close the HTTP response under the wrapper (at once, also when the call is being cancelled)."""
    try:
        await asyncio.shield(resp.aclose())
    except (Exception, asyncio.CancelledError):  # noqa: BLE001 - closing is best effort
        pass


async def _read_sse(lines: Any, gap: float, progress: Progress, on_text: Callable[[str, float], None],
                    secrets: list[str]) -> None:
    """OpenRouter's SSE stream read directly: content deltas, the mid-stream error chunk, the final usage.

    The stall limit ``gap`` runs from the request to the first data line and between data lines (comment
    lines such as ``: OPENROUTER PROCESSING`` do not reset it), as the wrapper path's per-chunk wait does.
    """
    loop = asyncio.get_running_loop()
    loads = json.loads
    stall = _StallTimer(loop, gap)
    try:
        async for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            stall.last = loop.time()
            try:
                obj = loads(data)
            except ValueError:
                continue
            if isinstance(obj, dict):
                _absorb_dict(obj, progress, on_text, secrets)
    except asyncio.CancelledError:
        if stall.fired and stall.task.uncancel() == 0:
            what = "no first token" if not progress.tokens else "the stream stalled"
            raise CallError("retryable", f"{what} within {gap:g}s") from None
        raise
    except CallError:
        raise
    except Exception as exc:  # noqa: BLE001 - httpx/aiohttp transport errors: the connection went away
        raise CallError("retryable", "connection lost mid-stream: " + _short(exc, secrets)) from None
    finally:
        stall.stop()


class _StallTimer:
    """Cancels the current task when no data line came for ``gap`` seconds.

    One timer that re-arms itself from the time of the last line, instead of a new timeout per chunk
    (``asyncio.wait_for`` per chunk, or ``Timeout.reschedule``, cost 2-7% of the loop at 5000 chunks/s).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, gap: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.task, self.loop, self.gap = task, loop, gap
        self.last = loop.time()
        self.fired = False
        self.handle: asyncio.TimerHandle | None = loop.call_at(self.last + gap, self._check)

    def _check(self) -> None:
        due = self.last + self.gap
        if self.loop.time() >= due:
            self.fired, self.handle = True, None
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def _absorb_dict(obj: dict[str, Any], progress: Progress, on_text: Callable[[str, float], None],
                 secrets: list[str]) -> None:
    err = obj.get("error")
    if err is not None:
        msg = err.get("message") if isinstance(err, dict) else err
        raise CallError("stream_error", "error mid-stream: " + _redact(str(msg or "the provider reported an error"),
                                                                        secrets)[:200])
    usage = obj.get("usage")
    if isinstance(usage, dict):
        progress.usage_seen = True
        progress.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        progress.completion_tokens = int(usage.get("completion_tokens") or 0)
        cost = usage.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            progress.cost = float(cost)
    for ch in obj.get("choices") or ():
        if not isinstance(ch, dict):
            continue
        delta = ch.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
        if text and isinstance(text, str):
            _add_text(progress, text, on_text)
        if ch.get("finish_reason") == "error":
            raise CallError("stream_error", "error mid-stream: the provider ended the stream with an error")


def _add_text(progress: Progress, text: str, on_text: Callable[[str, float], None]) -> None:
    now = time.time()
    if not progress.first_token_at:
        progress.first_token_at = now
    progress.parts.append(text)
    progress.tokens += 1
    on_text(text, now)


def _absorb(chunk: Any, progress: Progress, on_text: Callable[[str, float], None]) -> None:
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        progress.usage_seen = True
        progress.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        progress.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = getattr(usage, "cost", None)
        if isinstance(cost, int | float) and cost >= 0:
            progress.cost = float(cost)
    choices = getattr(chunk, "choices", None) or []
    for ch in choices:
        delta = getattr(ch, "delta", None)
        text = getattr(delta, "content", None) if delta is not None else None
        if text:
            _add_text(progress, text, on_text)

"""One worker call: a stream, its progress, and what went wrong in words a person can act on.

``openrouter/`` models are called over HTTP directly (``openrouter_http``: no litellm in memory for the cloud
swarm); ``ollama_chat/`` models, and OpenRouter with ``openrouter.via_litellm``, go through litellm.
litellm is imported lazily (``import litellm`` costs ~2 s and ~115 MB), with its price map kept local and its
debug output off. Findings that shaped this file (litellm 1.106.2, measured against tests/support/fake_openrouter.py):

- ``usage`` (with OpenRouter's ``cost``) reaches the caller only when ``stream_options={"include_usage":
  True}`` is passed: then the last chunk carries ``usage`` and ``usage.cost`` is OpenRouter's real cost.
  Without it litellm drops the usage chunk. The openrouter provider adds ``usage: {include: true}`` itself.
- An error chunk after HTTP 200 (``finish_reason: "error"``) raises ``MidStreamFallbackError`` whose
  ``original_exception`` carries ``error.code`` as ``status_code`` (429: ``RateLimitError``, 503:
  ``ServiceUnavailableError``, others ``APIError``; a mid-stream 402 or 400 comes unwrapped); a dropped
  connection or a read stall raises the same class with an ``APIConnectionError`` inside. ``timeout=`` is a
  per-read limit (a stall longer than it raises). The openrouter/ path reads the SSE lines itself (see
  ``raw_sse_lines``) and classifies the error event by its code (``stream_error``).
- 429 is ``RateLimitError`` with ``litellm_response_headers`` holding ``retry-after`` and ``x-ratelimit-*``;
  402, 403 and 5xx are ``APIError`` (503: ``ServiceUnavailableError``) with ``status_code``.
- ``extra_body=`` goes into the request body as is (OpenRouter's ``reasoning``, ``provider``, ``models``);
  ``headers=`` replace litellm's ``HTTP-Referer: https://litellm.ai`` and ``X-Title: liteLLM``.
- The wrapper hands OpenRouter's ``delta.reasoning`` out as ``delta.reasoning_content``.
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

from swarm_tui.engine.swarm import openrouter_http
from swarm_tui.engine.swarm.openrouter_http import HttpStatus

_litellm: Any = None


def get_litellm() -> Any:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.set_verbose = False  # type: ignore[attr-defined]
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
        return {
            "key": model.split("/", 1)[-1],
            "litellm_provider": "ollama",
            "mode": "chat",
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
            "max_tokens": None,
            "max_input_tokens": None,
            "max_output_tokens": None,
        }

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

    kind: ``rate_limited`` (429), ``out_of_credit`` (402), ``cannot_afford`` (402 for this request's max_tokens:
    ``afford`` holds what the credit covers), ``retryable`` (5xx, timeouts, dropped connection),
    ``stream_error`` (an error chunk mid-stream: fail, keep the partial output), ``fatal`` (401/403/400/404,
    no content by the first-content limit, max_tokens spent on reasoning ...). ``retry_after``: seconds from
    ``Retry-After`` or ``X-RateLimit-Reset``.
    """

    def __init__(
        self,
        kind: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        afford: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.afford = afford  # kind "cannot_afford" (402): the max_tokens the credit left covers


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
    opened: bool = False  # the provider answered 200 (it took the request: it may bill it)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def reset(self) -> None:
        self.parts.clear()
        self.tokens = self.prompt_tokens = self.completion_tokens = 0
        self.cost, self.usage_seen, self.first_token_at = None, False, 0.0
        self.generation_id = ""
        self.reasoning_parts.clear()
        self.reasoning_tokens, self.finish_reason = 0, ""
        self.opened = False


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
    for noise in (
        "litellm.",
        "MidStreamFallbackError: ",
        "APIConnectionError: ",
        "APIError: ",
        "OpenrouterException - ",
        "Message: ",
        "RateLimitError: ",
    ):
        text = text.replace(noise, "")
    text = text.split(" Original exception")[0].split(", Metadata")[0].strip(" :-")
    return _redact(text, secrets)[:200] or type(exc).__name__


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        resp = getattr(exc, "response", None)
        headers = getattr(resp, "headers", None)
    return header_wait(headers)


def header_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds) or else ``X-RateLimit-Reset`` (when the window resets:
    OpenRouter sends epoch milliseconds; epoch seconds and plain seconds are read too); None: neither."""
    if not headers:
        return None
    try:
        low = {str(k).lower(): v for k, v in headers.items()}
    except (AttributeError, TypeError):
        return None
    try:
        raw = low.get("retry-after")
        if raw is not None:
            return max(0.0, float(raw))
        raw = low.get("x-ratelimit-reset")
        if raw is None:
            return None
        v = float(raw)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    if v > 1e11:  # epoch milliseconds
        return max(0.0, v / 1000 - now)
    if v > 1e9:  # epoch seconds
        return max(0.0, v - now)
    return max(0.0, v)


def _code_status(code: Any) -> int | None:
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def stream_error(code: Any, message: str, headers: Any = None, secrets: list[str] | None = None) -> CallError:
    """An error event inside a 200 stream, by its ``error.code`` (OpenRouter's streaming doc, "Handling Errors
    During Streaming"): 429 takes the rate-limit path, 5xx and "overloaded" the retryable one, 402 the credit
    path (as ``classify`` reads an HTTP 402), anything else fails the job keeping the partial output."""
    secrets = secrets or []
    status = _code_status(code)
    name = code.lower() if isinstance(code, str) else ""
    text = _redact(str(message or "the provider reported an error"), secrets)[:200]
    where = f"error mid-stream ({code}): {text}" if code not in (None, "") else f"error mid-stream: {text}"
    if status == 429 or "rate_limit" in name:
        return CallError(
            "rate_limited", f"rate limited mid-stream (429): {text}", status=429, retry_after=header_wait(headers)
        )
    if status == 402:
        return classify(HttpStatus(text, 402, headers), secrets)
    if (
        (status is not None and 500 <= status <= 599)
        or "overloaded" in text.lower()
        or "overloaded" in name
        or "server_error" in name
    ):
        return CallError("retryable", where, status=status, retry_after=header_wait(headers))
    return CallError("stream_error", where, status=status)


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
        if iname in ("APIConnectionError", "Timeout"):
            return CallError("retryable", "connection lost mid-stream: " + _short(inner, secrets))
        ist = getattr(inner, "status_code", None)
        return stream_error(
            ist if isinstance(ist, int) else None,
            _short(inner, secrets),
            getattr(inner, "litellm_response_headers", None),
            secrets,
        )
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    reason = _short(exc, secrets)
    if status == 429 or name == "RateLimitError":
        return CallError("rate_limited", f"rate limited (429): {reason}", status=429, retry_after=_retry_after(exc))
    if status == 402:
        # OpenRouter's "Errors" page: a 402 is either this one request costing more than the credit left ("This
        # request requires more credits, or fewer max_tokens. You requested up to N tokens, but can only
        # afford M"): that job shrinks or fails; or the account (or key) is out of credit: dispatch stops.
        m = re.search(r"can only afford (\d+)", str(exc)) or re.search(r"can only afford (\d+)", reason)
        if m:
            return CallError(
                "cannot_afford",
                f"the credit left affords only {m.group(1)} tokens of this request (402): {reason}",
                status=402,
                afford=int(m.group(1)),
            )
        return CallError("out_of_credit", f"out of credit (402): {reason}", status=402)
    if status == 401:
        return CallError("fatal", f"the provider refused the key (401): {reason}", status=status)
    if status == 403:  # "Errors and Debugging": guardrail block, moderation flag (or a region the model refuses)
        return CallError("fatal", f"refused by OpenRouter (moderation, guardrail or region): {reason}", status=403)
    if name in ("Timeout", "APIConnectionError") or (status is not None and (status >= 500 or status == 408)):
        return CallError(
            "retryable",
            f"{'HTTP ' + str(status) + ': ' if status else ''}{reason}",
            status=status,
            retry_after=_retry_after(exc) if status is not None else None,
        )
    if status is not None:
        return CallError("fatal", f"HTTP {status}: {reason}", status=status)
    return CallError("retryable" if isinstance(exc, OSError) else "fatal", reason)


Callback = Callable[[str, float], None]


async def stream_call(
    *,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    api_base: str,
    api_key: str | None,
    timeout: float,
    first_token_timeout: float,
    progress: Progress,
    on_text: Callback,
    secrets: list[str] | None = None,
    first_content_timeout: float | None = None,
    on_reasoning: Callback | None = None,
    extra_body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    via_litellm: bool = False,
    session: Any = None,
) -> Progress:
    """Stream one completion into ``progress``, calling ``on_text(text, at)`` for every piece of the answer and
    ``on_reasoning(text, at)`` for every piece of reasoning.

    ``first_token_timeout`` is the stall limit: no byte at all for that long (OpenRouter's ``: OPENROUTER
    PROCESSING`` comments count as bytes). ``first_content_timeout`` limits the time from the request to the
    first content token (reasoning and keepalives do not stop it; None: only ``timeout``), ``timeout`` the
    whole call. ``extra_body`` goes into the request body (OpenRouter's ``reasoning``, ``provider``,
    ``models``), ``headers`` replace litellm's own (its ``HTTP-Referer`` / ``X-Title`` name LiteLLM).
    ``openrouter/`` models are called over HTTP directly (``openrouter_http``) unless ``via_litellm``, on
    ``session`` (an ``aiohttp.ClientSession``: the pool's) or, without one, a session of this call's own.
    Raises CallError. Cancelling the calling task closes the stream.
    """
    progress.started = time.time()
    limits = _Limits(first_token_timeout, first_content_timeout, progress.started)
    try:
        async with asyncio.timeout(timeout):
            if model.startswith("openrouter/") and not via_litellm:
                body = openrouter_http.request_body(model, messages, max_tokens, extra_body)
                own = session is None
                http = openrouter_http.new_session() if own else session
                try:
                    await _direct(
                        http, api_base, api_key, body, headers, limits, progress, on_text, on_reasoning, secrets
                    )
                finally:
                    if own:
                        await asyncio.shield(http.close())
            else:
                kwargs: dict[str, Any] = {
                    "model": model,
                    "messages": messages,
                    "stream": True,
                    "max_tokens": max_tokens,
                    "api_base": api_base,
                    "timeout": timeout,
                    "num_retries": 0,
                    "stream_options": {"include_usage": True},
                }
                if api_key:
                    kwargs["api_key"] = api_key
                if extra_body:
                    kwargs["extra_body"] = extra_body
                if headers:
                    kwargs["headers"] = headers
                await _via_litellm(kwargs, limits, progress, on_text, on_reasoning, secrets)
            if progress.finish_reason == "length" and not progress.tokens:
                raise CallError("fatal", f"max_tokens spent on reasoning: no answer within {max_tokens} tokens")
    except TimeoutError:
        raise CallError("retryable", f"the call took longer than {timeout:g}s") from None
    except CallError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - litellm raises many types; classify them all
        raise classify(exc, secrets) from None
    return progress


async def _direct(
    session: Any,
    api_base: str,
    api_key: str | None,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    limits: _Limits,
    progress: Progress,
    on_text: Callback,
    on_reasoning: Callback | None,
    secrets: list[str] | None,
) -> None:
    """OpenRouter over HTTP without litellm (engine/swarm/openrouter_http.py): open, then read the SSE lines."""
    import aiohttp

    try:
        resp = await asyncio.wait_for(
            openrouter_http.open_stream(session, api_base=api_base, api_key=api_key, body=body, headers=headers),
            limits.stall,
        )
    except TimeoutError:
        raise CallError("retryable", f"no answer within {limits.stall:g}s") from None
    except aiohttp.ClientError as exc:  # refused, reset, DNS, TLS: nothing was generated, try again
        raise CallError("retryable", "connection failed: " + _short(exc, secrets or [])) from None
    progress.opened = True
    gid = resp.headers.get("X-Generation-Id")
    if gid and not progress.generation_id:
        progress.generation_id = gid
    finished = False
    try:
        await _read_sse(openrouter_http.sse_lines(resp), limits, progress, on_text, on_reasoning, secrets or [])
        finished = True
    finally:
        if finished:
            resp.release()  # read to [DONE]: the connection goes back to the pool
        else:
            resp.close()  # cancelled, stalled or failed: close it now, so OpenRouter sees the client leave


async def _via_litellm(
    kwargs: dict[str, Any],
    limits: _Limits,
    progress: Progress,
    on_text: Callback,
    on_reasoning: Callback | None,
    secrets: list[str] | None,
) -> None:
    """Through litellm: ``ollama_chat/`` models, and OpenRouter with ``openrouter.via_litellm``."""
    litellm = await load_litellm()
    try:
        resp = await asyncio.wait_for(litellm.acompletion(**kwargs), limits.stall)
    except TimeoutError:
        raise CallError("retryable", f"no answer within {limits.stall:g}s") from None
    progress.opened = True
    _header_generation_id(resp, progress)
    lines = raw_sse_lines(resp) if str(kwargs["model"]).startswith("openrouter/") else None
    if lines is not None:
        try:
            await _read_sse(lines, limits, progress, on_text, on_reasoning, secrets or [])
        finally:
            await _close(resp)
    else:
        await _read_wrapper(resp, limits, progress, on_text, on_reasoning)


@dataclass
class _Limits:
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


async def _read_wrapper(
    resp: Any, limits: _Limits, progress: Progress, on_text: Callback, on_reasoning: Callback | None
) -> None:
    """The general path: litellm's stream wrapper (one pydantic ModelResponseStream per chunk). Keepalive
    comments are invisible here: every chunk (reasoning included) restarts the stall limit."""
    it = resp.__aiter__()
    while True:
        wait, why = limits.stall, "stall"
        left = limits.content_left() if not progress.tokens else None
        if left is not None and left < wait:
            wait, why = max(0.0, left), "content"
        try:
            chunk = await asyncio.wait_for(it.__anext__(), wait)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise limits.error(why, progress) from None
        _absorb(chunk, progress, on_text, on_reasoning)


def _header_generation_id(resp: Any, progress: Progress) -> None:
    """The generation id from the response's ``X-Generation-Id`` header, when there is one: known before the
    first chunk, so an attempt cut off early can still be reconciled with GET /generation."""
    http = getattr(getattr(resp, "completion_stream", None), "http_response", None)
    headers = getattr(http, "headers", None)
    try:
        gid = headers.get("x-generation-id") if headers is not None else None
    except (AttributeError, TypeError):
        return
    if gid and isinstance(gid, str) and not progress.generation_id:
        progress.generation_id = gid


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


async def _read_sse(
    lines: Any,
    limits: _Limits,
    progress: Progress,
    on_text: Callback,
    on_reasoning: Callback | None,
    secrets: list[str],
) -> None:
    """OpenRouter's SSE stream read directly: content and reasoning deltas, the mid-stream error event, the
    final usage.

    Any line resets the stall limit, comments included: OpenRouter sends ``: OPENROUTER PROCESSING`` "to
    prevent connection timeouts" while a model works without output (its streaming doc), so a stall is no
    byte at all. The first content token has its own, longer limit.
    """
    loop = asyncio.get_running_loop()
    loads = json.loads
    stall = _StallTimer(loop, limits, progress)
    try:
        async for line in lines:
            stall.last = loop.time()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                obj = loads(data)
            except ValueError:
                continue
            if isinstance(obj, dict):
                _absorb_dict(obj, progress, on_text, on_reasoning, secrets)
    except asyncio.CancelledError:
        if stall.fired and stall.task.uncancel() == 0:
            raise limits.error(stall.why, progress) from None
        raise
    except CallError:
        raise
    except Exception as exc:  # noqa: BLE001 - httpx/aiohttp transport errors: the connection went away
        raise CallError("retryable", "connection lost mid-stream: " + _short(exc, secrets)) from None
    finally:
        stall.stop()


class _StallTimer:
    """Cancels the current task when no line came for the stall limit, or no content token by the content
    limit (``why`` says which).

    One timer that re-arms itself from the time of the last line, instead of a new timeout per chunk
    (``asyncio.wait_for`` per chunk, or ``Timeout.reschedule``, cost 2-7% of the loop at 5000 chunks/s).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: _Limits, progress: Progress) -> None:
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


def _absorb_dict(
    obj: dict[str, Any], progress: Progress, on_text: Callback, on_reasoning: Callback | None, secrets: list[str]
) -> None:
    gid = obj.get("id")
    if gid and isinstance(gid, str) and gid != progress.generation_id:
        progress.generation_id = gid
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
        if isinstance(delta, dict):
            text = delta.get("content")
            if text and isinstance(text, str):
                _add_text(progress, text, on_text)
            if "reasoning" in delta or "reasoning_details" in delta:
                _reasoning_dict(delta, progress, on_reasoning)
        finish = ch.get("finish_reason")
        if finish:
            if finish == "error":
                raise CallError("stream_error", "error mid-stream: the provider ended the stream with an error")
            progress.finish_reason = str(finish)


def _reasoning_dict(delta: dict[str, Any], progress: Progress, on_reasoning: Callback | None) -> None:
    """``delta.reasoning`` (text), else the texts of ``delta.reasoning_details`` (an encrypted detail has none
    but still proves the model works). OpenRouter's "Reasoning Tokens" doc."""
    text = delta.get("reasoning")
    if not (text and isinstance(text, str)):
        details = delta.get("reasoning_details")
        if not (details and isinstance(details, list)):
            return
        text = "".join(str(d.get("text") or d.get("summary") or "") for d in details if isinstance(d, dict))
    _add_reasoning(progress, text, on_reasoning)


def _add_reasoning(progress: Progress, text: str, on_reasoning: Callback | None) -> None:
    progress.reasoning_tokens += 1
    if text:
        progress.reasoning_parts.append(text)
        if on_reasoning is not None:
            on_reasoning(text, time.time())


def _add_text(progress: Progress, text: str, on_text: Callback) -> None:
    now = time.time()
    if not progress.first_token_at:
        progress.first_token_at = now
    progress.parts.append(text)
    progress.tokens += 1
    on_text(text, now)


def _absorb(chunk: Any, progress: Progress, on_text: Callback, on_reasoning: Callback | None = None) -> None:
    gid = getattr(chunk, "id", None)
    if gid and isinstance(gid, str) and not progress.generation_id:
        progress.generation_id = gid
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
        thought = getattr(delta, "reasoning_content", None) if delta is not None else None
        if thought and isinstance(thought, str):  # litellm's name for OpenRouter's delta.reasoning
            _add_reasoning(progress, thought, on_reasoning)
        finish = getattr(ch, "finish_reason", None)
        if finish and isinstance(finish, str):
            progress.finish_reason = finish

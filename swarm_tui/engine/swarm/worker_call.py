"""One worker call: open the stream, read it, and say what went wrong in words a person can act on.

The parts live apart: ``progress.py`` (what a call produced, held within bounds), ``sse.py`` (OpenRouter's SSE
lines read by hand, when a stream is finished, the stall timer), ``call_errors.py`` (``CallError`` and the
classifiers), ``openrouter_http.py`` (the request, and what is believed of an answer that is not a stream).

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
  ``raw_sse_lines`` and ``sse.read_sse``) and classifies the error event by its code (``stream_error``).
- The wrapper ends a stream cut without a ``finish_reason`` with a ``finish_reason: "stop"`` of its own, and
  reads a 200 of any Content-Type as an answer: only the SSE paths (direct and raw) can tell a cut stream or a
  body that is not a stream, so ``openrouter/`` models never take the wrapper while the raw lines are there.
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
import os
import time
from collections.abc import Callable
from typing import Any

from swarm_tui.engine.lifecycle import within
from swarm_tui.engine.swarm import openrouter_http
from swarm_tui.engine.swarm.call_errors import CallError, HttpStatus, classify, header_wait, short, stream_error
from swarm_tui.engine.swarm.progress import (
    Callback,
    Progress,
    Sink,
    add_reasoning,
    add_text,
    note_generation,
    take_usage,
)
from swarm_tui.engine.swarm.sse import Limits, read_sse

# Callers (job.py, tests, bench) reach the call through this module.
__all__ = [
    "CallError",
    "Callback",
    "HttpStatus",
    "Progress",
    "classify",
    "header_wait",
    "load_litellm",
    "raw_sse_lines",
    "stream_call",
    "stream_error",
]

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
    on_generation: Callable[[str], None] | None = None,
    extra_body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    via_litellm: bool = False,
    session: Any = None,
    keep_alive: str | float | None = None,
) -> Progress:
    """Stream one completion into ``progress``, calling ``on_text(text, at)`` for every piece of the answer and
    ``on_reasoning(text, at)`` for every piece of reasoning (each held up to ``wire.MAX_TEXT`` characters: past
    that ``on_text`` gets "" for each token and ``progress.cut`` counts what was not kept), and
    ``on_generation(id)`` as soon as the generation id is known (the ``X-Generation-Id`` header or the first
    chunk of any kind: a kill from then on is reconciled with GET /generation, not charged its worst case).

    ``first_token_timeout`` is the stall limit: no byte at all for that long (OpenRouter's ``: OPENROUTER
    PROCESSING`` comments count as bytes). ``first_content_timeout`` limits the time from the request to the
    first content token (reasoning and keepalives do not stop it; None: only ``timeout``), ``timeout`` the
    whole call. ``extra_body`` goes into the request body (OpenRouter's ``reasoning``, ``provider``,
    ``models``), ``headers`` replace litellm's own (its ``HTTP-Referer`` / ``X-Title`` name LiteLLM).
    ``openrouter/`` models are called over HTTP directly (``openrouter_http``) unless ``via_litellm``, on
    ``session`` (an ``aiohttp.ClientSession``: the pool's) or, without one, a session of this call's own.
    ``keep_alive`` goes to Ollama with an ``ollama_chat/`` call (0: the model is unloaded once it answers).
    Raises CallError. Cancelling the calling task closes the stream.
    """
    progress.started = time.time()
    limits = Limits(first_token_timeout, first_content_timeout, progress.started)
    sink = Sink(on_text, on_reasoning, on_generation)
    secrets = secrets or []
    try:
        async with asyncio.timeout(timeout):
            if model.startswith("openrouter/") and not via_litellm:
                body = openrouter_http.request_body(model, messages, max_tokens, extra_body)
                own = session is None
                http = openrouter_http.new_session() if own else session
                try:
                    await _direct(http, api_base, api_key, body, headers, limits, progress, sink, secrets)
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
                if keep_alive is not None:
                    kwargs["keep_alive"] = keep_alive
                await _via_litellm(kwargs, limits, progress, sink, secrets)
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
    limits: Limits,
    progress: Progress,
    sink: Sink,
    secrets: list[str],
) -> None:
    """OpenRouter over HTTP without litellm (engine/swarm/openrouter_http.py): open, then read the SSE lines."""
    import aiohttp

    try:
        resp = await within(
            openrouter_http.open_stream(session, api_base=api_base, api_key=api_key, body=body, headers=headers),
            limits.stall,
        )
    except TimeoutError:
        raise CallError("retryable", f"no answer within {limits.stall:g}s") from None
    except aiohttp.ClientError as exc:  # refused, reset, DNS, TLS: nothing was generated, try again
        raise CallError("retryable", "connection failed: " + short(exc, secrets)) from None
    except HttpStatus as exc:  # no stream; a generation id with it (a 200 error body) is still reconciled
        note_generation(progress, exc.generation_id, sink)
        raise classify(exc, secrets) from None
    progress.opened = True
    note_generation(progress, resp.headers.get("X-Generation-Id"), sink)
    finished = False
    try:
        await read_sse(openrouter_http.sse_lines(resp), limits, progress, sink, secrets)
        finished = True
    finally:
        if finished:
            resp.release()  # read to its end: the connection goes back to the pool
        else:
            resp.close()  # cancelled, stalled or failed: close it now, so OpenRouter sees the client leave


async def _via_litellm(
    kwargs: dict[str, Any], limits: Limits, progress: Progress, sink: Sink, secrets: list[str]
) -> None:
    """Through litellm: ``ollama_chat/`` models, and OpenRouter with ``openrouter.via_litellm``."""
    litellm = await load_litellm()
    try:
        resp = await within(litellm.acompletion(**kwargs), limits.stall)
    except TimeoutError:
        raise CallError("retryable", f"no answer within {limits.stall:g}s") from None
    http: Any = getattr(getattr(resp, "completion_stream", None), "http_response", None)
    if getattr(http, "history", None):  # litellm's httpx client follows redirects: refuse what came back
        await _close(resp)
        where = openrouter_http.printable(str(http.url))
        raise CallError("fatal", f"HTTP {http.history[0].status_code}: redirected to {where}: refused")
    progress.opened = True
    _header_generation_id(resp, progress, sink)
    lines = raw_sse_lines(resp) if str(kwargs["model"]).startswith("openrouter/") else None
    if lines is not None:
        try:
            headers = resp.completion_stream.http_response.headers
            ctype = str(headers.get("content-type") or "").split(";")[0].strip().lower()
            if ctype != openrouter_http.STREAM_TYPE:  # litellm streams whatever came: read it as open_stream does
                exc = openrouter_http.not_a_stream(ctype, await _body(lines), headers)
                note_generation(progress, exc.generation_id, sink)
                progress.opened = False  # no stream ran: settled at 0 unless a generation came with it
                raise classify(exc, secrets)
            await read_sse(lines, limits, progress, sink, secrets)
        finally:
            await _close(resp)
    else:
        await _read_wrapper(resp, limits, progress, sink)


async def _body(lines: Any) -> bytes:
    """The first ``ERROR_BODY_MAX`` bytes of a body litellm hands out as lines."""
    out: list[bytes] = []
    size = 0
    async for line in lines:
        out.append(str(line).encode())
        size += len(out[-1]) + 1
        if size >= openrouter_http.ERROR_BODY_MAX:
            break
    return b"\n".join(out)[: openrouter_http.ERROR_BODY_MAX]


async def _read_wrapper(resp: Any, limits: Limits, progress: Progress, sink: Sink) -> None:
    """The general path: litellm's stream wrapper (one pydantic ModelResponseStream per chunk). Keepalive
    comments are invisible here: every chunk (reasoning included) restarts the stall limit."""
    it = resp.__aiter__()
    while True:
        wait, why = limits.stall, "stall"
        left = limits.content_left() if not progress.tokens else None
        if left is not None and left < wait:
            wait, why = max(0.0, left), "content"
        try:
            chunk = await within(it.__anext__(), wait)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise limits.error(why, progress) from None
        _absorb(chunk, progress, sink)


def _header_generation_id(resp: Any, progress: Progress, sink: Sink) -> None:
    """The generation id from the response's ``X-Generation-Id`` header, when there is one: known before the
    first chunk, so an attempt cut off early can still be reconciled with GET /generation."""
    http = getattr(getattr(resp, "completion_stream", None), "http_response", None)
    headers = getattr(http, "headers", None)
    try:
        gid = headers.get("x-generation-id") if headers is not None else None
    except (AttributeError, TypeError):
        return
    note_generation(progress, gid, sink, replace=False)


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


def _absorb(chunk: Any, progress: Progress, sink: Sink) -> None:
    note_generation(progress, getattr(chunk, "id", None), sink, replace=False)
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        take_usage(
            progress,
            getattr(usage, "prompt_tokens", 0),
            getattr(usage, "completion_tokens", 0),
            getattr(usage, "cost", None),
        )
    choices = getattr(chunk, "choices", None) or []
    for ch in choices:
        delta = getattr(ch, "delta", None)
        text = getattr(delta, "content", None) if delta is not None else None
        if text and isinstance(text, str):
            add_text(progress, text, sink)
        thought = getattr(delta, "reasoning_content", None) if delta is not None else None
        if thought and isinstance(thought, str):  # litellm's name for OpenRouter's delta.reasoning
            add_reasoning(progress, thought, sink)
        finish = getattr(ch, "finish_reason", None)
        if finish and isinstance(finish, str):
            progress.finish_reason = finish

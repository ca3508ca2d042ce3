"""OpenRouter's chat completions called directly over HTTP (aiohttp), without litellm.

Why: the worker already reads OpenRouter's SSE lines itself (``worker_call._read_sse``); litellm only built the
request and mapped errors, and loading it cost ~130-170 MB of RSS and ~2 s of CPU the moment the first job ran
(issue 16: docs/performance.md has the figures). litellm stays the way to reach ``ollama_chat/`` models, and
``openrouter.via_litellm = true`` sends OpenRouter calls through it again.

What is sent follows OpenRouter's API reference (https://openrouter.ai/docs/api-reference/chat-completion,
"Create a chat completion"): ``POST {api_base}/chat/completions`` with ``Authorization: Bearer <key>``, a JSON
body of ``model`` (the OpenRouter id, without our ``openrouter/`` prefix), ``messages``, ``max_tokens``,
``stream: true``, and the role's ``reasoning`` / ``provider`` / ``models`` options at the top level. Usage
arrives in the last chunk whatever is asked ("Usage Accounting": full usage is always included;
``usage: {include: true}`` and ``stream_options.include_usage`` are still sent, as litellm sent them, for
older deployments). The attribution headers ``HTTP-Referer`` / ``X-Title`` come from ``routing.attribution``.

An error before the stream is an HTTP status with ``{"error": {"code", "message", "metadata"}}`` ("Errors and
Debugging"); it is raised as ``_Status`` so ``worker_call.classify`` reads it exactly as it read litellm's
exceptions (402 and "can only afford N", 429 with ``Retry-After``, 5xx retryable, 401/403 fatal).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from swarm_tui import __version__

PREFIX = "openrouter/"
ERROR_BODY_MAX = 65536  # bytes of an error body read (OpenRouter's are a few hundred)
USER_AGENT = f"swarm-tui/{__version__}"


class HttpStatus(Exception):
    """A non-200 answer, shaped as ``worker_call.classify`` reads an HTTP error (``status_code``, headers)."""

    def __init__(self, message: str, status_code: int, headers: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.litellm_response_headers = headers  # the name classify reads Retry-After / X-RateLimit-* under


def new_session() -> aiohttp.ClientSession:
    """A connection pool for worker calls (keep-alive between calls). The pool owns one for its life; a call
    made without one opens and closes its own."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),  # the caller's limits bound each call
        headers={"User-Agent": USER_AGENT},
        read_bufsize=2**18,  # one SSE line (a usage chunk, a long delta) fits a read
    )


def request_body(
    model: str, messages: list[dict[str, str]], max_tokens: int, extra_body: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model.removeprefix(PREFIX),
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "usage": {"include": True},
    }
    for k, v in (extra_body or {}).items():
        body.setdefault(k, v)  # the role's reasoning / provider / models; never our own keys
    return body


def error_message(raw: bytes, status: int) -> str:
    """The ``error.message`` of an error body (its ``metadata.raw`` appended when the provider said more)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"HTTP {status}"
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):
        return json.dumps(obj)[:500]
    message = str(err.get("message") or f"HTTP {status}")
    meta = err.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("raw"), str) and meta["raw"] not in message:
        message += f" ({meta['raw'][:200]})"
    return message


async def open_stream(
    session: aiohttp.ClientSession,
    *,
    api_base: str,
    api_key: str | None,
    body: dict[str, Any],
    headers: dict[str, str] | None,
) -> aiohttp.ClientResponse:
    """The response of a streaming request once its status is 200; raises ``HttpStatus`` for any other."""
    hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream", **(headers or {})}
    if api_key:
        hdrs["Authorization"] = f"Bearer {api_key}"
    resp = await session.post(f"{api_base.rstrip('/')}/chat/completions", data=json.dumps(body), headers=hdrs)
    if resp.status == 200:
        return resp
    try:
        raw = await resp.content.read(ERROR_BODY_MAX)
    finally:
        resp.release()
    raise HttpStatus(error_message(raw, resp.status), resp.status, resp.headers)


async def sse_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The stream's lines as text, without their line ends (what ``_read_sse`` reads)."""
    async for raw in resp.content:
        yield raw.decode("utf-8", "replace").rstrip("\r\n")

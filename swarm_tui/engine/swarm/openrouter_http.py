"""OpenRouter's chat completions called directly over HTTP (aiohttp), without litellm.

Why: the worker reads OpenRouter's SSE lines itself (``sse.read_sse``), so litellm would only build the request
and map errors, and loading it costs ~130-170 MB of RSS and ~2 s of CPU the moment the first job runs
(docs/performance.md has the figures). litellm stays the way to reach ``ollama_chat/`` models, and
``openrouter.via_litellm = true`` sends OpenRouter calls through it instead.

What is sent follows OpenRouter's API reference (https://openrouter.ai/docs/api-reference/chat-completion,
"Create a chat completion"): ``POST {api_base}/chat/completions`` with ``Authorization: Bearer <key>``, a JSON
body of ``model`` (the OpenRouter id, without our ``openrouter/`` prefix), ``messages``, ``max_tokens``,
``stream: true``, and the role's ``reasoning`` / ``provider`` / ``models`` options at the top level. Usage
arrives in the last chunk whatever is asked ("Usage Accounting": full usage is always included;
``usage: {include: true}`` and ``stream_options.include_usage`` are still sent, as litellm sent them, for
older deployments). The attribution headers ``HTTP-Referer`` / ``X-Title`` come from ``routing.attribution``.

An error before the stream is an HTTP status with ``{"error": {"code", "message", "metadata"}}`` ("Errors and
Debugging", https://openrouter.ai/docs/api-reference/errors); it is raised as ``HttpStatus`` so
``call_errors.classify`` reads it exactly as it read litellm's exceptions (402 and "can only afford N", 429 with
``Retry-After``, 5xx retryable, 401/403 fatal). What else can come back, and what is believed:

- A 200 whose body is that same JSON error shape: the errors page says an error "occurred while the LLM is
  producing the output will be emitted in the response body or as an SSE data event" with status 200. It is
  read by its ``error.code`` as the HTTP error it names (no code: 502, "an invalid response"); nothing was
  streamed, so the attempt is settled at 0, or reconciled when an ``X-Generation-Id`` came with it.
- A stream is ``text/event-stream``; any other Content-Type under 200 is an error naming it.
- Redirects are not followed: the API reference documents none for ``POST /chat/completions``, and following
  one re-sends the prompt (and, before aiohttp drops it, the key) to a host nobody configured, whose answer and
  ``usage.cost`` would then be believed. A 3xx is a fatal error naming its ``Location``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from swarm_tui import __version__
from swarm_tui.engine.swarm.call_errors import HttpStatus, code_status
from swarm_tui.engine.swarm.sse import split_lines

PREFIX = "openrouter/"
ERROR_BODY_MAX = 65536  # bytes of an error body read (OpenRouter's are a few hundred)
USER_AGENT = f"swarm-tui/{__version__}"
STREAM_TYPE = "text/event-stream"


def new_session() -> aiohttp.ClientSession:
    """A connection pool for worker calls (keep-alive between calls). The pool owns one for its life; a call
    made without one opens and closes its own."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),  # the caller's limits bound each call
        headers={"User-Agent": USER_AGENT},
        read_bufsize=2**18,  # reads of up to 256 KiB; sse.split_lines joins them into lines
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
    except (ValueError, RecursionError):
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
    """The response of a streaming request once it is a 200 event stream; raises ``HttpStatus`` for any other
    answer (an error status, a redirect, a 200 that is not an event stream)."""
    hdrs = {"Content-Type": "application/json", "Accept": STREAM_TYPE, **(headers or {})}
    if api_key:
        hdrs["Authorization"] = f"Bearer {api_key}"
    url = f"{api_base.rstrip('/')}/chat/completions"
    resp = await session.post(url, data=json.dumps(body), headers=hdrs, allow_redirects=False)
    if resp.status == 200 and resp.content_type == STREAM_TYPE:
        return resp
    try:
        raw = b"" if 300 <= resp.status < 400 else await _read_capped(resp, ERROR_BODY_MAX)
    finally:
        resp.release()
    if 300 <= resp.status < 400:
        where = printable(resp.headers.get("Location", "")) or "(no Location)"
        raise HttpStatus(f"redirected to {where}: not followed", resp.status, resp.headers)
    if resp.status != 200:
        raise HttpStatus(error_message(raw, resp.status), resp.status, resp.headers)
    raise not_a_stream(resp.content_type, raw, resp.headers)


def not_a_stream(content_type: str, raw: bytes, headers: Any) -> HttpStatus:
    """A 200 that is not an event stream: a JSON body as the HTTP error its ``error.code`` names, any other
    Content-Type as an error naming it."""
    gid = printable(headers.get("X-Generation-Id", "") or "")
    if content_type != "application/json":
        ctype = printable(content_type) or "(none)"
        return HttpStatus(f"Content-Type {ctype} where {STREAM_TYPE} was asked for", 200, headers, generation_id=gid)
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict):  # a whole completion (``stream`` ignored), or anything else: not an answer here
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            gid = gid or printable(obj["id"])  # it ran: its generation is reconciled
        return HttpStatus(f"a JSON body where {STREAM_TYPE} was asked for", 200, headers, generation_id=gid)
    status = code_status(err.get("code"))
    if status is None or not 400 <= status <= 599:
        named = str(err.get("code") or "").lower()
        status = 429 if "rate_limit" in named else 502  # 502: "we received an invalid response from it"
    return HttpStatus(
        f"{error_message(raw, status)} (an error body under HTTP 200)", status, headers, generation_id=gid
    )


def printable(text: str) -> str:
    """Text from a server as one inert line of at most 200 characters (what is not printable is dropped)."""
    return "".join(ch for ch in str(text) if ch.isprintable())[:200]


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        block = await resp.content.read(limit - len(out))
        if not block:
            break
        out += block
    return bytes(out)


def sse_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The stream's lines as text, without their line ends (what ``sse.read_sse`` reads); a line over
    ``sse.MAX_LINE`` raises ``sse.LineTooLong``. aiohttp's own line iterator stops at twice the read buffer."""
    return split_lines(resp.content.iter_any())

"""A loopback fake of OpenRouter's OpenAI-compatible API, good enough for the real litellm client.

Usage::

    async with FakeOpenRouter() as fo:           # listens on 127.0.0.1:<free port>
        fo.base                                   # "http://127.0.0.1:PORT/api/v1": OPENROUTER_API_BASE
        fo.script(Answer(tokens=5))               # the next chat request answers this (a queue)
        fo.script(Answer(status=429, retry_after=1), Answer(tokens=3, tps=50))
        fo.default = Answer(tokens=20, tps=100)   # when the queue is empty: an Answer or a
                                                  # callable(body: dict) -> Answer
        fo.prices["x/y"] = ("0.000001", "0.000002")   # GET /models pricing (USD per token, strings)
        fo.key = {"limit_remaining": 4.5, "usage": 0.5, "limit": 5.0}   # GET /key "data"
        ...
        fo.requests     # one dict per chat request (see below)
        fo.chats(model=None)  # the chat requests, optionally of one model
        fo.max_open     # the most streams open at the same time; fo.open is the current count
        await fo.wait_open(n, timeout)   # until at least n streams are open

``Answer`` fields: ``tokens`` (count of content pieces, each one word "tok<i> "), ``text`` (instead: these
words), ``tps`` (tokens a second, 0: as fast as possible), ``first_token_delay`` (s before the first
content byte), ``prompt_tokens``, ``cost`` (USD in the final usage chunk; None: tokens x 1e-6),
``omit_cost`` (no ``cost`` key in usage), ``status`` (!= 200: an OpenRouter-shaped error body
``{"error": {"code", "message"}}``), ``retry_after`` (seconds, the Retry-After header with a 429),
``error_after`` (after this many tokens send an error chunk with ``finish_reason: "error"`` and end),
``drop_after`` (after this many tokens drop the TCP connection), ``stall_after``/``stall_s`` (after this
many tokens send nothing for stall_s seconds, then go on).

Endpoints under ``/api/v1``: ``POST /chat/completions`` (SSE ``data: {...}`` chunks then ``data: [DONE]``
when the body's ``stream`` is true, with the usage, including ``cost``, in a last chunk whose ``choices``
is empty, as OpenRouter sends it; one JSON completion otherwise), ``GET /models`` (``{"data": [{"id",
"pricing": {"prompt", "completion"}}]}``), ``GET /key`` (``{"data": fo.key}``).

Each request record: ``model``, ``max_tokens``, ``stream``, ``body``, ``auth`` (True when a bearer key was
sent; the key itself is not kept), ``status``, ``t_start``, ``t_first_byte``, ``t_end`` (time.monotonic(),
None until then), ``tokens_sent``, ``closed_by_client`` (the client closed the stream before its end),
``cost`` (the USD the usage chunk reported, set once it was sent; absent for a stream that did not finish).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    tokens: int = 10
    text: str | None = None
    tps: float = 0.0
    first_token_delay: float = 0.0
    prompt_tokens: int = 12
    cost: float | None = None
    omit_cost: bool = False
    status: int = 200
    retry_after: float | None = None
    error_after: int | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0

    def pieces(self) -> list[str]:
        if self.text is not None:
            return [w + " " for w in self.text.split()]
        return [f"tok{i} " for i in range(self.tokens)]


Scripted = Answer | Callable[[dict[str, Any]], Answer]

ERROR_TEXT = {402: "Insufficient credits", 429: "Rate limit exceeded", 500: "Internal Server Error",
              502: "Bad gateway", 503: "Service unavailable", 401: "No auth credentials found"}


class _Closed(Exception):
    pass


class FakeOpenRouter:
    def __init__(self) -> None:
        self.default: Scripted = Answer()
        self._queue: deque[Scripted] = deque()
        self.prices: dict[str, tuple[str, str]] = {
            "google/gemini-2.5-flash-lite": ("0.0000001", "0.0000004"),
            "deepseek/deepseek-chat-v3.1": ("0.0000002", "0.0000008"),
            "qwen/qwen3-coder": ("0.0000002", "0.0000008"),
        }
        self.key: dict[str, Any] = {"limit_remaining": 10.0, "usage": 0.0, "limit": 10.0}
        self.requests: list[dict[str, Any]] = []
        self.open = 0
        self.max_open = 0
        self._open_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ scripting
    def script(self, *answers: Scripted) -> None:
        self._queue.extend(answers)

    def _next(self, body: dict[str, Any]) -> Answer:
        item = self._queue.popleft() if self._queue else self.default
        return item(body) if callable(item) else item

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def chats(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if model is None or r["model"] in (model, model.split("/", 1)[-1])]

    async def wait_open(self, n: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while self.open < n:
            if time.monotonic() > end:
                raise TimeoutError(f"{self.open} streams open, wanted {n}")
            self._open_changed.clear()
            try:
                await asyncio.wait_for(self._open_changed.wait(), max(0.01, end - time.monotonic()))
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ server
    async def __aenter__(self) -> FakeOpenRouter:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/key", self._key)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": mid, "name": mid, "pricing": {"prompt": p, "completion": c, "request": "0", "image": "0"},
                 "context_length": 131072} for mid, (p, c) in self.prices.items()]
        return web.json_response({"data": data})

    async def _key(self, request: web.Request) -> web.Response:
        return web.json_response({"data": dict(self.key)})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": 400, "message": "bad JSON"}}, status=400)
        rec: dict[str, Any] = {
            "model": body.get("model"), "max_tokens": body.get("max_tokens"), "stream": bool(body.get("stream")),
            "body": body, "auth": request.headers.get("Authorization", "").startswith("Bearer "),
            "t_start": time.monotonic(), "t_first_byte": None, "t_end": None, "tokens_sent": 0,
            "closed_by_client": False, "status": 200,
        }
        self.requests.append(rec)
        ans = self._next(body)
        if ans.status != 200:
            rec["status"] = ans.status
            headers = {}
            if ans.retry_after is not None:
                headers["Retry-After"] = str(ans.retry_after)
            rec["t_end"] = time.monotonic()
            msg = ERROR_TEXT.get(ans.status, "error")
            return web.json_response({"error": {"code": ans.status, "message": msg}}, status=ans.status,
                                     headers=headers)
        if not rec["stream"]:
            return await self._complete(request, body, ans, rec)
        return await self._stream(request, body, ans, rec)

    async def _complete(self, request: web.Request, body: dict[str, Any], ans: Answer,
                        rec: dict[str, Any]) -> web.Response:
        if ans.first_token_delay:
            await asyncio.sleep(ans.first_token_delay)
        pieces = ans.pieces()
        rec["tokens_sent"] = len(pieces)
        rec["t_first_byte"] = rec["t_end"] = time.monotonic()
        rec["cost"] = self._usage(ans, len(pieces)).get("cost")
        return web.json_response({
            "id": "gen-fake", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                         "finish_reason": "stop"}],
            "usage": self._usage(ans, len(pieces)),
        })

    def _usage(self, ans: Answer, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": ans.prompt_tokens, "completion_tokens": n,
                                 "total_tokens": ans.prompt_tokens + n}
        if not ans.omit_cost:
            usage["cost"] = ans.cost if ans.cost is not None else round(n * 1e-6, 9)
        return usage

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep, noticing a client that goes away meanwhile."""
        end = time.monotonic() + seconds
        while True:
            tr = request.transport
            if tr is None or tr.is_closing():
                raise _Closed
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.02, left))

    async def _stream(self, request: web.Request, body: dict[str, Any], ans: Answer,
                      rec: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                      "Cache-Control": "no-cache"})
        model = body.get("model", "")
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {"id": "gen-fake", "provider": "Fake", "model": model, "object": "chat.completion.chunk",
                   "created": created,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish,
                                "logprobs": None}], **extra}
            return f"data: {json.dumps(obj)}\n\n".encode()

        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._open_changed.set()
        try:
            await resp.prepare(request)
            await resp.write(b": OPENROUTER PROCESSING\n\n")
            if ans.first_token_delay:
                await self._pause(request, ans.first_token_delay)
            gap = 1.0 / ans.tps if ans.tps > 0 else 0.0
            pieces = ans.pieces()
            for i, piece in enumerate(pieces):
                if ans.drop_after is not None and i == ans.drop_after:
                    assert request.transport is not None
                    rec["dropped"] = True
                    request.transport.abort()
                    raise _Closed
                if ans.error_after is not None and i == ans.error_after:
                    err = chunk({"role": "assistant", "content": ""}, "error",
                                error={"code": 502, "message": "Provider returned error: upstream died"})
                    await resp.write(err)
                    await resp.write(b"data: [DONE]\n\n")
                    rec["t_end"] = time.monotonic()
                    return resp
                if ans.stall_after is not None and i == ans.stall_after:
                    await self._pause(request, ans.stall_s)
                if i and gap:
                    await self._pause(request, gap)
                await resp.write(chunk({"role": "assistant", "content": piece}))
                if rec["t_first_byte"] is None:
                    rec["t_first_byte"] = time.monotonic()
                rec["tokens_sent"] = i + 1
            await resp.write(chunk({"role": "assistant", "content": ""}, "stop"))
            usage_obj = {"id": "gen-fake", "provider": "Fake", "model": model, "object": "chat.completion.chunk",
                         "created": created, "choices": [], "usage": self._usage(ans, len(pieces))}
            await resp.write(f"data: {json.dumps(usage_obj)}\n\n".encode())
            rec["cost"] = usage_obj["usage"].get("cost")  # what this stream charged (None: not reported)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            rec["t_end"] = time.monotonic()
            return resp
        except (_Closed, ConnectionError, asyncio.CancelledError):
            rec["t_end"] = time.monotonic()
            rec["closed_by_client"] = not rec.get("dropped", False)
            return resp
        finally:
            self.open -= 1
            self._open_changed.set()

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
many tokens send nothing for stall_s seconds, then go on), ``keepalive_s`` (while waiting, before the first
token or in a stall, send a ``: OPENROUTER PROCESSING`` comment this often; 0: only the one at the start),
``reasoning`` (this many reasoning pieces "think<i> " in ``delta.reasoning`` / ``reasoning_details`` before the
content), ``finish`` (the last chunk's ``finish_reason``: "length" with ``tokens=0`` is a model that spent
max_tokens on reasoning), ``error_code`` / ``error_message`` (of the ``error_after`` chunk), ``headers`` (more
response headers with an error ``status``, e.g. ``X-RateLimit-Reset``), ``afford`` (with ``status=402``: the
per-request 402 "... You requested up to N tokens, but can only afford <afford>"; without it a 402 is the
account's "Insufficient credits").

A provider that lies or breaks (each says which page it departs from, or follows): ``cut_after`` (after this many
tokens the body ends cleanly with no ``finish_reason`` and no ``[DONE]``), ``json_error`` (HTTP 200 with the JSON
error body ``{"error": {"code": json_error, ...}}`` and Content-Type application/json), ``content_type`` (HTTP
200 with this Content-Type and a small body of it), ``gen_header`` (with ``json_error`` / ``content_type``: an
``X-Generation-Id`` comes along and that generation is billed ``cost`` or 0), ``blob`` (an encrypted reasoning
detail of this many characters, one SSE line, before the content), ``usage_raw`` (usage fields written as these
raw JSON literals, e.g. ``{"cost": "1e400"}``; what is billed stays the real cost), ``pad`` (characters added
to every content and reasoning piece: each token huge). A redirect is ``status=307`` with a ``Location`` in
``headers``.

Endpoints under ``/api/v1``: ``POST /chat/completions`` (SSE ``data: {...}`` chunks then ``data: [DONE]``
when the body's ``stream`` is true, with the usage, including ``cost``, in a last chunk whose ``choices``
is empty, as OpenRouter sends it; one JSON completion otherwise), ``GET /models`` (``{"data": [{"id",
"pricing": {"prompt", "completion"}}]}``), ``GET /key`` (``{"data": fo.key}``), ``GET /generation?id=``
(``{"data": {"id", "total_cost", "cancelled", "tokens_prompt", "tokens_completion", ...}}``, 404 "Generation
not found" until ``fo.generation_lag`` seconds after the generation ended).

Billing, as OpenRouter does it (``_bill``; ``fo.billed`` is the total, ``fo.generations`` the records by id): a
complete answer costs its usage cost; a stream the client closed costs the complete answer when the model's
provider bills cancellations (Google, Groq, Mistral, Bedrock: ``google/`` and ``mistralai/`` models, or
``fo.providers[model] = "Groq"``), else the share of the tokens sent; an error chunk or a dropped connection
costs the tokens sent. An HTTP error costs nothing.

Each request record: ``model``, ``max_tokens``, ``stream``, ``body``, ``auth`` (True when a bearer key was
sent; the key itself is not kept), ``id`` (the generation id ``gen-<n>`` every chunk carries), ``status``,
``t_start``, ``t_first_byte``, ``t_end`` (time.monotonic(), None until then), ``tokens_sent``,
``closed_by_client`` (the client closed the stream before its end), ``cost`` (the USD the usage chunk
reported, set once it was sent; absent for a stream that did not finish), ``headers`` (the request's headers
but Authorization), ``reasoning_sent`` (reasoning pieces sent), ``billed`` (what the generation cost, once it
ended).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

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
    keepalive_s: float = 0.0
    reasoning: int = 0
    finish: str = "stop"
    error_code: int | str = 502
    error_message: str = "Provider returned error: upstream died"
    headers: dict[str, str] | None = None
    afford: int | None = None  # with status 402: "... You requested up to N tokens, but can only afford <afford>"
    cut_after: int | None = None
    json_error: int | str | None = None
    content_type: str | None = None
    gen_header: bool = False
    blob: int = 0
    usage_raw: dict[str, str] | None = None
    pad: int = 0

    def pieces(self) -> list[str]:
        if self.text is not None:
            return [w + " " for w in self.text.split()]
        return [f"tok{i} " + "x" * self.pad for i in range(self.tokens)]


Scripted = Answer | Callable[[dict[str, Any]], Answer]

# Error bodies and codes as OpenRouter's "Errors and Debugging" page lists them
# (https://openrouter.ai/docs/api/reference/errors-and-debugging).
ERROR_TEXT = {
    402: "Insufficient credits",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Bad gateway",
    503: "Service unavailable",
    401: "No auth credentials found",
    403: "Your chosen model requires moderation and your input was flagged",
    408: "Request timed out",
}


# Providers that bill a cancelled stream in full: OpenRouter's streaming doc, "Stream Cancellation", lists them
# as "Not Currently Supported" (https://openrouter.ai/docs/api-reference/streaming): "For non-streaming requests
# or unsupported providers, the model will continue processing and you will be billed for the complete response."
BILLS_CANCELLED = ("Google", "Google AI Studio", "Groq", "Mistral", "Amazon Bedrock")
PROVIDER_OF_PREFIX = {"google/": "Google", "mistralai/": "Mistral"}


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
        # A key OpenRouter does not accept (revoked, mistyped): every request, GET /key included, answers 401
        # "Invalid credentials (OAuth session expired, disabled/invalid API key)" ("Errors and Debugging",
        # https://openrouter.ai/docs/api/reference/errors-and-debugging), as an error object {"error": {code, message}}.
        self.key_rejected = False
        self.key_asks = 0  # GET /key requests seen
        # more ``pricing`` parts of a model (``request``, ``internal_reasoning``, ``web_search``, ``overrides`` ...,
        # as the "Models" page's Pricing Object and the SDK's ``PublicPricing`` name them), over the defaults below
        self.pricing_extra: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._gen = 0  # generation ids handed out: gen-1, gen-2, ...
        # Billing, as GET /api/v1/generation reports it (https://openrouter.ai/docs/api-reference/get-a-generation,
        # "Get a generation"): one record per generation, readable ``generation_lag`` seconds after its end (404
        # "not found" before: the stats lag); float("inf"): never. ``providers``: model -> provider name.
        self.generations: dict[str, dict[str, Any]] = {}
        self.generation_lag = 0.0
        self.generation_asks = 0
        self.providers: dict[str, str] = {}
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
    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/key", self._key)
        app.router.add_get("/api/v1/generation", self._generation)

    async def __aenter__(self) -> Self:
        app = web.Application()
        self._routes(app)
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
        data = [
            {
                "id": mid,
                "name": mid,
                "pricing": {
                    "prompt": p,
                    "completion": c,
                    "request": "0",
                    "image": "0",
                    **self.pricing_extra.get(mid, {}),
                },
                "context_length": 131072,
            }
            for mid, (p, c) in self.prices.items()
        ]
        return web.json_response({"data": data})

    async def _key(self, request: web.Request) -> web.Response:
        self.key_asks += 1
        if self.key_rejected:
            return web.json_response({"error": {"code": 401, "message": "Invalid credentials"}}, status=401)
        return web.json_response({"data": dict(self.key)})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": 400, "message": "bad JSON"}}, status=400)
        rec: dict[str, Any] = {
            "model": body.get("model"),
            "max_tokens": body.get("max_tokens"),
            "stream": bool(body.get("stream")),
            "body": body,
            "auth": request.headers.get("Authorization", "").startswith("Bearer "),
            "t_start": time.monotonic(),
            "t_first_byte": None,
            "t_end": None,
            "tokens_sent": 0,
            "closed_by_client": False,
            "status": 200,
            # Who is calling: HTTP-Referer / X-Title (https://openrouter.ai/docs/app-attribution, "App
            # Attribution"). Every header is kept but the key's.
            "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        }
        # Every chunk of one generation carries the same ``id``, the key of GET /api/v1/generation?id=
        # (https://openrouter.ai/docs/api-reference/streaming, "Streaming": also the X-Generation-Id header).
        self._gen += 1
        rec["id"] = f"gen-{self._gen}"
        self.requests.append(rec)
        ans = Answer(status=401) if self.key_rejected else self._next(body)
        if ans.status != 200:
            rec["status"] = ans.status
            headers = dict(ans.headers or {})
            if ans.retry_after is not None:
                # Retry-After (seconds) on 429 and 503 ("Errors and Debugging", "Retry-After header"); a 429
                # also carries X-RateLimit-* headers, scripted in ``headers``
                # (https://openrouter.ai/docs/api_reference/limits, "Limits").
                headers["Retry-After"] = str(ans.retry_after)
            rec["t_end"] = time.monotonic()
            err: dict[str, Any] = {"code": ans.status, "message": ERROR_TEXT.get(ans.status, "error")}
            if self.key_rejected:
                err["message"] = "Invalid credentials"
            if ans.status == 402 and ans.afford is not None:
                # a 402 for this request only ("Errors and Debugging", 402): fewer max_tokens would do
                err["message"] = (
                    f"This request requires more credits, or fewer max_tokens. You requested up to "
                    f"{body.get('max_tokens')} tokens, but can only afford {ans.afford}. To increase, "
                    "visit https://openrouter.ai/settings/credits and add more credits"
                )
            if ans.status == 403:  # a moderation flag carries its reasons ("Errors and Debugging", Moderation)
                err["metadata"] = {
                    "reasons": ["violence"],
                    "flagged_input": "hi",
                    "provider_name": "Fake",
                    "model_slug": body.get("model"),
                }
            return web.json_response({"error": err}, status=ans.status, headers=headers)
        if ans.json_error is not None or ans.content_type is not None:
            return self._not_a_stream(ans, rec)
        if not rec["stream"]:
            out: web.StreamResponse = await self._complete(request, body, ans, rec)
        else:
            out = await self._stream(request, body, ans, rec)
        self._bill(rec, ans)
        return out

    def _not_a_stream(self, ans: Answer, rec: dict[str, Any]) -> web.Response:
        """HTTP 200 without a stream. ``json_error``: "Errors and Debugging"
        (https://openrouter.ai/docs/api-reference/errors): unless the request is invalid or out of credit, "the
        returned HTTP response status will be 200 and any error occurred while the LLM is producing the output
        will be emitted in the response body or as an SSE data event", in the ``{"error": {"code", "message"}}``
        shape. ``content_type``: what no page documents (a proxy's page, a captive portal): the streaming doc
        (https://openrouter.ai/docs/api-reference/streaming) answers a stream as Server-Sent Events only."""
        rec["t_end"] = time.monotonic()
        headers: dict[str, str] = {}
        if ans.gen_header:
            headers["X-Generation-Id"] = rec["id"]
            self._record(rec, ans.cost or 0.0, prompt=ans.prompt_tokens, completion=0, cancelled=False, done=False)
        if ans.json_error is not None:
            code = ans.json_error
            err = {"code": code, "message": ERROR_TEXT.get(code, "error") if isinstance(code, int) else "error"}
            return web.json_response({"error": err}, status=200, headers=headers)
        return web.Response(status=200, body=b"<html>hello</html>", content_type=ans.content_type, headers=headers)

    # ------------------------------------------------------------------ billing
    def provider_of(self, model: str) -> str:
        for prefix, name in PROVIDER_OF_PREFIX.items():
            if model.startswith(prefix):
                return self.providers.get(model, name)
        return self.providers.get(model, "Fake")

    @property
    def billed(self) -> float:
        """What this fake OpenRouter has charged in all: every generation's total_cost."""
        return round(sum(float(g["total_cost"]) for g in self.generations.values()), 9)

    def _bill(self, rec: dict[str, Any], ans: Answer) -> None:
        """Charge a finished generation the way OpenRouter does: the usage cost of a complete answer; for a
        stream the client closed, the complete answer when its provider bills cancellations in full (streaming
        doc, "Stream Cancellation"), else the tokens sent; for an error or a drop, the tokens sent."""
        units = len(ans.pieces()) + ans.reasoning
        full = ans.cost if ans.cost is not None else round(len(ans.pieces()) * 1e-6, 9)
        sent = int(rec.get("tokens_sent") or 0) + int(rec.get("reasoning_sent") or 0)
        provider = self.provider_of(str(rec.get("model") or ""))
        done = rec.get("cost") is not None or (sent >= units and not rec.get("closed_by_client"))
        cancelled = bool(rec.get("closed_by_client")) and not done
        if done or (cancelled and provider in BILLS_CANCELLED):
            cost, n = (rec["cost"] if rec.get("cost") is not None else full), units
        else:
            cost, n = (round(full * sent / units, 9) if units else 0.0), sent
        self._record(rec, cost, prompt=ans.prompt_tokens, completion=n, cancelled=cancelled, done=done)

    def _record(
        self, rec: dict[str, Any], cost: float, *, prompt: int, completion: int, cancelled: bool, done: bool
    ) -> None:
        gid = str(rec.get("id") or f"gen-x{len(self.generations)}")
        self.generations[gid] = {
            "id": gid,
            "model": rec.get("model"),
            "provider_name": self.provider_of(str(rec.get("model") or "")),
            "total_cost": cost,
            "cancelled": cancelled,
            "streamed": rec.get("stream", False),
            "tokens_prompt": prompt,
            "tokens_completion": completion,
            "finish_reason": "stop" if done else "cancelled" if cancelled else "error",
            "ready_at": time.monotonic() + self.generation_lag,
        }
        rec["billed"] = cost

    async def _generation(self, request: web.Request) -> web.Response:
        """GET /api/v1/generation?id= ("Get a generation"): ``{"data": {..., "total_cost", "cancelled"}}``; 404
        until the generation's stats are ready (they lag its end by seconds)."""
        self.generation_asks += 1
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"code": 401, "message": "No auth credentials found"}}, status=401)
        g = self.generations.get(request.query.get("id", ""))
        if g is None or time.monotonic() < g["ready_at"]:
            return web.json_response({"error": {"code": 404, "message": "Generation not found"}}, status=404)
        return web.json_response({"data": {k: v for k, v in g.items() if k != "ready_at"}})

    async def _complete(
        self, request: web.Request, body: dict[str, Any], ans: Answer, rec: dict[str, Any]
    ) -> web.Response:
        if ans.first_token_delay:
            await asyncio.sleep(ans.first_token_delay)
        pieces = ans.pieces()
        rec["tokens_sent"] = len(pieces)
        rec["t_first_byte"] = rec["t_end"] = time.monotonic()
        rec["cost"] = self._usage(ans, len(pieces)).get("cost")
        return web.json_response(
            {
                "id": rec["id"],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": "stop"}
                ],
                "usage": self._usage(ans, len(pieces)),
            }
        )

    def _usage(self, ans: Answer, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": n,
            "total_tokens": ans.prompt_tokens + n,
        }
        if not ans.omit_cost:
            usage["cost"] = ans.cost if ans.cost is not None else round(n * 1e-6, 9)
        return usage

    async def _pause(
        self, request: web.Request, seconds: float, resp: web.StreamResponse | None = None, keepalive: float = 0.0
    ) -> None:
        """Sleep, noticing a client that goes away meanwhile; with ``keepalive`` and ``resp``, send an SSE
        comment that often, as OpenRouter does "to prevent connection timeouts"
        (https://openrouter.ai/docs/api-reference/streaming, "Streaming", Additional Information)."""
        now = time.monotonic()
        end = now + seconds
        beat = now + keepalive if keepalive > 0 and resp is not None else None
        while True:
            tr = request.transport
            if tr is None or tr.is_closing():
                raise _Closed
            now = time.monotonic()
            if beat is not None and now >= beat and resp is not None:
                await resp.write(b": OPENROUTER PROCESSING\n\n")
                beat = now + keepalive
            left = end - now
            if left <= 0:
                return
            await asyncio.sleep(min(0.02, left))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], ans: Answer, rec: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Generation-Id": rec["id"]},
        )
        model = body.get("model", "")
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {
                "id": rec["id"],
                "provider": "Fake",
                "model": model,
                "object": "chat.completion.chunk",
                "created": created,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": finish,
                        "native_finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                **extra,
            }
            return f"data: {json.dumps(obj)}\n\n".encode()

        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._open_changed.set()
        try:
            await resp.prepare(request)
            await resp.write(b": OPENROUTER PROCESSING\n\n")
            if ans.first_token_delay:
                await self._pause(request, ans.first_token_delay, resp, ans.keepalive_s)
            gap = 1.0 / ans.tps if ans.tps > 0 else 0.0
            if ans.blob:
                # An encrypted reasoning detail ("Reasoning Tokens",
                # https://openrouter.ai/docs/use-cases/reasoning-tokens: ``reasoning_details`` of type
                # ``reasoning.encrypted`` carry opaque ``data``): one SSE line as long as that data.
                detail = {"type": "reasoning.encrypted", "data": "A" * ans.blob, "format": "unknown", "index": 0}
                await resp.write(chunk({"role": "assistant", "content": None, "reasoning_details": [detail]}))
            for i in range(ans.reasoning):
                # Reasoning tokens stream as delta.reasoning (and reasoning_details) before the content
                # (https://openrouter.ai/docs/use-cases/reasoning-tokens, "Reasoning Tokens").
                if i and gap:
                    await self._pause(request, gap, resp, ans.keepalive_s)
                text = f"think{i} " + "x" * ans.pad
                await resp.write(
                    chunk(
                        {
                            "role": "assistant",
                            "content": None,
                            "reasoning": text,
                            "reasoning_details": [
                                {"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}
                            ],
                        }
                    )
                )
                rec["reasoning_sent"] = i + 1
            pieces = ans.pieces()
            for i, piece in enumerate(pieces):
                if ans.cut_after is not None and i == ans.cut_after:
                    # The body ends cleanly here, with neither a ``finish_reason`` nor ``data: [DONE]``: what the
                    # streaming doc (https://openrouter.ai/docs/api-reference/streaming) never sends (every stream
                    # ends with a chunk's finish_reason, the usage chunk and [DONE]); a proxy's timeout or a dying
                    # provider does.
                    await resp.write_eof()
                    rec["t_end"] = time.monotonic()
                    rec["cut"] = True
                    return resp
                if ans.drop_after is not None and i == ans.drop_after:
                    assert request.transport is not None
                    rec["dropped"] = True
                    request.transport.abort()
                    raise _Closed
                if ans.error_after is not None and i == ans.error_after:
                    # An error after streaming started: HTTP stays 200, a data event carries error.code and
                    # finish_reason "error" (https://openrouter.ai/docs/api-reference/streaming, "Handling
                    # Errors During Streaming"; codes as in "Errors and Debugging").
                    err = chunk(
                        {"role": "assistant", "content": ""},
                        "error",
                        error={"code": ans.error_code, "message": ans.error_message},
                    )
                    await resp.write(err)
                    await resp.write(b"data: [DONE]\n\n")
                    rec["t_end"] = time.monotonic()
                    return resp
                if ans.stall_after is not None and i == ans.stall_after:
                    await self._pause(request, ans.stall_s, resp, ans.keepalive_s)
                if i and gap:
                    await self._pause(request, gap)
                await resp.write(chunk({"role": "assistant", "content": piece}))
                if rec["t_first_byte"] is None:
                    rec["t_first_byte"] = time.monotonic()
                rec["tokens_sent"] = i + 1
            # "length" with no content: reasoning tokens are output tokens and count against max_tokens
            # (https://openrouter.ai/docs/use-cases/reasoning-tokens, "Reasoning Tokens")
            await resp.write(chunk({"role": "assistant", "content": ""}, ans.finish))
            usage_obj = {
                "id": rec["id"],
                "provider": "Fake",
                "model": model,
                "object": "chat.completion.chunk",
                "created": created,
                "choices": [],
                "usage": self._usage(ans, len(pieces)),
            }
            line = json.dumps(usage_obj)
            for key, literal in (ans.usage_raw or {}).items():
                # A lying provider: "Usage Accounting" (https://openrouter.ai/docs/use-cases/usage-accounting)
                # gives ``cost`` and the token counts as numbers; these literals (1e400, NaN, Infinity) are
                # what Python's json still reads, as inf and nan.
                line = line.replace(f'"{key}": {json.dumps(usage_obj["usage"].get(key))}', f'"{key}": {literal}')
            await resp.write(f"data: {line}\n\n".encode())
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

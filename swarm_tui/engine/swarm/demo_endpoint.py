"""The built-in demo endpoint: a loopback, OpenAI-compatible server that streams synthetic answers.

``--demo`` runs the real worker path (bus, litellm, streaming, results, spend) against it, offline and with no
key. It answers ``POST /api/v1/chat/completions`` with SSE chunks at ``demo.tokens_per_s`` per stream and a
final usage chunk whose ``cost`` is priced at ``demo.usd_per_mtok``, the way OpenRouter reports it;
``GET /api/v1/models`` lists every model it was asked about at that price.

An answer looks like a real one (``demo_answer.py``): a Markdown document with a heading, a list and a code block,
shaped by the worker's role (research notes, a step-by-step analysis, code with its usage), of a length that
varies by role and job up to ``demo.tokens`` (and the request's ``max_tokens``), one word a token. It is
deterministic per job: seeded by the job id the worker sends in ``X-Swarm-Job`` (the request's text when
there is none), so a retried job streams the same answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import web

from swarm_tui.engine.config.sections import DemoSection
from swarm_tui.engine.info import DemoInfo
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.swarm.demo_answer import demo_answer, role_of, topic_of
from swarm_tui.engine.swarm.endpoint import HttpSession


class DemoEndpoint:
    """A component (its server starts before the pool) and the pool's endpoint (swarm/endpoint.py): it answers
    every model, local ones too, as an OpenRouter model, with no key needed and nothing to reconcile."""

    name = "demo"
    KEY = "demo-key-not-secret"
    is_demo = True
    blocks_without_key = False
    seeds_answers = True  # a retried job streams the same answer
    reconciles = False

    def __init__(self, demo: DemoSection, *, host: str = "127.0.0.1") -> None:
        self.tps = demo.tokens_per_s
        self.tokens = demo.tokens
        self.usd_per_mtok = demo.usd_per_mtok
        self.host = host
        self.port = 0
        self.requests = 0
        self.open = 0
        self._models: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._http = HttpSession()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v1"

    # ------------------------------------------------------------------ the pool's endpoint
    @property
    def api_key(self) -> str:
        return self.KEY

    @property
    def api_base(self) -> str:
        return self.base

    def runs_locally(self, model: str) -> bool:
        return False

    def own_model(self, model: str) -> str | None:
        bare = model.split("/", 1)[1] if "/" in model else model
        if is_local_chat(model):
            bare = "local/" + bare
        return "openrouter/" + bare

    def needs_litellm(self, model: str) -> bool:
        return False  # no warm-up for the demo: it answers every model as openrouter/

    def session(self) -> aiohttp.ClientSession:
        return self._http.get()

    async def close_session(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------------ the server

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models_list)
        app.router.add_get("/api/v1/key", self._key)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # (host, port) of the one site: the port the OS chose

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def info(self) -> DemoInfo:
        return {
            "base": self.base if self.port else "",
            "tokens_per_s": self.tps,
            "tokens": self.tokens,
            "usd_per_mtok": self.usd_per_mtok,
            "requests": self.requests,
            "open": self.open,
        }

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens + completion_tokens) * self.usd_per_mtok / 1e6

    async def _models_list(self, request: web.Request) -> web.Response:
        price = f"{self.usd_per_mtok / 1e6:.12f}"
        data = [{"id": m, "pricing": {"prompt": price, "completion": price}} for m in sorted(self._models)]
        return web.json_response({"data": data})

    async def _key(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {"limit_remaining": None, "usage": 0.0, "limit": None}})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"code": 400, "message": "bad JSON"}}, status=400)
        self.requests += 1
        model = str(body.get("model", "demo"))[:128]
        self._models.add(model)
        max_tokens = body.get("max_tokens")
        n = min(self.tokens, max_tokens) if isinstance(max_tokens, int) and max_tokens > 0 else self.tokens
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []) if isinstance(m, dict))
        prompt_tokens = max(1, prompt_chars // 4)
        messages = body.get("messages", [])
        job = request.headers.get("X-Swarm-Job", "")
        seed = job or json.dumps([model, messages], sort_keys=True, default=str)
        words = demo_answer(seed, role_of(messages, request.headers.get("X-Swarm-Role", "")), topic_of(messages), n)
        n = len(words)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
            "cost": round(self.cost(prompt_tokens, n), 12),
        }
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "gen-demo",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "".join(words)},
                        }
                    ],
                }
            )

        def sse(obj: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(obj)}\n\n".encode()

        def chunk(content: str, finish: str | None = None) -> bytes:
            return sse(
                {
                    "id": "gen-demo",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": finish}
                    ],
                }
            )

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        self.open += 1
        try:
            await resp.prepare(request)
            gap = 1.0 / self.tps
            start = time.monotonic()
            for i, w in enumerate(words):
                delay = start + i * gap - time.monotonic()  # steady rate, no drift
                if delay > 0:
                    await asyncio.sleep(delay)
                await resp.write(chunk(w))
            await resp.write(chunk("", "stop"))
            await resp.write(
                sse(
                    {
                        "id": "gen-demo",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:
            pass  # the worker closed the stream (cancelled)
        finally:
            self.open -= 1
        return resp

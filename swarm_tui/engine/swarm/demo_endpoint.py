"""The built-in demo endpoint: a loopback, OpenAI-compatible server that streams synthetic text.

``--demo`` runs the real worker path (bus, litellm, streaming, results, spend) against it, offline and with no
key. It answers ``POST /api/v1/chat/completions`` with SSE chunks at ``demo.tokens_per_s`` per stream,
``demo.tokens`` tokens long, and a final usage chunk whose ``cost`` is priced at ``demo.usd_per_mtok``, the
way OpenRouter reports it; ``GET /api/v1/models`` lists every model it was asked about at that price.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from aiohttp import web

from swarm_tui.engine.config import Config
from swarm_tui.engine.info import DemoInfo

WORDS = (
    "the swarm streams tokens while the heartbeat decides and the budget holds; each worker writes "
    "its part, results land on the bus, spend is settled, nothing is lost when a process stops. "
    "demo output: synthetic text at a fixed rate and price, no model was called."
).split()


class DemoEndpoint:
    name = "demo"
    KEY = "demo-key-not-secret"

    def __init__(self, cfg: Config, *, host: str = "127.0.0.1") -> None:
        self.tps = cfg.demo.tokens_per_s
        self.tokens = cfg.demo.tokens
        self.usd_per_mtok = cfg.demo.usd_per_mtok
        self.host = host
        self.port = 0
        self.requests = 0
        self.open = 0
        self._models: set[str] = set()
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models_list)
        app.router.add_get("/api/v1/key", self._key)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

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
        rng = random.Random(hash(model) ^ self.requests)
        words = [rng.choice(WORDS) + " " for _ in range(n)]
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

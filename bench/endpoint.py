"""The benchmark's loopback OpenAI-compatible endpoint: controlled token rates, and a record of the wire.

Run it as its own process (``python -m bench.endpoint``; it prints ``port N``) so its CPU is not the app's.
It answers ``POST /api/v1/chat/completions`` (SSE, OpenRouter-shaped: a final usage chunk with ``cost``),
``GET /api/v1/models`` and ``GET /api/v1/key``, and records for every stream: the tag of the prompt
(``bench-job-<tag>`` anywhere in the messages), the arrival time of the request, the send time of every
token (``time.time()``: the same clock as the app's), the end, and whether the client closed it early.
Every token is one content delta, so the app's token count k of a stream names the k-th send time here.

Control: ``POST /bench/config`` ``{"tps", "tokens", "first_delay"}``; ``POST /bench/reset``;
``GET /bench/stats`` (``?sends=1`` adds the send times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

from aiohttp import web

TAG = re.compile(r"bench-job-([A-Za-z0-9_.-]+)")


class Stream:
    __slots__ = ("tag", "model", "t_arrive", "t_end", "closed_by_client", "sends", "n")

    def __init__(self, tag: str, model: str, n: int) -> None:
        self.tag = tag
        self.model = model
        self.n = n
        self.t_arrive = time.time()
        self.t_end: float | None = None
        self.closed_by_client = False
        self.sends: list[float] = []

    def as_dict(self, sends: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "tag": self.tag,
            "model": self.model,
            "n": self.n,
            "t_arrive": self.t_arrive,
            "t_end": self.t_end,
            "closed_by_client": self.closed_by_client,
            "sent": len(self.sends),
            "t_first": self.sends[0] if self.sends else None,
        }
        if sends:
            d["sends"] = self.sends
        return d


class BenchEndpoint:
    def __init__(self, tps: float = 50.0, tokens: int = 200, first_delay: float = 0.0) -> None:
        self.tps = tps
        self.tokens = tokens
        self.first_delay = first_delay
        self.streams: list[Stream] = []
        self.open = 0
        self.open_log: list[tuple[float, int]] = []  # (time, open streams) at every change

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/chat/completions", self.chat)
        app.router.add_get("/api/v1/models", self.models)
        app.router.add_get("/api/v1/key", self.key)
        app.router.add_post("/bench/config", self.config)
        app.router.add_post("/bench/reset", self.reset)
        app.router.add_get("/bench/stats", self.stats)
        return app

    async def models(self, request: web.Request) -> web.Response:
        ids = sorted({s.model for s in self.streams} | {"google/gemini-2.5-flash-lite"})
        return web.json_response(
            {"data": [{"id": m, "pricing": {"prompt": "0.0000001", "completion": "0.0000004"}} for m in ids]}
        )

    async def key(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {"limit_remaining": None, "usage": 0.0, "limit": None}})

    async def config(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tps = float(body.get("tps", self.tps))
        self.tokens = int(body.get("tokens", self.tokens))
        self.first_delay = float(body.get("first_delay", self.first_delay))
        return web.json_response({"ok": True})

    async def reset(self, request: web.Request) -> web.Response:
        self.streams.clear()
        self.open_log.clear()
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        sends = request.query.get("sends") == "1"
        return web.json_response(
            {"open": self.open, "open_log": self.open_log, "streams": [s.as_dict(sends) for s in self.streams]}
        )

    def _opened(self, delta: int) -> None:
        self.open += delta
        self.open_log.append((time.time(), self.open))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        t_arrive = time.time()
        body = await request.json()
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))
        m = TAG.search(text)
        model = str(body.get("model", "bench"))
        mt = body.get("max_tokens")
        n = min(self.tokens, mt) if isinstance(mt, int) and mt > 0 else self.tokens
        st = Stream(m.group(1) if m else "", model, n)
        st.t_arrive = t_arrive
        self.streams.append(st)
        usage = {"prompt_tokens": 20, "completion_tokens": n, "total_tokens": 20 + n, "cost": (20 + n) * 4e-7}
        pre = (
            f'data: {{"id":"gen-bench","object":"chat.completion.chunk","created":{int(t_arrive)},'
            f'"model":{json.dumps(model)},'
        )
        head = pre + '"choices":[{"index":0,"delta":{"role":"assistant","content":"'
        tail = '"},"finish_reason":null}]}\n\n'
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        self._opened(1)
        try:
            await resp.prepare(request)
            if self.first_delay:
                await asyncio.sleep(self.first_delay)
            gap = 1.0 / self.tps if self.tps > 0 else 0.0
            start = time.monotonic()
            sends = st.sends
            for i in range(n):
                if gap:
                    delay = start + i * gap - time.monotonic()  # a steady rate, no drift
                    if delay > 0:
                        await asyncio.sleep(delay)
                word = f"w{i % 1000:03d} " if i % 12 else f"w{i % 1000:03d}\\n"
                sends.append(time.time())
                await resp.write((head + word + tail).encode())
            await resp.write((pre + '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n').encode())
            await resp.write(
                (
                    "data: "
                    + json.dumps(
                        {
                            "id": "gen-bench",
                            "object": "chat.completion.chunk",
                            "created": int(t_arrive),
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + "\n\ndata: [DONE]\n\n"
                ).encode()
            )
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            st.closed_by_client = True
        finally:
            st.t_end = time.time()
            self._opened(-1)
        return resp


async def serve(port: int, tps: float, tokens: int) -> None:
    ep = BenchEndpoint(tps, tokens)
    runner = web.AppRunner(ep.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=512)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"port {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tps", type=float, default=50.0)
    ap.add_argument("--tokens", type=int, default=200)
    a = ap.parse_args()
    try:
        asyncio.run(serve(a.port, a.tps, a.tokens))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

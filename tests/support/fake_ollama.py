"""A loopback fake of the Ollama HTTP API, good enough for the real ``ollama`` python client.

Usage::

    async with FakeOllama() as fo:              # listens on 127.0.0.1:<free port>
        client = ollama.AsyncClient(host=fo.url)  # fo.url == "http://127.0.0.1:PORT"
        fo.pulled.add("gemma2:2b")                # default: {"gemma2:2b"}
        fo.script('{"reason": "", "tasks": []}')  # next /api/chat answers this text
        fo.script(Answer(status=500, error="boom"), Answer(delay=2.0, content="late"))
        fo.script(Answer(content='{"tasks": [', disconnect=True))   # dies mid-answer
        fo.default = '{"reason": "", "tasks": []}'  # answer when the queue is empty (str, Answer or
                                                  # a callable(body: dict) -> str | Answer)
        fo.loaded = [{"name": "gemma2:2b", "size": 2_000_000_000, "context_length": 2048}]  # what /api/ps
                                                  # reports (context_length only when given, as older Ollama)
        ...
        fo.requests   # [{"path", "json", "t_start", "t_end"}] (time.monotonic(); t_end None while open)
        fo.chats()    # the /api/chat requests only; their "json" is the body as sent (think, keep_alive,
                      # format, options)

Endpoints: ``POST /api/chat`` (streaming NDJSON when the body's ``stream`` is true, which is the client's
default for ``stream=True``; one JSON object otherwise), ``GET /api/tags`` (the ``pulled`` models),
``GET /api/ps`` (``loaded``; "List running models", docs.ollama.com/api/ps: ``size``, ``size_vram``,
``expires_at`` and, in newer Ollama, ``context_length``, the window the model was loaded with),
``GET /api/version``. A chat for a model not in ``pulled`` answers 404
``{"error": "model \"x\" not found, try pulling it first"}`` like real Ollama. The chat's response follows
docs.ollama.com/api/chat: ``message.thinking`` holds a thinking model's thoughts (``Answer.thinking``; a model
or server that ignores ``think: false`` still sends them), ``message.content`` the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    content: str = ""
    status: int = 200  # != 200: answer {"error": error} with this status
    error: str = ""
    delay: float = 0.0  # seconds before anything is sent
    disconnect: bool = False  # send part of the answer, then drop the connection
    done_reason: str = "stop"  # "length": the answer was cut at num_predict (Ollama API doc, chat response)
    prompt_eval_count: int | None = None  # None: the prompt's characters / 4, at most num_ctx (see _prompt_tokens)
    thinking: str = ""  # message.thinking: a thinking model's thoughts, sent whatever the request's think says


Scripted = str | Answer | Callable[[dict[str, Any]], "str | Answer"]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_entry(name: str, size: int) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": _now(),
        "size": size,
        "digest": "0" * 64,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "gemma2",
            "families": ["gemma2"],
            "parameter_size": "2.6B",
            "quantization_level": "Q4_0",
        },
    }


class FakeOllama:
    def __init__(self, pulled: set[str] | None = None) -> None:
        self.pulled: set[str] = set(pulled) if pulled is not None else {"gemma2:2b"}
        self.loaded: list[dict[str, Any]] = []
        self.ps_status = 200  # != 200: /api/ps answers {"error": ...} with this status
        self.queue: list[Scripted] = []
        self.default: Scripted = '{"reason": "", "tasks": []}'
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- scripting -------------------------------------------------------------------------------
    def script(self, *answers: Scripted) -> None:
        self.queue.extend(answers)

    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/api/chat"]

    def _next(self, body: dict[str, Any]) -> Answer:
        item = self.queue.pop(0) if self.queue else self.default
        if callable(item) and not isinstance(item, Answer):
            item = item(body)
        return item if isinstance(item, Answer) else Answer(content=str(item))

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeOllama:
        app = web.Application()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------------
    def _record(self, path: str, body: Any) -> dict[str, Any]:
        rec = {"path": path, "json": body, "t_start": time.monotonic(), "t_end": None}
        self.requests.append(rec)
        return rec

    async def _tags(self, request: web.Request) -> web.Response:
        rec = self._record("/api/tags", None)
        try:
            return web.json_response({"models": [_model_entry(n, 1_600_000_000) for n in sorted(self.pulled)]})
        finally:
            rec["t_end"] = time.monotonic()

    async def _ps(self, request: web.Request) -> web.Response:
        rec = self._record("/api/ps", None)
        try:
            if self.ps_status != 200:
                return web.json_response({"error": "fake /api/ps failure"}, status=self.ps_status)
            models = []
            for m in self.loaded:
                e = _model_entry(m["name"], int(m.get("size", 0)))
                e["size_vram"] = int(m.get("size_vram", 0))
                e["expires_at"] = m.get("expires_at", _now())
                if "context_length" in m:
                    e["context_length"] = int(m["context_length"])
                models.append(e)
            return web.json_response({"models": models})
        finally:
            rec["t_end"] = time.monotonic()

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-fake"})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {}
        rec = self._record("/api/chat", body)
        try:
            return await self._answer_chat(request, body)
        finally:
            rec["t_end"] = time.monotonic()

    async def _answer_chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model", ""))
        if model not in self.pulled:
            return web.json_response({"error": f'model "{model}" not found, try pulling it first'}, status=404)
        ans = self._next(body)
        if ans.delay:
            await asyncio.sleep(ans.delay)
        if ans.status != 200:
            return web.json_response({"error": ans.error or "fake error"}, status=ans.status)
        stream = bool(body.get("stream", True))
        final: dict[str, Any] = {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": ans.done_reason,
            "total_duration": 1_000_000,
            "load_duration": 0,
            "prompt_eval_count": _prompt_tokens(body, ans),
            "prompt_eval_duration": 1000,
            "eval_count": max(1, len(ans.content) // 4),
            "eval_duration": 1000,
        }
        if ans.thinking:
            final["message"]["thinking"] = ans.thinking
        if not stream:
            final["message"]["content"] = ans.content
            data = json.dumps(final).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(request)
            if ans.disconnect:
                await resp.write(data[: len(data) // 2])
                return self._drop(request, resp)
            await resp.write(data)
            await resp.write_eof()
            return resp
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        text = ans.content
        step = max(1, len(text) // 4)
        chunks = [text[i : i + step] for i in range(0, len(text), step)] or [""]
        for i, chunk in enumerate(chunks):
            line = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": chunk},
                "done": False,
            }
            await resp.write((json.dumps(line) + "\n").encode())
            if ans.disconnect and i >= (len(chunks) - 1) // 2:
                return self._drop(request, resp)
        await resp.write((json.dumps(final) + "\n").encode())
        await resp.write_eof()
        return resp

    @staticmethod
    def _drop(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        resp.force_close()
        return resp


def _prompt_tokens(body: dict[str, Any], ans: Answer) -> int:
    """``prompt_eval_count`` as Ollama reports it (API doc, "Generate a chat completion": the number of tokens in
    the prompt): here the messages' characters / 4, and never more than ``num_ctx``, since Ollama cuts an
    over-long prompt from the front to fit the window (docs/faq.md, context window) without an error."""
    if ans.prompt_eval_count is not None:
        return ans.prompt_eval_count
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [] if isinstance(m, dict))
    ctx = int((body.get("options") or {}).get("num_ctx") or 2048)
    return min(ctx, 16 + chars // 4)


def offered_ids(body: dict[str, Any]) -> list[str]:
    """The names a heartbeat request gives its tasks, which a plan answers with (the enum of its ``format``
    schema): short aliases, "1", "2", ... in the order offered; the advisor maps them back to task ids."""
    return list(body["format"]["properties"]["tasks"]["items"]["properties"]["id"]["enum"])


def offered_texts(body: dict[str, Any]) -> list[str]:
    """The texts of the tasks a heartbeat request offered, in the order of ``offered_ids`` (as cut to fit)."""
    out = []
    for line in str(body["messages"][1]["content"]).splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            if isinstance(item, dict) and "id" in item and "text" in item:
                out.append(str(item["text"]))
    return out


def offered_tasks(body: dict[str, Any], ids_by_text: dict[str, str]) -> list[str]:
    """The task ids a heartbeat request offered, found by their texts (``ids_by_text``: full text -> id; a text
    cut to fit the window ends in " [...]")."""
    out = []
    for text in offered_texts(body):
        head = text.removesuffix(" [...]")
        out += [tid for full, tid in ids_by_text.items() if full == text or (head != text and full.startswith(head))]
    return out


def offered_roles(body: dict[str, Any]) -> list[str]:
    return list(body["format"]["properties"]["tasks"]["items"]["properties"]["roles"]["items"]["enum"])


def plan(*entries: tuple[str, list[str] | str, int], reason: str = "looks right") -> str:
    """A compact plan as the model writes it: (task id, roles in step order, count) per task."""
    return json.dumps(
        {
            "reason": reason,
            "tasks": [{"id": t, "roles": [r] if isinstance(r, str) else list(r), "count": n} for t, r, n in entries],
        }
    )

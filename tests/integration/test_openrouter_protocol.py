"""OpenRouter's streaming protocol as its docs describe it, against tests/support/fake_openrouter.py: generation ids,
keepalive comments, reasoning deltas, mid-stream error codes, 403, Retry-After / X-RateLimit-Reset, attribution
headers and the routing options a role passes through (each fake behaviour names its doc page)."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Chunk, Decision, WorkerEvent, decode, job_id, worker_id
from swarm_tui.engine.config.load import Config, Role, load_config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.states import WorkerState
from swarm_tui.engine.swarm import worker_call as llm
from swarm_tui.engine.swarm.call_errors import CallErrorKind
from swarm_tui.engine.swarm.pool import Pool
from swarm_tui.engine.swarm.routing import extras
from swarm_tui.tui.model import OutputRing
from tests.support.env import base_env, make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, Chunks, FakeSpend, approve, build_engine, events, swarm_config


async def _call(fo: FakeOpenRouter, **kw: Any) -> tuple[llm.Progress, list[str], list[str], llm.CallError | None]:
    progress, seen, thoughts = llm.Progress(), list[str](), list[str]()
    err: llm.CallError | None = None
    args: dict[str, Any] = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=50,
        api_base=fo.base,
        api_key="sk-or-v1-test-key-0000",
        timeout=20,
        first_token_timeout=5.0,
        progress=progress,
        on_text=lambda t, at: seen.append(t),
        on_reasoning=lambda t, at: thoughts.append(t),
    )
    args.update(kw)
    try:
        await llm.stream_call(**args)
    except llm.CallError as e:
        err = e
    return progress, seen, thoughts, err


@pytest.fixture(params=["direct", "raw", "wrapper"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """direct: openrouter/ over HTTP (the default); raw and wrapper: through litellm (openrouter.via_litellm)."""
    if request.param != "direct":
        monkeypatch.setattr(llm, "stream_call", functools.partial(llm.stream_call, via_litellm=True))
    if request.param == "wrapper":
        monkeypatch.setattr(llm, "raw_sse_lines", lambda resp: None)
    name: str = request.param
    return name


# ------------------------------------------------------------------------------------------- the stream
async def test_the_generation_id_of_the_chunks_is_kept(path: str) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3)
        p1, _, _, err = await _call(fo)
        p2, _, _, _ = await _call(fo)
    assert err is None
    assert [r["id"] for r in fo.requests] == ["gen-1", "gen-2"]
    assert p1.generation_id == "gen-1" and p2.generation_id == "gen-2"
    p1.reset()
    assert p1.generation_id == "" and p1.reasoning == "" and p1.finish_reason == ""


async def test_keepalive_comments_prove_the_connection_alive() -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, first_token_delay=1.5, keepalive_s=0.2)
        progress, seen, _, err = await _call(fo, first_token_timeout=0.5)
    assert err is None and progress.text == "tok0 tok1 tok2 " and len(fo.requests) == 1


async def test_no_byte_at_all_is_a_stall_even_before_content() -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, first_token_delay=3)  # only the first comment, then silence
        _, _, _, err = await _call(fo, first_token_timeout=0.5)
    assert err is not None and err.kind == "retryable" and "no first token within 0.5s" in err.reason


async def test_the_first_content_limit_ends_a_stream_of_keepalives_only() -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, first_token_delay=5, keepalive_s=0.1)
        t0 = time.monotonic()
        _, _, _, err = await _call(fo, first_token_timeout=0.5, first_content_timeout=1.0)
        took = time.monotonic() - t0
        await until(lambda: fo.requests[0]["closed_by_client"], 3, "the stream closed")
    assert err is not None and err.kind == "fatal"
    assert err.reason == "no content within 1s (only keepalives came)" and took < 2.5


async def test_reasoning_is_progress_kept_apart_from_the_answer(path: str) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=2, reasoning=8, tps=10)  # ~0.8 s of reasoning, longer than the stall limit
        progress, seen, thoughts, err = await _call(fo, first_token_timeout=0.5)
    assert err is None
    assert "".join(thoughts) == progress.reasoning == "".join(f"think{i} " for i in range(8))
    assert seen == ["tok0 ", "tok1 "] and progress.text == "tok0 tok1 " and progress.tokens == 2


async def test_reasoning_does_not_stop_the_first_content_limit(path: str) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=2, reasoning=40, tps=10)
        _, _, thoughts, err = await _call(fo, first_token_timeout=0.5, first_content_timeout=1.0)
    assert err is not None and err.kind == "fatal"
    assert err.reason == "no content within 1s (the model was still reasoning)" and thoughts


async def test_length_with_no_content_is_max_tokens_spent_on_reasoning(path: str) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=0, reasoning=3, finish="length", cost=0.0002)
        progress, _, _, err = await _call(fo)
    assert err is not None and err.kind == "fatal" and "max_tokens spent on reasoning" in err.reason
    assert progress.reasoning == "think0 think1 think2 " and progress.cost == pytest.approx(0.0002)


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (429, "Rate limit exceeded", "rate_limited"),
        (503, "Service unavailable", "retryable"),
        (529, "Provider is overloaded", "retryable"),
        ("server_error", "Provider disconnected unexpectedly", "retryable"),
        (400, "Provider returned error", "stream_error"),
    ],
)
async def test_mid_stream_errors_by_code_keep_the_partial_output(
    code: int | str, message: str, kind: CallErrorKind
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, error_after=2, error_code=code, error_message=message)
        progress, _, _, err = await _call(fo)
    assert err is not None and err.kind == kind, err
    assert message in err.reason and progress.text == "tok0 tok1 "


async def test_mid_stream_402_takes_the_credit_path() -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, error_after=2, error_code=402, error_message="Insufficient credits")
        progress, _, _, err = await _call(fo)
    assert err is not None and err.kind in ("out_of_credit", "cannot_afford") and err.status == 402
    assert progress.text == "tok0 tok1 "


# ------------------------------------------------------------------------------------------- HTTP errors
async def test_403_is_a_refusal_by_openrouter(path: str) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(status=403)
        _, _, _, err = await _call(fo)
    assert err is not None and err.kind == "fatal" and err.status == 403
    assert err.reason.startswith("refused by OpenRouter (moderation, guardrail or region)")


async def test_429_honours_x_ratelimit_reset_and_503_retry_after(path: str) -> None:
    async with FakeOpenRouter() as fo:
        reset_ms = int((time.time() + 3.0) * 1000)
        fo.script(
            Answer(status=429, headers={"X-RateLimit-Reset": str(reset_ms), "X-RateLimit-Limit": "20"}),
            Answer(status=503, retry_after=2),
        )
        _, _, _, e429 = await _call(fo)
        _, _, _, e503 = await _call(fo)
    assert e429 is not None and e429.kind == "rate_limited" and 2.0 <= (e429.retry_after or 0) <= 3.1
    assert e503 is not None and e503.kind == "retryable" and e503.retry_after == 2


def test_header_wait_reads_retry_after_then_the_reset_time() -> None:
    now = 1_800_000_000.0
    assert llm.header_wait({"Retry-After": "4", "X-RateLimit-Reset": str(int(now * 1000) + 9000)}, now) == 4
    assert llm.header_wait({"x-ratelimit-reset": str(int(now * 1000) + 9000)}, now) == pytest.approx(9)
    assert llm.header_wait({"X-RateLimit-Reset": str(int(now) + 5)}, now) == pytest.approx(5)
    assert llm.header_wait({"X-RateLimit-Reset": str(int(now * 1000) - 5000)}, now) == 0
    assert llm.header_wait({"X-RateLimit-Reset": "soon"}, now) is None and llm.header_wait({}, now) is None


# ------------------------------------------------------------------------------------------- roles
def test_role_options_become_the_request_body() -> None:
    role = Role(
        "r",
        MODEL,
        100,
        reasoning={"effort": "low", "exclude": True},
        provider={"sort": "price", "max_price": {"prompt": 0.05}},
        fallback_models=("deepseek/deepseek-chat-v3.1",),
    )
    body = extras(role, MODEL, (0.1, 0.4))
    assert body == {
        "reasoning": {"effort": "low", "exclude": True},
        "provider": {"sort": "price", "max_price": {"prompt": 0.05, "completion": 0.4}},
        "models": ["google/gemini-2.5-flash-lite", "deepseek/deepseek-chat-v3.1"],
    }
    assert extras(Role("r", MODEL, 100), MODEL, None) == {}
    assert extras(None, MODEL, (1e-7 * 1e6, 4e-7 * 1e6))["provider"]["max_price"] == {"prompt": 0.1, "completion": 0.4}


def _load(tmp_path: Path, body: str) -> Config:
    p = tmp_path / "c.toml"
    p.write_text(body)
    return load_config(p, base_env(tmp_path))


def test_role_options_load_from_the_config(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """
[roles.think]
model = "openrouter/deepseek/deepseek-r1"
max_tokens = 4000
first_token_timeout_s = 600
reasoning = { max_tokens = 2000, exclude = false }
provider = { order = ["DeepInfra"], allow_fallbacks = false, data_collection = "deny" }
fallback_models = ["openrouter/qwen/qwen3-coder", "deepseek/deepseek-chat-v3.1"]
""",
    )
    r = cfg.roles["think"]
    assert r.first_token_timeout_s == 600 and r.reasoning == {"max_tokens": 2000, "exclude": False}
    assert r.provider == {"order": ["DeepInfra"], "allow_fallbacks": False, "data_collection": "deny"}
    assert r.fallback_models == ("qwen/qwen3-coder", "deepseek/deepseek-chat-v3.1")
    assert cfg.swarm.first_content_timeout_s == 150 and cfg.openrouter.title == "swarm-tui"
    # a role's limit never outlives the whole call (the spend guard's stale-reservation limit is built on it)
    from types import SimpleNamespace

    from swarm_tui.engine.bus.wire import ChatMessage, Job
    from swarm_tui.engine.swarm.context import PoolSettings
    from swarm_tui.engine.swarm.endpoint import OpenRouterEndpoint
    from swarm_tui.engine.swarm.job import JobRun

    job = Job(
        id="j-1",
        decision_id="d-1",
        task_id="t-1",
        worker_id="w-1",
        role="think",
        model=r.model,
        max_tokens=100,
        messages=[ChatMessage(role="user", content="hi")],
        created_at=0.0,
    )
    ctx = SimpleNamespace(settings=PoolSettings.of(cfg), spend=None, endpoint=OpenRouterEndpoint(cfg.openrouter))
    opts = JobRun(ctx).caller.call_options(job, r.model)
    assert opts["first_content_timeout"] == cfg.swarm.request_timeout_s == 180


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("first_token_timeout_s = 0", "roles.r.first_token_timeout_s"),
        ('reasoning = { effort = "huge" }', "roles.r.reasoning.effort"),
        ('reasoning = { effort = "low", max_tokens = 10 }', "roles.r.reasoning"),
        ("reasoning = { budget = 3 }", "roles.r.reasoning.budget"),
        ('provider = { sort = "cheapest" }', "roles.r.provider.sort"),
        ('provider = { order = "OpenAI" }', "roles.r.provider.order"),
        ("provider = { max_price = { prompt = -1 } }", "roles.r.provider.max_price"),
        ("provider = { fastest = true }", "roles.r.provider.fastest"),
        ('fallback_models = "qwen/qwen3-coder"', "roles.r.fallback_models"),
        ('fallback_models = ["openrouter/a/b:nitro"]', "roles.r.fallback_models"),
        ("max_token = 10", "unknown key roles.r.max_token"),  # a typo is an error, not a silent default
    ],
)
def test_bad_role_options_are_one_line_naming_the_key(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, f'[roles.r]\nmodel = "{MODEL}"\nmax_tokens = 10\n{extra}\n')
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


def test_local_roles_take_no_openrouter_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="roles.l.provider"):
        _load(tmp_path, '[roles.l]\nmodel = "ollama_chat/qwen2.5:0.5b"\nprovider = { sort = "price" }\n')


# ------------------------------------------------------------------------------------------- through the pool
async def _run(
    tmp_path: Path,
    nats_server: EmbeddedServer,
    fo: FakeOpenRouter,
    n: int = 1,
    *,
    spend: Any = None,
    timeout: float = 15.0,
    roles: list[Role] | None = None,
    chunks: bool = False,
    **values: Any,
) -> tuple[Engine, Pool, Decision, list[tuple[WorkerState, str]], Chunks | None]:
    cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, **values)
    for r in roles or ():
        cfg.roles[r.name] = r
    bus = await Bus(cfg).connect()
    engine, pool = build_engine(cfg, bus, spend=spend)
    got = await Chunks().start(bus) if chunks else None
    await engine.start()
    try:
        d = await approve(bus, n, roles=tuple(r.name for r in roles or ()) or ("research",))
        await until(lambda: len(engine.state.results) == n, timeout, f"{n} results")
        await until(lambda: got is None or got.by_worker.get(worker_id(d.id, 0)), 3, "chunks")
    finally:
        await engine.stop()
    evs = await events(cfg)
    states = [(e.state, e.reason) for e in evs if isinstance(e, WorkerEvent)]
    return engine, pool, d, states, got


async def test_a_429_mid_stream_backs_off_and_lowers_the_model_limit(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=10, error_after=2, error_code=429, error_message="Rate limit exceeded"))
        fo.default = Answer(tokens=3)
        engine, pool, d, states, _ = await _run(tmp_path, nats_server, fo)
    r = engine.state.results[job_id(d.id, 0)]
    assert r.state == "done" and r.text == "tok0 tok1 tok2 " and len(fo.requests) == 2
    assert any(s == "retrying" and "rate limited mid-stream (429)" in why for s, why in states), states
    assert pool.limits[MODEL].limit == 1


async def test_a_503_with_retry_after_waits_that_long(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.script(Answer(status=503, retry_after=1.2))
        fo.default = Answer(tokens=3)
        engine, pool, d, states, _ = await _run(tmp_path, nats_server, fo)
        gap = fo.requests[1]["t_start"] - fo.requests[0]["t_end"]
    assert engine.state.results[job_id(d.id, 0)].state == "done"
    assert gap >= 1.1  # the first retry's own backoff is 0.5 s


async def test_a_silent_reasoner_with_keepalives_completes_in_one_call(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, reasoning=3, first_token_delay=2.0, keepalive_s=0.2)
        engine, pool, d, states, got = await _run(
            tmp_path, nats_server, fo, chunks=True, swarm__first_token_timeout_s=0.6
        )
    r = engine.state.results[job_id(d.id, 0)]
    assert r.state == "done" and r.text == "tok0 tok1 tok2 " and len(fo.requests) == 1
    assert got is not None
    sent = sorted(got.by_worker[worker_id(d.id, 0)], key=lambda c: c.seq)
    assert "".join(c.reasoning for c in sent) == "think0 think1 think2 "
    assert "".join(c.text for c in sent) == "tok0 tok1 tok2 "


async def test_the_role_first_content_limit_fails_the_job_without_a_retry(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    role = Role("slow", MODEL, 100, first_token_timeout_s=1.0)
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, first_token_delay=6, keepalive_s=0.2)
        engine, pool, d, states, _ = await _run(
            tmp_path, nats_server, fo, roles=[role], swarm__first_token_timeout_s=0.5
        )
    r = engine.state.results[job_id(d.id, 0)]
    assert r.state == "failed" and r.reason == "no content within 1s (only keepalives came)"
    assert len(fo.requests) == 1


async def test_attribution_headers_and_role_options_reach_openrouter(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    role = Role(
        "research",
        MODEL,
        100,
        reasoning={"effort": "low"},
        provider={"sort": "price"},
        fallback_models=("deepseek/deepseek-chat-v3.1",),
    )
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=2)
        await _run(tmp_path, nats_server, fo, roles=[role], spend=FakeSpend(), openrouter__title="my swarm")
    rec = fo.requests[0]
    headers = {k.lower(): v for k, v in rec["headers"].items()}
    assert headers["http-referer"] == "https://github.com/swarm-tui/swarm-tui"  # not litellm's
    assert headers["x-title"] == "my swarm" and "litellm" not in headers["x-title"].lower()
    body = rec["body"]
    assert body["reasoning"] == {"effort": "low"}
    # FakeSpend prices every token at 1e-6 USD: 1 USD per million, the cap OpenRouter gets
    assert body["provider"] == {"sort": "price", "max_price": {"prompt": 1.0, "completion": 1.0}}
    assert body["models"] == ["google/gemini-2.5-flash-lite", "deepseek/deepseek-chat-v3.1"]


# ------------------------------------------------------------------------------------------- the screen
def test_reasoning_travels_in_chunks_and_shows_apart_in_the_ring() -> None:
    old = b'{"type": "chunk", "v": 1, "worker_id": "w-1", "seq": 0, "text": "hi", "tokens": 1}'
    assert decode(old, expect="chunk").reasoning == ""  # a chunk from before the field still decodes
    c = Chunk(worker_id="w-1", seq=1, text="", reasoning="let me think\nabout it")
    assert decode(c.to_bytes(), expect="chunk").reasoning == "let me think\nabout it"
    ring = OutputRing()
    assert ring.append(c.text, c.tokens, c.seq, c.reasoning)
    assert ring.size == 0 and ring.reasoning_lines(40, 3) == ["let me think", "about it"]
    ring.append("the answer", 1, 2)
    assert ring.text() == "the answer" and "think" not in ring.text()

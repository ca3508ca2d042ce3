"""llm.stream_call's three paths against the wire-level fake OpenRouter must give the same text, usage, cost
and errors: ``direct`` (openrouter/ over HTTP without litellm, the default), ``raw`` (through litellm, reading
its SSE lines: ``openrouter.via_litellm``, relies on litellm 1.106.2 internals, see ``llm.raw_sse_lines``) and
``wrapper`` (litellm's stream wrapper: ollama_chat/ and the fallback)."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from swarm_tui.engine.swarm import worker_call as llm
from tests.support.fake_openrouter import Answer, FakeOpenRouter

MODEL = "openrouter/google/gemini-2.5-flash-lite"


async def _call(fo: FakeOpenRouter, *, gap: float = 5.0) -> tuple[llm.Progress, list[str], llm.CallError | None]:
    progress, seen = llm.Progress(), list[str]()
    err: llm.CallError | None = None
    try:
        await llm.stream_call(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=50,
            api_base=fo.base,
            api_key="sk-or-v1-test-key-0000",
            timeout=20,
            first_token_timeout=gap,
            progress=progress,
            on_text=lambda t, at: seen.append(t),
        )
    except llm.CallError as e:
        err = e
    return progress, seen, err


@pytest.fixture(params=["direct", "raw", "wrapper"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[bool]]]:
    used: list[bool] = []
    real = llm.raw_sse_lines
    if request.param != "direct":
        monkeypatch.setattr(llm, "stream_call", functools.partial(llm.stream_call, via_litellm=True))

    def spy(resp: Any) -> Any:
        lines = real(resp) if request.param == "raw" else None
        used.append(lines is not None)
        return lines

    monkeypatch.setattr(llm, "raw_sse_lines", spy)
    yield request.param, used


async def test_text_usage_and_cost_are_the_same_on_both_paths(path: tuple[str, list[bool]]) -> None:
    name, used = path
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=6, cost=0.00042)
        progress, seen, err = await _call(fo)
    assert err is None
    # each path is really taken: none of litellm's for direct, its SSE lines for raw (litellm layout unchanged)
    assert used == {"direct": [], "raw": [True], "wrapper": [False]}[name]
    assert seen == [f"tok{i} " for i in range(6)] and progress.text == "tok0 tok1 tok2 tok3 tok4 tok5 "
    assert progress.tokens == 6 and progress.completion_tokens == 6 and progress.prompt_tokens == 12
    assert progress.usage_seen and progress.cost == pytest.approx(0.00042)


async def test_error_chunk_mid_stream_is_classified_by_its_code_keeping_the_partial_text(
    path: tuple[str, list[bool]],
) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, error_after=3)  # error.code 502: the retryable path
        progress, _, err = await _call(fo)
    assert err is not None and err.kind == "retryable"
    assert "error mid-stream" in err.reason and "upstream died" in err.reason
    assert progress.text == "tok0 tok1 tok2 "


async def test_dropped_connection_is_retryable(path: tuple[str, list[bool]]) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, drop_after=4)
        _, _, err = await _call(fo)
    assert err is not None and err.kind == "retryable" and "connection lost" in err.reason


async def test_stall_closes_the_stream_in_time(path: tuple[str, list[bool]]) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=10, stall_after=2, stall_s=5)
        t0 = time.monotonic()
        progress, _, err = await _call(fo, gap=0.5)
        assert err is not None and err.kind == "retryable" and "stalled within 0.5s" in err.reason
        assert progress.tokens == 2 and time.monotonic() - t0 < 3
        for _ in range(100):
            if fo.requests[0].get("closed_by_client"):
                break
            await asyncio.sleep(0.02)
        assert fo.requests[0]["closed_by_client"]


async def test_cancel_closes_the_stream_at_once(path: tuple[str, list[bool]]) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=200, tps=20)
        task = asyncio.create_task(_call(fo))
        for _ in range(200):
            if fo.requests and fo.requests[0].get("tokens_sent", 0) >= 2:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = time.monotonic()
        for _ in range(200):
            if fo.requests[0].get("closed_by_client"):
                break
            await asyncio.sleep(0.01)
        assert fo.requests[0]["closed_by_client"] and time.monotonic() - t0 < 0.5


async def test_a_huge_integer_token_count_beside_the_finish_is_unknown_not_a_lost_connection() -> None:
    """A usage whose token count is a 401-digit integer, in the chunk that also finishes the answer (some providers
    send them together): before, ``count`` raised OverflowError before the finish_reason was read, the read
    ended as "connection lost mid-stream" (retryable), and the billed call was bought again. Now the count is
    unknown (0) and the answer is complete."""
    from swarm_tui.engine.swarm.progress import Progress, Sink
    from swarm_tui.engine.swarm.sse import Limits, read_sse

    chunks = [
        {"id": "gen-1", "choices": [{"delta": {"content": "hello"}}]},
        {
            "id": "gen-1",
            "choices": [{"delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10**400, "completion_tokens": 1, "cost": 0.001},
        },
    ]

    async def lines() -> AsyncIterator[str]:
        for c in chunks:
            yield "data: " + json.dumps(c)
        yield "data: [DONE]"

    progress = Progress()
    await read_sse(lines(), Limits(stall=5, content=None, started=time.time()), progress, Sink(lambda t, at: None), [])
    assert progress.finish_reason == "stop" and progress.text == "hello"
    assert progress.prompt_tokens == 0 and progress.completion_tokens == 1 and progress.cost == 0.001

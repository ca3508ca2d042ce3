"""A provider that lies or breaks: the stream reader against tests/support/fake_openrouter.py's hostile answers.

Each case runs the real pool with the real spend guard and reconciler against the loopback fake, and ends with
the promise it holds: recorded = billed <= ceiling (the SpendEntry sum and the ledger's spent equal what the fake
billed, which is at most the ceiling; nothing left reserved). Run with -s for the figures.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import MAX_TEXT, Result, WorkerEvent, job_id, worker_id
from swarm_tui.engine.swarm.run import Run
from swarm_tui.engine.swarm.sse import MAX_LINE, LineTooLong, split_lines
from tests.integration.test_reconcile import Swarm as ReconcileSwarm
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import records as attempt_records
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, Chunks, approve, events, swarm_config

pytestmark = pytest.mark.fault

BARE = MODEL.removeprefix("openrouter/")  # google/...: its provider bills a cancelled stream in full
P_PROMPT, P_COMPLETION = 1e-6, 4e-4  # USD a token, as the fake lists them here
MAX_TOKENS = 100
TOKENS = 80
CEILING = 0.25


def full_cost(tokens: int = TOKENS, prompt: int = 12) -> float:
    return round(tokens * P_COMPLETION + prompt * P_PROMPT, 9)


class Swarm(ReconcileSwarm):
    """The reconcile tests' engine (the real spend guard with the fake's prices, the controller and the pool),
    with what these cases read besides."""

    bus: Any
    engine: Any
    pool: Any
    guard: Any

    async def records(self) -> list[dict[str, Any]]:
        """The reconciler's attempt records on the bus (a timeout under load raises: it is not "no records")."""
        return list((await attempt_records(self.bus)).values())

    async def ledger(self) -> dict[str, Any]:
        kv = await self.bus.kv(S.KV_BUDGET)
        led: dict[str, Any] = json.loads((await kv.get(self.guard.day_key())).value or b"")
        return led

    async def result(self, jid: str) -> Result:
        await until(lambda: jid in self.engine.state.results, 40, f"the result of {jid}")
        return self.engine.state.results[jid]  # type: ignore[no-any-return]

    async def settled(  # type: ignore[override] # several fakes at once here; no caller uses the base's form
        self, *fakes: FakeOpenRouter, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Until nothing is left to reconcile and the log holds what the fakes billed; the ledger then."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        billed = round(sum(f.billed for f in fakes), 9)
        while await self.records() or any(f.open for f in fakes) or not math.isclose(self.recorded(), billed):
            if loop.time() > end:
                raise AssertionError(f"not reconciled: recorded {self.recorded()} billed {billed}")
            await asyncio.sleep(0.1)
            billed = round(sum(f.billed for f in fakes), 9)
        return await self.ledger_once_settled(billed, end)

    async def holds(self, what: str, *fakes: FakeOpenRouter) -> None:
        """The promise: recorded = billed <= ceiling, nothing left reserved, no estimate, every figure finite."""
        led = await self.settled(*fakes)
        billed = round(sum(f.billed for f in fakes), 9)
        entries = list(self.engine.state.spend_entries.values())
        print(
            f"\n[{what}] billed ${billed:.6f}; recorded ${self.recorded():.6f} in {len(entries)} SpendEntry, "
            f"ledger spent ${led['spent']:.6f}; ceiling ${CEILING:.2f}; {sum(len(f.requests) for f in fakes)} "
            f"calls, {sum(f.generation_asks for f in fakes)} generation look-ups"
        )
        assert self.recorded() == pytest.approx(billed, abs=1e-9)
        assert led["spent"] == pytest.approx(billed, abs=1e-9) and led["reserved"] == {}
        assert billed <= CEILING
        assert all(math.isfinite(s.cost_usd) and not s.estimated for s in entries)
        assert all(math.isfinite(r.cost_usd) for r in self.engine.state.results.values())


def fake(fo: FakeOpenRouter, **answer: Any) -> None:
    fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
    fo.default = Answer(**{"tokens": TOKENS, "cost": full_cost(), **answer})


async def swarm(tmp_path: Any, nats_server: Any, fo: FakeOpenRouter, **values: Any) -> Swarm:
    values.setdefault("budget__daily_usd", CEILING)
    sw = Swarm(swarm_config(make_config, tmp_path, nats_server.url, fo.base, **values))
    await sw.start()
    return sw


async def one(sw: Swarm) -> Result:
    d = await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
    return await sw.result(job_id(d.id, 0))


async def reasons(sw: Swarm, state: str) -> list[str]:
    return [e.reason for e in await events(sw.cfg) if isinstance(e, WorkerEvent) and e.state == state]


# ------------------------------------------------------------------------------------------- 1. the end
async def test_a_stream_cut_without_finish_or_done_is_retried_and_fails_keeping_its_partial_output(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: a body that ended with no finish_reason and no [DONE] was stored as `done` with 10 of 80
    tokens. Now: "stream ended early", retried, the last partial output kept in the failed result, each
    attempt reconciled with GET /generation (the fake bills a cut stream for the tokens sent)."""
    async with FakeOpenRouter() as fo:
        fake(fo, cut_after=10)
        sw = await swarm(tmp_path, nats_server, fo, swarm__max_retries=1)
        try:
            r = await one(sw)
            await sw.holds("2 cut streams", fo)
            retried = await reasons(sw, "retrying")
        finally:
            await sw.stop()
    assert len(fo.requests) == 2 and all(q.get("cut") for q in fo.requests)
    assert r.state == "failed" and "stream ended early" in r.reason and "after 1 retries" in r.reason
    assert r.text == "".join(f"tok{i} " for i in range(10))
    assert any("stream ended early" in why for why in retried)
    assert fo.billed == pytest.approx(2 * full_cost() * 10 / TOKENS) and fo.generation_asks >= 2


# ------------------------------------------------------------------------------------------- 2. the type
async def test_a_200_with_a_json_error_body_is_that_error_and_costs_what_was_billed(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: a 200 with {"error": {"code": 429}} (application/json) was a `done` answer with no text,
    charged its worst case ($0.040580 for $0 billed). Now: read by its code (429: the rate-limit path; 503:
    retryable), settled at 0 when no generation came with it, reconciled when one did; a 200 of another
    Content-Type is an error naming it."""
    async with FakeOpenRouter() as fo:
        fake(fo)
        fo.script(Answer(json_error=429), Answer(json_error=503, gen_header=True, cost=0.0005))
        sw = await swarm(tmp_path, nats_server, fo, swarm__max_retries=3)
        try:
            r = await one(sw)
            fo.script(Answer(content_type="text/html"))
            html = await one(sw)
            await sw.holds("200 + JSON 429, 200 + JSON 503 with a generation, then an answer; 200 text/html", fo)
            retried = await reasons(sw, "retrying")
        finally:
            await sw.stop()
    assert [q["status"] for q in fo.requests] == [200, 200, 200, 200]
    assert r.state == "done" and r.text == "".join(f"tok{i} " for i in range(TOKENS))
    assert any(w.startswith("rate limited (429): Rate limit exceeded (an error body under HTTP 200)") for w in retried)
    assert any(w.startswith("HTTP 503: Service unavailable (an error body under HTTP 200)") for w in retried)
    assert fo.billed == pytest.approx(0.0005 + full_cost())  # the JSON 429 billed nothing and is recorded as 0
    assert html.state == "failed" and "Content-Type text/html where text/event-stream was asked for" in html.reason
    assert len(fo.requests) == 4  # a wrong Content-Type is not retried


# ------------------------------------------------------------------------------------------- 3. lines
async def test_lines_up_to_8_mib_are_read_and_a_longer_one_is_a_stream_error_not_retried(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: an SSE line over 512 KiB (aiohttp's limit at twice the read buffer) was "connection lost" and
    the billed call was retried. Now: a 1 MiB encrypted reasoning detail is read; a 9 MiB one fails the job
    once, and that attempt (billed in full: the client left a Google stream) is reconciled."""
    async with FakeOpenRouter() as fo:
        fake(fo)
        fo.script(Answer(tokens=TOKENS, cost=full_cost(), blob=2**20))
        sw = await swarm(tmp_path, nats_server, fo, swarm__max_retries=2)
        try:
            ok = await one(sw)
            calls = len(fo.requests)
            fo.script(Answer(tokens=TOKENS, cost=full_cost(), blob=9 * 2**20))
            long = await one(sw)
            await sw.holds("a 1 MiB line, then a 9 MiB line", fo)
        finally:
            await sw.stop()
    assert ok.state == "done" and calls == 1 and ok.text == "".join(f"tok{i} " for i in range(TOKENS))
    assert long.state == "failed" and "over 8 MiB" in long.reason
    assert len(fo.requests) == 2  # one call each: the long line was not bought again
    assert fo.billed == pytest.approx(2 * full_cost())


# ------------------------------------------------------------------------------------------- 4. numbers
@pytest.mark.parametrize(
    "raw",
    [
        {"cost": "1e400"},
        {"cost": "Infinity"},
        {"cost": "NaN", "prompt_tokens": "1e400"},
        {"cost": "NaN", "completion_tokens": "1" + "0" * 400},  # an integer: no float hook sees it
    ],
    ids=["cost-1e400", "cost-Infinity", "tokens-1e400", "tokens-401-digits"],
)
async def test_non_finite_usage_numbers_are_refused_and_the_cost_asked_of_openrouter(
    tmp_path: Path, nats_server: EmbeddedServer, raw: dict[str, str]
) -> None:
    """Before: `usage.cost` 1e400 became inf in the SpendEntry and the Result (the ledger's spent with it); a
    token count of 1e400 raised OverflowError, read as a dropped connection, and the billed call was retried.
    Now: a non-finite number is unknown; the cost comes from GET /generation."""
    async with FakeOpenRouter() as fo:
        fake(fo, usage_raw=raw)
        sw = await swarm(tmp_path, nats_server, fo)
        try:
            r = await one(sw)
            await sw.holds(f"usage {raw}", fo)
        finally:
            await sw.stop()
    assert r.state == "done" and len(fo.requests) == 1 and fo.generation_asks >= 1
    assert r.cost_usd == 0 and not r.cost_estimated  # unknown at the result; its own SpendEntry has the real cost
    assert fo.billed == pytest.approx(full_cost())


# ------------------------------------------------------------------------------------------- 5. redirects
async def test_a_redirect_is_refused_naming_its_location_and_nothing_reaches_the_other_host(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: a 307 to another server was followed: the prompt re-POSTed there, its `cost: 0` believed. Now: a
    3xx is a fatal error naming the location; the other server sees no request."""
    async with FakeOpenRouter() as fo, FakeOpenRouter() as other:
        fake(fo)
        fake(other, cost=0.0)
        where = f"{other.base}/chat/completions"
        fo.script(Answer(status=307, headers={"Location": where}))
        sw = await swarm(tmp_path, nats_server, fo)
        try:
            r = await one(sw)
            await sw.holds("307 to another host", fo, other)
        finally:
            await sw.stop()
    assert other.requests == [] and len(fo.requests) == 1
    assert r.state == "failed" and "HTTP 307" in r.reason and where in r.reason
    assert fo.billed == 0 and sw.recorded() == 0


# ------------------------------------------------------------------------------------------- 6. generation id
async def test_a_kill_during_reasoning_is_reconciled_at_its_real_cost(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before: the generation id reached the attempt's record only with the first content token (or the
    pool's next chunk flush, here 2 s apart), so an engine stopped while the model reasoned left a record with
    no id, charged its worst case ($0.040080 for $0.032012 billed). Now: it is noted at the X-Generation-Id
    header; the next engine asks GET /generation."""
    async with FakeOpenRouter() as fo:
        fake(fo, reasoning=100, tps=10)
        cfg_values = {"swarm__chunk_flush_ms": 2000, "budget__daily_usd": CEILING}
        sw = await swarm(tmp_path, nats_server, fo, **cfg_values)
        d = await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
        await fo.wait_open(1, 15)
        await until(lambda: fo.requests[0].get("reasoning_sent", 0) >= 5, 10, "half a second of reasoning")
        assert fo.requests[0]["tokens_sent"] == 0  # no content yet
        gens = [r.get("gen") for r in await sw.records()]
        await sw.stop()  # mid-reasoning: the stream is cut, the job handed back
        await until(lambda: fo.open == 0, 5, "the fake saw the stream closed")
        assert gens == ["gen-1"]  # the record knew its generation when the engine went
        sw2 = await swarm(tmp_path, nats_server, fo, **cfg_values)
        try:
            r = await sw2.result(job_id(d.id, 0))
            await sw2.holds("engine stopped mid-reasoning, restarted", fo)
        finally:
            await sw2.stop()
    assert r.state == "done" and len(fo.requests) == 2
    assert fo.generations["gen-1"]["cancelled"] and fo.generations["gen-1"]["total_cost"] == full_cost()
    assert sw2.pool.reconciler.counts["reconciled"] >= 1 and not sw2.pool.reconciler.counts["worst_no_id"]


# ------------------------------------------------------------------------------------------- 7. bounds
async def test_a_flood_of_huge_tokens_is_held_within_max_text(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """Before: every streamed character was held (Progress.parts): 40 tokens of 20,000 characters held
    800,000 characters of answer and as many of reasoning. Now: at most wire.MAX_TEXT of each, the rest
    counted."""
    async with FakeOpenRouter() as fo:
        fake(fo, tokens=40, reasoning=40, pad=20_000, cost=full_cost(80))
        sw = await swarm(tmp_path, nats_server, fo)
        got = await Chunks().start(sw.bus)
        try:
            d = await approve(sw.bus, 1, max_tokens=MAX_TOKENS)
            run: Run = await until(lambda: next(iter(sw.pool.runs.values()), None), 15, "the run")
            r = await sw.result(job_id(d.id, 0))
            await sw.holds("40 + 40 tokens of 20,000 characters", fo)
            await until(lambda: sum(c.tokens for c in got.by_worker[worker_id(d.id, 0)]) == 40, 5, "chunks")
        finally:
            await sw.stop()
    sent = sum(len(f"tok{i} ") + 20_000 for i in range(40))
    p = run.progress
    print(f"answer: {sent} characters streamed, {len(p.text)} held; reasoning {len(p.reasoning)} held")
    assert len(p.text) == MAX_TEXT and len(p.reasoning) <= MAX_TEXT
    assert p.held == MAX_TEXT and p.cut == sent - MAX_TEXT and p.reasoning_cut > 0
    assert p.tokens == 40 and r.state == "done" and r.text == p.text
    assert "output cut at 200000 characters" in r.reason  # the cut is said where the answer is read
    assert len(got.text(worker_id(d.id, 0))) == MAX_TEXT  # the screen got what is kept, the token count all


# ------------------------------------------------------------------------------------------- the fake itself
async def test_the_fakes_stream_chunks_are_openrouter_shaped() -> None:
    """The chunks the hostile answers are made of validate against OpenRouter's own SDK models."""
    components = pytest.importorskip("openrouter.components")
    async with FakeOpenRouter() as fo:
        fo.script(Answer(tokens=3, reasoning=2, blob=64), Answer(tokens=5, cut_after=2))
        async with aiohttp.ClientSession() as http:
            bodies = []
            for _ in range(2):
                async with http.post(f"{fo.base}/chat/completions", json={"model": BARE, "stream": True}) as resp:
                    assert resp.content_type == "text/event-stream"
                    bodies.append((await resp.read()).decode())
    full, cut = ([ln[6:] for ln in b.splitlines() if ln.startswith("data: ")] for b in bodies)
    assert full[-1] == "[DONE]" and "[DONE]" not in cut and len(cut) == 2
    for data in full[:-1] + cut:
        components.ChatStreamChunk.model_validate(json.loads(data))
    assert json.loads(full[0])["choices"][0]["delta"]["reasoning_details"][0]["type"] == "reasoning.encrypted"


async def test_lines_are_split_across_reads_and_bounded() -> None:
    """sse.split_lines joins lines cut anywhere by the transport (inside a UTF-8 character, between \\r and \\n)
    and refuses one longer than its limit, whether it came in one read or many."""

    async def blocks(*parts: bytes) -> Any:
        for p in parts:
            yield p

    async def lines(*parts: bytes, limit: int = MAX_LINE) -> list[str]:
        return [ln async for ln in split_lines(blocks(*parts), limit)]

    word = "héllo 🐝".encode()
    assert await lines(b"data: " + word[:2], word[2:9], word[9:] + b"\r", b"\n: ping\n\ndata: [DONE]") == [
        "data: héllo 🐝",
        ": ping",
        "",
        "data: [DONE]",
    ]
    assert await lines(b"x" * 10 + b"\n", limit=10) == ["x" * 10]
    for parts in ((b"x" * 11 + b"\n",), (b"x" * 6, b"x" * 5), (b"ab\n" + b"x" * 6, b"x" * 5 + b"\n")):
        with pytest.raises(LineTooLong):
            await lines(*parts, limit=10)

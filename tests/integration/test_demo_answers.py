"""The demo's synthetic answers: Markdown like a real answer (a heading, a list, a code block), shaped and sized
by the role, the same for the same job, streamed a token at a time at ``demo.tokens_per_s``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import job_id, worker_id
from swarm_tui.engine.swarm.demo_answer import demo_answer
from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint
from tests.support.env import make_config
from tests.support.polling import until
from tests.support.swarm_kit import Chunks, approve

TASK = "Write a short explanation of how asyncio event loops schedule coroutines"
ROLES = ("research", "analysis", "code")


def _shape(text: str) -> None:
    lines = text.splitlines()
    assert lines[0].startswith("## "), lines[0]  # a heading
    assert any(x.startswith(("- ", "1. ")) for x in lines), text  # a list
    fences = [x for x in lines if x.startswith("```")]
    assert len(fences) == 2 and fences[0] != "```", fences  # one whole code block, its language named


def test_an_answer_is_markdown_shaped_by_its_role_and_the_same_for_the_same_job() -> None:
    answers = {
        role: "".join(demo_answer(f"d-x-j{i}", role, "asyncio event loops", 300)) for i, role in enumerate(ROLES)
    }
    for text in answers.values():
        _shape(text)
        assert len(text.split()) <= 300
    assert answers["code"].count("```python") == 1 and "def asyncio_event_loops(" in answers["code"]
    sizes = {role: len(t.split()) for role, t in answers.items()}
    assert sizes["research"] < sizes["code"] < sizes["analysis"], sizes  # research notes shortest
    again = "".join(demo_answer("d-x-j0", "research", "asyncio event loops", 300))
    other = "".join(demo_answer("d-y-j0", "research", "asyncio event loops", 300))
    assert again == answers["research"] and other != again  # seeded by the job
    # a budget smaller than the smallest document: its beginning, never more than asked
    assert len(demo_answer("d-x-j0", "code", "x", 15)) <= 15
    assert len(demo_answer("d-x-j0", "analysis", "x", 50_000)) > 40_000  # a long budget is used, whole sentences


async def test_the_endpoint_streams_the_answer_a_token_at_a_time_at_the_rate(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, SWARM_DEMO_TPS="200").replace(demo__tokens=120)
    ep = DemoEndpoint(cfg.demo)
    await ep.start()
    body = {
        "model": "google/gemini-2.5-flash-lite",
        "stream": True,
        "max_tokens": 1000,
        "messages": [
            {"role": "system", "content": "You are the code worker of a swarm."},
            {"role": "user", "content": TASK},
        ],
    }
    try:
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            async with http.post(f"{ep.base}/chat/completions", json=body, headers={"X-Swarm-Job": "d-z-j2"}) as r:
                raw = (await r.read()).decode()
            took = time.monotonic() - t0
    finally:
        await ep.stop()
    deltas, usage = [], None
    for line in raw.splitlines():
        if line.startswith("data: {"):
            obj = json.loads(line[6:])
            if obj["choices"] and obj["choices"][0]["delta"].get("content"):
                deltas.append(obj["choices"][0]["delta"]["content"])
            usage = obj.get("usage") or usage
    assert deltas == demo_answer("d-z-j2", "code", "asyncio event loops schedule coroutines", 120)
    assert usage is not None and usage["completion_tokens"] == len(deltas)
    assert all(len(d.split()) == 1 for d in deltas)  # one word a delta
    assert took >= (len(deltas) - 1) / 200 * 0.9  # at demo.tokens_per_s, not faster
    _shape("".join(deltas))


async def test_demo_jobs_answer_in_their_roles_seeded_by_the_job_id(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    from swarm_tui.engine.assemble import assemble

    cfg = make_config(tmp_path, nats_server.url, SWARM_DEMO_TPS="2000")
    bus = await Bus(cfg).connect()
    chunks = await Chunks().start(bus)
    engine = assemble(cfg, bus, demo=True, conductor=False)
    await engine.start()
    try:
        d = await approve(bus, 3, demo=True, text=TASK, roles=ROLES, max_tokens=1000)
        await until(lambda: len(engine.state.results) == 3, 30, "demo results")
    finally:
        await engine.stop()
        await bus.close()
    for i, role in enumerate(ROLES):
        r = engine.state.results[job_id(d.id, i)]
        assert r.state == "done" and r.demo and r.role == role
        # what the endpoint wrote for this job id and role (the worker sends both), word for word
        assert r.text == "".join(demo_answer(job_id(d.id, i), role, "asyncio event loops schedule coroutines", 300))
        assert chunks.text(worker_id(d.id, i)) == r.text
        assert r.usage.completion_tokens == len(r.text.split())
        _shape(r.text)

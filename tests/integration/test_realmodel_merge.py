"""The merge and the learning path against a real model: llama.cpp serving Gemma 3 270M as Ollama would.

Skips without llama-cpp-python and the GGUF package (``.ci/run`` installs both and runs ``pytest -m realmodel``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Decision, Task, new_id
from swarm_tui.engine.engine import Engine
from tests.integration.test_conductor import MODEL, decisions, running
from tests.integration.test_conductor_merge import history
from tests.integration.test_realmodel import conf
from tests.support.llama_ollama import LlamaOllama, available
from tests.support.polling import until

pytestmark = [pytest.mark.realmodel, pytest.mark.skipif(bool(available()), reason=available() or "ok")]


async def submit(engine: Engine, text: str) -> str:
    t = Task(id=new_id("t"), text=text, created_at=time.time())
    await engine.bus.publish_event(t, msg_id=t.id)
    return t.id


async def decision_for(engine: Engine, *task_ids: str) -> Decision:
    found: list[Decision] = await until(
        lambda: [d for d in decisions(engine) if set(task_ids) <= set(d.task_ids)], 90, "a decision"
    )
    return found[0]


async def test_a_real_models_plan_keeps_the_rules_floor(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with LlamaOllama() as lo:
        cfg = conf(tmp_path, nats_server.url, lo.url, heartbeat__debounce_s=1.0)
        async with running(cfg) as (engine, _cond):
            code = await submit(engine, "Implement a Python function that merges two sorted lists, with unit tests")
            steps = await submit(engine, "Collect the prices of three GPU clouds, then compare them")
            simple = await submit(engine, "What is the capital of Australia?")
            d = await decision_for(engine, code, steps, simple)
            print(f"\nraw: {d.raw}\nmerge: {[(m.kept, m.what, m.reason) for m in d.merge]}")
            assert d.source == f"ollama:{MODEL}", (d.error, d.raw)
            by_task = {t: [p for p in d.plan if p.task_id == t] for t in (code, steps, simple)}
            assert all(by_task.values())  # every ready task planned
            assert [p.role for p in by_task[code]] == ["code"]  # the words make it code, one worker
            assert len(by_task[simple]) == 1 and by_task[simple][0].role == "research"
            assert 1 <= len(by_task[steps]) <= 2
            if len(by_task[steps]) == 2:  # the model's chain, kept because the task names two steps
                assert any(m.task_id == steps and m.kept == "model" and m.what == "chain" for m in d.merge)
            assert all(m.task_id in ("", code, steps, simple) for m in d.merge)


@pytest.mark.parametrize("edited_to", [1, 2])
async def test_three_edits_reach_a_real_models_prompt_and_the_plan(
    tmp_path: Path, nats_server: EmbeddedServer, edited_to: int
) -> None:
    async with LlamaOllama() as lo:
        cfg = conf(tmp_path, nats_server.url, lo.url)
        async with running(cfg) as (engine, _cond):
            texts = await history(engine, 3, proposed=3 - edited_to, edited_to=edited_to)
            t = await submit(engine, "Find three recent papers on swarm scheduling")
            d = await decision_for(engine, t)
            assert d.source == f"ollama:{MODEL}", (d.error, d.raw)
            assert [p.role for p in d.plan] == ["research"] * edited_to  # the person's count
            assert len(d.examples) == 3 and all(any(x in e for e in d.examples) for x in texts)
            prompt = lo.chats()[-1]["json"]["messages"][-1]["content"]
            assert all(x in prompt for x in texts)
            assert any(m.kept == "user" and m.what == "count" for m in d.merge)

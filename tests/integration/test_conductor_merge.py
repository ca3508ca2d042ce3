"""The conductor merges the rules' plan and the model's, and learns from the person (a real engine and
nats-server, the model behind the fake Ollama)."""

from __future__ import annotations

import time
from pathlib import Path

from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task, new_id
from swarm_tui.engine.engine import Engine
from tests.integration.test_conductor import MODEL, conf, decisions, running, submit
from tests.support.fake_ollama import FakeOllama, plan
from tests.support.polling import until


async def test_the_rules_floor_holds_and_every_choice_is_recorded(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url)
        async with running(cfg) as (engine, _cond):
            code = await submit(engine, "Implement a Python function that merges two sorted lists, with tests")
            steps = await submit(engine, "Find the prices of three GPU clouds, then compare them")
            left_out = await submit(engine, "Summarise the history of the Unix shell")
            fo.default = plan((code, "research", 2), (steps, ["research", "analysis"], 1), reason="two kinds")
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == f"ollama:{MODEL}" and d.error == ""
            assert sorted((p.task_id, p.role, p.step) for p in d.plan) == sorted(
                [(code, "code", 0), (steps, "research", 0), (steps, "analysis", 1), (left_out, "research", 0)]
            )
            got = {(m.task_id, m.kept, m.what) for m in d.merge}
            assert {
                (code, "rules", "role"),
                (code, "rules", "count"),
                (steps, "model", "chain"),
                (left_out, "rules", "task"),
            } <= got
            assert "two kinds" in d.reason and d.examples == []


async def test_the_model_unusable_leaves_the_rules_plan(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        fo.default = "I think you should start three workers."  # prose: the schema ignored (Ollama issue 8063)
        cfg = conf(tmp_path, nats_server, fo.url)
        async with running(cfg) as (engine, _cond):
            t = await submit(engine, "Summarise the history of the Unix shell")
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == "rules" and d.error and d.merge == []
            assert [(p.task_id, p.role) for p in d.plan] == [(t, "research")]


async def history(engine: Engine, n: int, *, proposed: int, edited_to: int) -> list[str]:
    """``n`` research decisions a person edited from ``proposed`` workers to ``edited_to`` and approved."""
    texts = []
    model = "openrouter/google/gemini-2.5-flash-lite"
    for i in range(n):
        now = time.time()
        text = f"Find three recent papers on topic {i}"
        t = Task(id=new_id("t"), text=text, created_at=now)
        items = [PlanItem(task_id=t.id, role="research", model=model, max_tokens=800)] * proposed
        d = Decision(id=new_id("d"), task_ids=[t.id], plan=items, source="rules", created_at=now, expires_at=now + 900)
        edit = Approval(decision_id=d.id, action="edited", workers=edited_to, by="tui", at=now)
        ok = Approval(decision_id=d.id, action="approved", by="tui", at=now)
        for ev, mid in ((t, t.id), (d, d.id), (edit, f"{d.id}-edit"), (ok, f"{d.id}-final")):
            await engine.bus.publish_event(ev, msg_id=mid)
        texts.append(text)
    await until(lambda: sum(dv.status == "approved" for dv in engine.state.decisions.values()) == n)
    return texts


async def test_three_edits_teach_the_count_and_reach_the_prompt(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url)
        async with running(cfg) as (engine, _cond):
            texts = await history(engine, 3, proposed=1, edited_to=2)
            t = await submit(engine, "Find three recent papers on swarm scheduling")
            fo.default = plan((t, "research", 1))
            d = (await until(lambda: [d for d in decisions(engine) if d.task_ids == [t]]))[0]
            assert [(p.task_id, p.role) for p in d.plan] == [(t, "research"), (t, "research")]  # the person's 2
            assert any(m.kept == "user" and m.what == "count" and "3 research" in m.reason for m in d.merge)
            assert len(d.examples) == 3 and texts[-1] in d.examples[0]  # newest first
            prompt = fo.chats()[-1]["json"]["messages"][-1]["content"]
            assert all(text in prompt for text in texts)


async def test_learn_false_sends_no_example_and_keeps_one_worker(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url, heartbeat__learn=False)
        async with running(cfg) as (engine, _cond):
            texts = await history(engine, 3, proposed=1, edited_to=2)
            t = await submit(engine, "Find three recent papers on swarm scheduling")
            fo.default = plan((t, "research", 1))
            d = (await until(lambda: [d for d in decisions(engine) if d.task_ids == [t]]))[0]
            assert len(d.plan) == 1 and d.examples == [] and not any(m.kept == "user" for m in d.merge)
            prompt = fo.chats()[-1]["json"]["messages"][-1]["content"]
            assert not any(text in prompt for text in texts)


async def test_examples_a_failed_call_carried_are_not_shown_as_learned(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOllama() as fo:
        fo.default = "not json at all"  # the prompt carried the examples, but no answer used them
        cfg = conf(tmp_path, nats_server, fo.url)
        async with running(cfg) as (engine, _cond):
            await history(engine, 3, proposed=1, edited_to=2)
            t = await submit(engine, "Find three recent papers on swarm scheduling")
            d = (await until(lambda: [d for d in decisions(engine) if d.task_ids == [t]]))[0]
            assert d.source == "rules" and d.error and d.examples == []
            assert "Find three recent papers on topic 0" in fo.chats()[-1]["json"]["messages"][-1]["content"]
            assert len(d.plan) == 2  # the learned count holds without the model


async def test_learning_applies_with_the_model_off(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = conf(tmp_path, nats_server)
    async with running(cfg, use_ollama=False) as (engine, _cond):
        await history(engine, 3, proposed=2, edited_to=1)
        t = await submit(engine, "Find three recent papers on swarm scheduling")
        d = (await until(lambda: [d for d in decisions(engine) if d.task_ids == [t]]))[0]
        assert d.source == "rules" and len(d.plan) == 1 and d.examples == []
        assert any(m.kept == "user" for m in d.merge)  # 1 is also the rules' count: the person's word is named

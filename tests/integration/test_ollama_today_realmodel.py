"""The heartbeat's call as Ollama is today, against a real model: llama.cpp (through llama-cpp-python) serving
Gemma 3 270M as Ollama would (tests/support/llama_ollama.py). Skips without llama-cpp-python, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.heartbeat.envelope import ReadyTask
from swarm_tui.engine.heartbeat.local_model import Advisor
from tests.support.env import make_config
from tests.support.llama_ollama import LlamaOllama, available
from tests.support.plans import flat_envelope

pytestmark = [pytest.mark.realmodel, pytest.mark.skipif(bool(available()), reason=available() or "ok")]


async def test_a_server_that_loads_a_smaller_window_gets_prompts_that_fit_it(tmp_path: Path) -> None:
    """num_ctx 4096 asked of a server that loads the model with 2048 (as Ollama does past a model's trained
    context): /api/ps reports context_length 2048 after the first call, and the next prompt, sized for it, is
    evaluated whole with room for the whole answer. think is false on every call."""
    async with LlamaOllama(ctx_limit=2048) as lo:
        cfg = make_config(tmp_path, "nats://127.0.0.1:9", OLLAMA_HOST=lo.url)
        text = "Research the history of the topic in depth and compare the sources, with a summary. " * 8
        env = flat_envelope([ReadyTask(f"t-mfx3k2a1-{i:04x}", text + f" Topic {i}.", 5) for i in range(8)])
        adv = Advisor(cfg.ollama, LocalLane())
        await adv.advise(env, env.tasks)
        assert adv.window_task is not None
        await adv.window_task
        assert adv.window() == 2048
        second = await adv.advise(env, env.tasks)
        await adv.close()
        body, resp = lo.chats()[-1]["json"], lo.chats()[-1]["response"]
        print(f"\nwindow {second.num_ctx_used}: prompt_eval_count {resp['prompt_eval_count']}, {second.raw}")
        assert all(c["json"]["think"] is False for c in lo.chats())
        assert second.num_ctx_used == 2048 and body["options"]["num_ctx"] == 4096
        assert resp["prompt_eval_count"] + body["options"]["num_predict"] <= 2048
        assert second.error == "" and second.warning == "" and second.advice is not None, second

"""The demo is one implementation of the pool's Endpoint: each row is a question the pool used to answer by
asking whether it had a demo endpoint, and what OpenRouter and the demo answer to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from nats.aio.msg import Msg as NatsMsg

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import ChatMessage, Job
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.swarm.attempts import Attempts
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.context import PoolSettings
from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint
from swarm_tui.engine.swarm.endpoint import Endpoint, OpenRouterEndpoint
from swarm_tui.engine.swarm.gates import closed
from swarm_tui.engine.swarm.pool import MISSING_KEY, Pool
from swarm_tui.engine.swarm.run import Run
from tests.support.env import make_config

CLOUD = "openrouter/google/gemini-2.5-flash-lite"
LOCAL = "ollama_chat/qwen2.5:0.5b"


def job_of(model: str) -> Job:
    msgs = [ChatMessage(role="user", content="hi")]
    return Job(
        id="d-1-j0",
        worker_id="d-1-w0",
        decision_id="d-1",
        task_id="t-1",
        role="research",
        model=model,
        max_tokens=100,
        messages=msgs,
        created_at=0.0,
    )


def pool_of(cfg: Config, endpoint: Endpoint) -> Pool:
    return build_pool(cfg, cast(Bus, None), endpoint=endpoint, host="test")  # no bus: nothing here connects


def seeded(pool: Pool) -> bool:
    headers = pool.runner.caller.call_options(job_of(CLOUD), CLOUD).get("headers", {})
    return "X-Swarm-Job" in headers and "X-Swarm-Role" in headers


Row = tuple[str, Callable[[Pool], object], object, object]

# (the branch, the question asked of a pool, OpenRouter's answer, the demo's answer)
ROWS: list[Row] = [
    ("a reconciler for its attempts", lambda p: p.reconciler is not None, True, False),
    ("the API key sent", lambda p: p.endpoint.api_key, "sk-or-v1-table", DemoEndpoint.KEY),
    ("the API base", lambda p: p.endpoint.api_base, "http://openrouter.test/api/v1", "http://127.0.0.1:0/api/v1"),
    ("a missing key holds cloud jobs", lambda p: p.endpoint.blocks_without_key, True, False),
    ("info()'s demo flag", lambda p: p.info()["demo"], False, True),
    ("a local model needs litellm", lambda p: p.needs_litellm([LOCAL]), True, False),
    ("a cloud model needs litellm", lambda p: p.needs_litellm([CLOUD]), False, False),
    ("a local model takes the local lane (gates)", lambda p: p.endpoint.runs_locally(LOCAL), True, False),
    (
        "a local model's model name (route)",
        lambda p: p.runner.caller.route(job_of(LOCAL))[0],
        LOCAL,
        "openrouter/local/qwen2.5:0.5b",
    ),
    ("a cloud model's model name (route)", lambda p: p.runner.caller.route(job_of(CLOUD))[0], CLOUD, CLOUD),
    ("the call seeds the answer (call_options)", seeded, False, True),
    ("a cloud call is reconciled", lambda p: Attempts(p).reconciled(job_of(CLOUD)), True, False),
    ("a local call costs nothing (account)", lambda p: p.endpoint.runs_locally(LOCAL), True, False),
]


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(
        tmp_path, OPENROUTER_API_KEY="sk-or-v1-table", OPENROUTER_API_BASE="http://openrouter.test/api/v1"
    )


@pytest.mark.parametrize(("what", "ask", "openrouter", "demo"), ROWS, ids=[r[0] for r in ROWS])
def test_openrouter_and_the_demo_answer_as_the_branches_did(
    cfg: Config, what: str, ask: Callable[[Pool], object], openrouter: object, demo: object
) -> None:
    assert ask(pool_of(cfg, OpenRouterEndpoint(cfg.openrouter))) == openrouter, what
    assert ask(pool_of(cfg, DemoEndpoint(cfg.demo))) == demo, what


def test_without_a_key_the_pool_takes_jobs_and_holds_only_the_cloud_ones(tmp_path: Path) -> None:
    """Issue 28: a fully local swarm needs no OpenRouter key. The pool takes jobs; at the gates a local job
    passes and a cloud one waits, saying why; the demo needs no key at all."""
    cfg = make_config(tmp_path)
    pool = pool_of(cfg, OpenRouterEndpoint(cfg.openrouter))
    assert pool.blocked() is None and pool.key_missing() == MISSING_KEY
    assert pool.info()["blocked"] == MISSING_KEY and pool.info()["local_only"] is True
    assert closed(pool, Run(job=job_of(LOCAL), msg=cast(NatsMsg, None)))[0] is None
    assert closed(pool, Run(job=job_of(CLOUD), msg=cast(NatsMsg, None)))[0] == MISSING_KEY
    demo = pool_of(cfg, DemoEndpoint(cfg.demo))
    assert demo.blocked() is None and demo.key_missing() is None and demo.info()["local_only"] is False
    assert closed(demo, Run(job=job_of(CLOUD), msg=cast(NatsMsg, None)))[0] is None


def test_an_ant_is_unloaded_when_it_answers_a_cloud_call_sends_no_keep_alive(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    caller = pool_of(cfg, OpenRouterEndpoint(cfg.openrouter)).runner.caller
    assert caller.call_options(job_of(LOCAL), LOCAL)["keep_alive"] == 0
    assert "keep_alive" not in caller.call_options(job_of(CLOUD), CLOUD)


def test_the_pools_settings_never_show_a_secret(cfg: Config) -> None:
    settings = PoolSettings.of(cfg)
    assert "sk-or-v1-table" in settings.secrets  # what a call's errors are redacted with
    assert "sk-or-v1-table" not in repr(settings) and "sk-or-v1-table" not in repr(OpenRouterEndpoint(cfg.openrouter))

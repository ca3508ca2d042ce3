"""The rules alone: the envelope, the advice parser, the clamp, and the property that nothing escapes it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.heartbeat.advice import (
    MAX_CHAIN,
    REASON_CHARS,
    Advice,
    AdviceError,
    AdviceWorker,
    advice_schema,
    parse_advice,
    worst_case_tokens,
)
from swarm_tui.engine.heartbeat.clamp import clamp, rules_advice, violations
from swarm_tui.engine.heartbeat.envelope import ReadyTask, compute_envelope
from tests.support.plans import ALL, ROLES, env_of, est, tasks


def test_envelope_is_the_minimum_of_scale_and_budget_and_names_missing_guards() -> None:
    env = env_of(scale=10, live_workers=7)
    assert env.max_workers == 3 and "leaves 3" in env.limits["scale"]
    assert any("no spend guard" in n for n in env.notes) and any("no RAM guard" in n for n in env.notes)
    cheapest_worst = est("openrouter/a/cheap", 400 + len("task number 0"), 800)[1]
    env = env_of(roles=ROLES[:3], remaining_usd=cheapest_worst * 2.5)
    assert env.max_workers == 2 and "budget" in env.limits
    env = env_of(remaining_usd=0.0)  # the local role costs nothing, so it still fits
    assert env.max_workers == 10


def test_ram_and_rate_limits_exclude_or_cap_roles() -> None:
    env = env_of(
        ram_ok=False,
        rate_limits={
            "openrouter/c/coder": {"limit": 2, "backoff_until": 0},
            "openrouter/b/mid": {"limit": 4, "backoff_until": 150.0},
        },
        now=100.0,
    )
    assert "local" in env.excluded and "RAM" in env.excluded["local"]
    assert "analysis" in env.excluded and "rate limited for 50 s" in env.excluded["analysis"]
    assert env.model_caps == {"openrouter/c/coder": 2}
    plan = Advice(
        workers=[
            AdviceWorker(task_id="t-0", role="code", count=3),
            AdviceWorker(task_id="t-1", role="local"),
            AdviceWorker(task_id="t-2", role="analysis"),
        ]
    )
    out = clamp(env, plan, est, ALL)
    assert [p.role for p in out.items] == ["code", "code"]
    reasons = " | ".join(c.reason for c in out.clamps)
    assert "rate limit: at most 2" in reasons and "RAM headroom is low" in reasons and "rate limited" in reasons


def test_out_of_credit_excludes_cloud_roles_only() -> None:
    env = env_of(cloud_blocked=Refusal("out of credit (402)"))
    assert list(env.roles) == ["local"] and "out of credit" in env.excluded["code"]


def test_no_roles_means_zero_workers_with_a_reason() -> None:
    env = compute_envelope(
        [ROLES[3]], tasks(2), scale=5, live_workers=0, max_per_task=3, estimate=est, remaining_usd=1.0, ram_ok=False
    )
    assert env.max_workers == 0 and "RAM headroom" in str(env.why_zero())


def test_clamp_records_each_change_with_its_reason() -> None:
    env = env_of(n_tasks=2, scale=4)
    plan = Advice(
        workers=[
            AdviceWorker(task_id="t-0", role="research", count=5, max_tokens=99_999),
            AdviceWorker(task_id="nope", role="research"),
            AdviceWorker(task_id="t-1", role="poet"),
            AdviceWorker(task_id="t-1", role="analysis", count=2, step=1, max_tokens=100),
        ]
    )
    out = clamp(env, plan, est, ALL)
    assert [(p.task_id, p.role, p.max_tokens, p.step) for p in out.items] == [
        ("t-0", "research", 800, 0),
        ("t-0", "research", 800, 0),
        ("t-0", "research", 800, 0),
        ("t-1", "analysis", 100, 0),
    ]  # its only step: renumbered to 0 so the chain has no gap
    by_what = {c.what: c for c in out.clamps}
    assert by_what["step"].before == [1] and by_what["step"].after == [0]
    assert by_what["workers[0].max_tokens"].before == 99_999 and by_what["workers[0].max_tokens"].after == 800
    assert "per task" in by_what["workers[0].count"].reason and by_what["workers[0].count"].after == 3
    assert "not a ready task" in by_what["workers[1].task_id"].reason
    assert "not a configured role" in by_what["workers[2].role"].reason
    assert "scale 4" in by_what["workers"].reason
    assert violations(env, out.items, out.est_max) == []
    assert out.est_max >= out.est_min > 0


def test_budget_clamp_keeps_the_worst_case_under_the_budget() -> None:
    one = est("openrouter/c/coder", 400 + len("task number 0"), 1500)[1]
    env = env_of(n_tasks=3, remaining_usd=one * 2.2)
    out = clamp(env, Advice(workers=[AdviceWorker(task_id=t, role="code") for t in ("t-0", "t-1", "t-2")]), est, ALL)
    assert len(out.items) == 2 and out.est_max <= one * 2.2
    assert any(c.what == "budget" for c in out.clamps)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not json at all {", "ignored the JSON schema (answered prose; Ollama issue 8063)"),
        ('{"tasks": [{"id": "t-0", "roles": ["co', "not valid JSON"),
        ('{"jobs": []}', "ignored the JSON schema (answered JSON of another shape; Ollama issue 8063)"),
        ('{"reason": "", "tasks": [{"id": "t-0", "count": 1}]}', "roles"),
        ("[1, 2]", "answered JSON of another shape"),
        ('{"reason": "", "tasks": [{"id": "t-0", "roles": ["code"], "count": -1}]}', "count"),
        ('{"reason": "", "tasks": [{"id": "t-0", "roles": [], "count": 1}]}', "roles"),
    ],
)
def test_parse_advice_rejects_bad_answers_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(AdviceError) as ei:
        parse_advice(text)
    assert fragment in str(ei.value)


def test_schema_lists_roles_and_tasks_as_enums() -> None:
    schema = advice_schema(["research", "code"], ["t-1", "t-2"], max_per_task=3)
    w = schema["properties"]["tasks"]["items"]["properties"]
    assert w["roles"]["items"]["enum"] == ["research", "code"] and w["id"]["enum"] == ["t-1", "t-2"]
    assert w["count"]["enum"] == [1, 2, 3]  # the grammar converter ignores minimum/maximum: an enum binds
    assert schema["required"] == ["tasks", "reason"] and json.dumps(schema)


def _bounds(node: Any) -> list[int]:
    out = []
    if isinstance(node, dict):
        out += [int(v) for k, v in node.items() if k in ("maxLength", "maxItems", "minItems", "minLength")]
        for v in node.values():
            out += _bounds(v)
    elif isinstance(node, list):
        for v in node:
            out += _bounds(v)
    return out


@pytest.mark.parametrize("n_tasks, max_workers", [(1, 10), (8, 10), (100, 50), (100, 200)])
def test_schema_bounds_stay_far_from_the_grammar_limit(n_tasks: int, max_workers: int) -> None:
    """llama.cpp's grammar parser refuses repetitions at MAX_REPETITION_THRESHOLD (2000): every bound here stays
    far below, and the arrays are bounded by what the beat can use."""
    ids = [f"t-mfx3k2a1-{i:04x}" for i in range(n_tasks)]
    schema = advice_schema(["research", "analysis", "code"], ids, max_per_task=3, max_workers=max_workers)
    assert max(_bounds(schema)) <= 200
    assert schema["properties"]["tasks"]["maxItems"] == min(n_tasks, max_workers)
    assert schema["properties"]["tasks"]["items"]["properties"]["roles"]["maxItems"] == MAX_CHAIN
    worst = worst_case_tokens(schema)
    assert worst_case_tokens(advice_schema(["research"], ids[:1])) < worst
    longest = plan(
        *[(i, ["research", "analysis", "code"][:MAX_CHAIN], 3) for i in ids[: min(n_tasks, max_workers)]],
        reason="x" * REASON_CHARS,
    )
    assert len(longest) / 2 < worst  # the densest real answer stays inside the bound


def plan(*entries: tuple[str, list[str], int], reason: str = "") -> str:
    return json.dumps({"reason": reason, "tasks": [{"id": t, "roles": r, "count": n} for t, r, n in entries]})


def test_the_compact_plan_becomes_steps_in_order() -> None:
    advice = parse_advice(plan(("t-0", ["research", "analysis"], 2), ("t-1", ["code"], 1), reason="r"))
    assert [(w.task_id, w.role, w.step, w.count) for w in advice.workers] == [
        ("t-0", "research", 0, 2),
        ("t-0", "analysis", 1, 2),
        ("t-1", "code", 0, 1),
    ]
    assert parse_advice(plan(reason="x" * 5000)).reason == "x" * REASON_CHARS


def test_rules_choose_a_role_from_the_task_words() -> None:
    ts = [
        ReadyTask("t-a", "Implement a python function to parse dates"),
        ReadyTask("t-b", "Compare NATS and Kafka: trade-offs"),
        ReadyTask("t-c", "Summarise the news"),
    ]
    env = compute_envelope(ROLES, ts, scale=10, live_workers=0, max_per_task=3, estimate=est, remaining_usd=None)
    assert [(w.task_id, w.role) for w in rules_advice(env).workers] == [
        ("t-a", "code"),
        ("t-b", "analysis"),
        ("t-c", "research"),
    ]


# ---------------------------------------------------------------------------------------------- the property
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.sampled_from(["t-0", "t-1", "t-9", "research", "code", "local", "poet", ""]),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "roles", "count", "step", "max_tokens", "tasks", "reason", "x"]), c, max_size=5
        )
    ),
    max_leaves=20,
)
task_like = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["t-0", "t-1", "t-2", "t-3", "t-9", "x"]),
        "roles": st.lists(st.sampled_from(["research", "analysis", "code", "local", "poet"]), max_size=5),
        "count": st.integers(-3, 60),
    },
    optional={"max_tokens": st.integers(-5, 300_000) | st.none()},
)
answers = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.lists(task_like, max_size=12).map(lambda ts: json.dumps({"tasks": ts, "reason": "r"})),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=answers,
    scale=st.integers(0, 12),
    live=st.integers(0, 12),
    n_tasks=st.integers(0, 4),
    budget=st.none() | st.floats(0, 0.05),
    per_task=st.integers(1, 4),
    ram_ok=st.none() | st.booleans(),
    coder_cap=st.none() | st.integers(0, 3),
)
def test_no_model_answer_leaves_the_envelope(
    answer: str,
    scale: int,
    live: int,
    n_tasks: int,
    budget: float | None,
    per_task: int,
    ram_ok: bool | None,
    coder_cap: int | None,
) -> None:
    rl = {"openrouter/c/coder": {"limit": coder_cap, "backoff_until": 0}} if coder_cap is not None else None
    env = compute_envelope(
        ROLES,
        tasks(n_tasks),
        scale=scale,
        live_workers=live,
        max_per_task=per_task,
        estimate=est,
        remaining_usd=budget,
        ram_ok=ram_ok,
        rate_limits=rl,
    )
    try:
        advice = parse_advice(answer)
    except AdviceError:
        advice = rules_advice(env)  # what the conductor does: the rules decide
    out = clamp(env, advice, est, ALL)
    assert violations(env, out.items, out.est_max) == []
    assert len(out.items) <= max(0, scale - live)
    if ram_ok is False:
        assert all(not p.model.startswith("ollama_chat/") for p in out.items)
    assert all(p.task_id in env.task_ids for p in out.items)


# ---------------------------------------------------------------------------------------------- prompt sizing
def _review_fit(tmp_path: Any, ctx: int, items_text: str = "y", n: int = 8, max_tasks: int = 8) -> Any:
    from swarm_tui.engine.guards.local_lane import LocalLane
    from swarm_tui.engine.heartbeat.local_model import Advisor
    from swarm_tui.engine.heartbeat.prompt import (
        RESULT_CHARS,
        REVIEW_SYSTEM,
        TASK_CHARS,
        ReviewTask,
        build_review_prompt,
    )
    from tests.support.env import make_config

    env = compute_envelope(
        ROLES[:3], tasks(n), scale=max_tasks, live_workers=0, max_per_task=3, estimate=est, remaining_usd=None
    )
    items = [
        ReviewTask(t.id, items_text * 2000, [("research", "done", items_text * 5000)] * 6, 1, 2, 0.0, 1.0)
        for t in env.tasks
    ]
    adv = Advisor(make_config(tmp_path, "nats://127.0.0.1:9").replace(ollama__num_ctx=ctx).ollama, LocalLane())
    fitted = adv.fit(
        REVIEW_SYSTEM,
        items,
        lambda ts, k, ex: build_review_prompt(env, ts, int(TASK_CHARS * k), int(RESULT_CHARS * k), ex),
        lambda ids: Advisor.schema(env, ids),
    )
    return adv, env, fitted


@pytest.mark.parametrize("ctx, text, want", [(4096, "y", 8), (1024, "y", None), (4096, "ж", None), (2048, "中", None)])
def test_prompts_shrink_to_the_window_with_the_system_part_whole(
    tmp_path: Any, ctx: int, text: str, want: int | None
) -> None:
    """The review beat with 8 finished tasks and 6 long results each fits the default num_ctx by the sizer's
    own (conservative) estimate; texts shrink before any task is dropped; a smaller window, or text that is not
    ASCII (a token a character, near enough), keeps fewer tasks but never sends a prompt that cannot fit."""
    from swarm_tui.engine.heartbeat.advice import worst_case_tokens
    from swarm_tui.engine.heartbeat.prompt import REVIEW_SYSTEM, TEMPLATE_TOKENS, build_review_prompt

    adv, env, fitted = _review_fit(tmp_path, ctx, text)
    prompt, offered, schema, _ = fitted
    num_predict = adv.num_predict(schema)
    aliases = [str(i) for i in range(1, len(offered) + 1)]  # the tasks' short names in the prompt and the schema
    assert schema["properties"]["tasks"]["items"]["properties"]["id"]["enum"] == aliases
    used = adv.sizer.tokens(prompt + REVIEW_SYSTEM) + TEMPLATE_TOKENS
    assert used + num_predict <= ctx, (ctx, used, num_predict)
    assert num_predict >= worst_case_tokens(schema)  # the answer's worst case is never cut
    assert (len(offered) == want) if want else (1 <= len(offered) < 8)
    assert text in prompt and "\\u" not in prompt  # sent as the characters, not as 6-character escapes
    assert len(prompt) < len(build_review_prompt(env, offered))  # trimmed, not sent whole


def test_the_answer_budget_is_never_below_its_worst_case(tmp_path: Any) -> None:
    """With many tasks in a small window, tasks are dropped until the answer's worst case fits half of it."""
    adv, env, fitted = _review_fit(tmp_path, 2048, n=100, max_tasks=100)
    prompt, offered, schema, _ = fitted
    from swarm_tui.engine.heartbeat.advice import worst_case_tokens

    assert 1 <= len(offered) < 100 and adv.num_predict(schema) >= worst_case_tokens(schema)
    assert adv.num_predict(schema) <= 2048 // 2


async def test_a_window_under_the_smallest_num_ctx_is_not_believed(tmp_path: Any) -> None:
    """/api/ps says the model has a 256-token window (context_length): under the smallest num_ctx allowed (512)
    it is not believed (a lying server must not turn the model off); the prompt is sized for num_ctx."""
    from swarm_tui.engine.guards.local_lane import LocalLane
    from swarm_tui.engine.heartbeat.local_model import Advisor
    from tests.support.env import make_config
    from tests.support.fake_ollama import FakeOllama

    async with FakeOllama() as fo:
        fo.loaded = [{"name": "gemma2:2b", "context_length": 256}]
        adv = Advisor(make_config(tmp_path, "nats://127.0.0.1:9", OLLAMA_HOST=fo.url).ollama, LocalLane())
        await adv.read_window()
        env = compute_envelope(
            ROLES[:3], tasks(2), scale=8, live_workers=0, max_per_task=3, estimate=est, remaining_usd=None
        )
        result = await adv.advise(env, env.tasks)
        await adv.close()
    assert adv.window() == 4096 and result.num_ctx_used == 4096 and len(fo.chats()) == 1


def test_the_sizer_learns_toward_the_smallest_ratio_it_saw() -> None:
    from swarm_tui.engine.heartbeat.prompt import TEMPLATE_TOKENS, PromptSizer

    sizer = PromptSizer()
    sizer.learn("x" * 12_000, 3_000)
    assert sizer.chars_per_token == pytest.approx(0.9 * 12_000 / (3_000 - TEMPLATE_TOKENS / 2))
    sizer.learn("x" * 12_000, 500)  # a cached prefix makes a prompt look cheap: ignored by the minimum
    assert sizer.chars_per_token == pytest.approx(0.9 * 12_000 / (3_000 - TEMPLATE_TOKENS / 2))
    assert sizer.tokens("ж" * 100 + "x" * 300) == 100 + math.ceil(300 / sizer.chars_per_token)


def test_a_raw_newline_inside_the_reason_is_tolerated() -> None:
    """llama-cpp-python's grammar port lets a raw control character into a string (seen from Gemma 3 270M)."""
    advice = parse_advice('{"tasks": [{"id": "t-0", "roles": ["code"], "count": 1}], "reason": "a\nb"}')
    assert advice.reason == "a\nb" and advice.workers[0].role == "code"

"""The heartbeat's merge: the rules' plan is the floor, the model adds (heartbeat/merge.py)."""

from __future__ import annotations

import time

from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
from swarm_tui.engine.heartbeat.clamp import clamp, rules_advice
from swarm_tui.engine.heartbeat.envelope import Envelope, ReadyTask, RoleSpec, compute_envelope
from swarm_tui.engine.heartbeat.learn import Preference
from swarm_tui.engine.heartbeat.merge import (
    english,
    looks_complete,
    merge_plans,
    merge_review,
    names_steps,
    verdict,
)
from swarm_tui.engine.heartbeat.prompt import ReviewTask

ROLES = [
    RoleSpec("research", "openrouter/google/gemini-2.5-flash-lite", 800),
    RoleSpec("analysis", "openrouter/deepseek/deepseek-chat-v3.1", 1200),
    RoleSpec("code", "openrouter/qwen/qwen3-coder", 1500),
]
PRICE = {"google": (0.1, 0.4), "deepseek": (0.2, 0.8), "qwen": (0.2, 0.8)}


def estimate(model: str, prompt_bytes: int, max_tokens: int) -> tuple[float, float]:
    p, c = next(v for k, v in PRICE.items() if k in model)
    cost = prompt_bytes / 3 * p / 1e6
    return cost + max_tokens / 2 * c / 1e6, cost + max_tokens * c / 1e6


def env_of(*texts: str | tuple[str, int], remaining: float | None = 1.0, scale: int = 10) -> Envelope:
    tasks = []
    for i, t in enumerate(texts):
        text, prio = (t, 5) if isinstance(t, str) else t
        tasks.append(ReadyTask(f"t-{i:08d}", text, prio))
    tasks.sort(key=lambda t: -t.priority)
    return compute_envelope(
        ROLES,
        tasks,
        scale=scale,
        live_workers=0,
        max_per_task=3,
        estimate=estimate,
        remaining_usd=remaining,
        ram_ok=True,
        rate_limits={},
        now=time.time(),
    )


def model(*entries: tuple[str, list[str], int], reason: str = "") -> Advice:
    ws = [AdviceWorker(task_id=t, role=r, count=n, step=i) for t, roles, n in entries for i, r in enumerate(roles)]
    return Advice(workers=ws, reason=reason)


def plan(env: Envelope, advice: Advice) -> list[tuple[str, str, int]]:
    return [(p.task_id, p.role, p.step) for p in clamp(env, advice, estimate, {r.name: r for r in ROLES}).items]


def test_without_the_model_the_merge_is_the_rules_plan() -> None:
    env = env_of("Implement a Python function that reverses a list.", "Summarise the history of Unix.")
    m = merge_plans(env, rules_advice(env), None, estimate=estimate)
    assert plan(env, m.advice) == plan(env, rules_advice(env))
    assert m.choices == []


def test_a_task_the_model_left_out_is_planned_by_the_rules() -> None:
    env = env_of("Summarise the history of Unix.", "Compare SQLite and PostgreSQL for a small app.")
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["research"], 1)), estimate=estimate)
    assert {t for t, _, _ in plan(env, m.advice)} == {"t-00000000", "t-00000001"}
    assert any(c.task_id == "t-00000001" and c.kept == "rules" and c.what == "task" for c in m.choices)


def test_a_code_task_keeps_code_when_the_model_says_research() -> None:
    env = env_of("Implement a Python function that merges two sorted lists, with unit tests.")
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["research"], 1)), estimate=estimate)
    assert plan(env, m.advice) == [("t-00000000", "code", 0)]
    assert [c.what for c in m.choices] == ["role"] and "code" in m.choices[0].reason


def test_a_chain_is_kept_only_when_the_task_names_steps() -> None:
    two = env_of("Find the prices of three GPU clouds, then compare them and recommend one.")
    m = merge_plans(two, rules_advice(two), model(("t-00000000", ["research", "analysis"], 1)), estimate=estimate)
    assert plan(two, m.advice) == [("t-00000000", "research", 0), ("t-00000000", "analysis", 1)]
    assert m.choices[0].kept == "model" and m.choices[0].what == "chain"
    one = env_of("What is the capital of Australia?")
    m = merge_plans(one, rules_advice(one), model(("t-00000000", ["research", "analysis"], 1)), estimate=estimate)
    assert plan(one, m.advice) == [("t-00000000", "research", 0)]
    assert m.choices[0].kept == "rules" and "one step" in m.choices[0].reason


def test_parallel_copies_are_cut_to_one_unless_the_person_settled_on_more() -> None:
    env = env_of("What is the capital of Australia?")
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["research"], 3)), estimate=estimate)
    assert len(plan(env, m.advice)) == 1
    pref = {"research": Preference("research", 2, "the user's last 3 research decisions ended at 2")}
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["research"], 3)), estimate=estimate, prefs=pref)
    assert len(plan(env, m.advice)) == 2
    assert m.choices[-1].kept == "user" and "last 3" in m.choices[-1].reason
    m = merge_plans(env, rules_advice(env), None, estimate=estimate, prefs=pref)  # the model off: still learned
    assert len(plan(env, m.advice)) == 2


def test_a_task_the_rules_cannot_read_takes_the_models_role() -> None:
    env = env_of("写一个函数，合并两个有序列表，并附上测试")
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["code"], 1)), estimate=estimate)
    assert plan(env, m.advice) == [("t-00000000", "code", 0)]
    assert m.choices[0].kept == "model" and m.choices[0].what == "role"


def test_the_rules_role_stays_against_a_guess_of_the_model() -> None:
    env = env_of("What is the capital of Australia?")
    m = merge_plans(env, rules_advice(env), model(("t-00000000", ["analysis"], 1)), estimate=estimate)
    assert plan(env, m.advice) == [("t-00000000", "research", 0)]


def test_under_a_tight_budget_the_models_cheaper_role_wins() -> None:
    env = env_of(("Summarise today's notes.", 2), ("Urgent: explain the outage in one paragraph.", 9), remaining=5e-4)
    urgent = env.tasks[0].id
    assert plan(env, rules_advice(env))[0][0] != urgent  # the rules' analysis does not fit: a cheaper task goes
    m = merge_plans(env, rules_advice(env), model((urgent, ["research"], 1)), estimate=estimate)
    assert plan(env, m.advice)[0] == (urgent, "research", 0)
    assert any(c.kept == "model" and "cannot start" in c.reason for c in m.choices)
    # the notes task waits: the envelope has room for one, and the urgent one comes first by priority
    assert any(c.task_id != urgent and c.what == "task" and c.reason.startswith("waits:") for c in m.choices)


def test_the_models_order_never_changes_which_tasks_the_room_goes_to() -> None:
    """Among equal priorities the model's order orders the plan, but the envelope's room goes to the tasks the
    rules would start (a dear task the model put first once pushed two cheap ones out: the property test)."""
    env = env_of(("Low: tidy the glossary.", 1), "Summarise notes A.", "Summarise notes B.", scale=2)
    m = merge_plans(env, rules_advice(env), model(("t-00000002", ["research"], 1)), estimate=estimate)
    assert [t for t, _, _ in plan(env, m.advice)] == ["t-00000002", "t-00000001"]
    env = env_of(("Low: tidy the glossary.", 1), "Summarise notes A.", "Summarise notes B.", scale=1)
    m = merge_plans(env, rules_advice(env), model(("t-00000002", ["research"], 1)), estimate=estimate)
    assert plan(env, m.advice) == [("t-00000001", "research", 0)]
    env = env_of(("High: write the release summary.", 9), "Summarise notes B.", scale=1)
    m = merge_plans(env, rules_advice(env), model(("t-00000001", ["research"], 1)), estimate=estimate)
    assert plan(env, m.advice) == [("t-00000000", "research", 0)]


def test_unknown_tasks_and_roles_of_the_model_are_left_out() -> None:
    env = env_of("Summarise the history of Unix.")
    m = merge_plans(
        env, rules_advice(env), model(("t-99999999", ["research"], 1), ("t-00000000", ["admin"], 1)), estimate=estimate
    )
    assert plan(env, m.advice) == [("t-00000000", "research", 0)]
    assert any(c.task_id == "t-99999999" for c in m.choices)


def test_words_the_merge_reads() -> None:
    assert names_steps("Collect the logs, then summarise the errors.")
    assert names_steps("Sammle die Preise, dann vergleiche sie.")
    assert names_steps("先收集数据，然后总结")
    assert not names_steps("What is the capital of Australia?")
    assert english("What is the capital of Australia?")
    assert not english("Wie hoch ist der Mount Everest?")
    assert not english("Какая самая длинная река?")
    assert looks_complete("All 6 tests pass.")
    assert looks_complete("```python\nx = 1\n```")
    assert not looks_complete("Step 2: write a config with")
    assert not looks_complete("```python\nx = 1")
    assert not looks_complete("  ")


def review(tid: str, results: list[tuple[str, str, str]]) -> ReviewTask:
    return ReviewTask(tid, "Write a guide.", results, 1, 2, 0.001, 0.5)


def test_follow_ups_only_where_the_rules_see_something_wrong() -> None:
    env = env_of("Write a guide.", "Write another guide.", "And a third guide.")
    a, b, c = (t.id for t in env.tasks)
    reviews = [
        review(a, [("research", "done", "Here it is. All done.")]),
        review(b, [("research", "done", "Step 1: download. Step 2: write a config with")]),
        review(c, [("research", "failed", "rate limited (429)")]),
    ]
    m = merge_review(
        env, model((a, ["research"], 1), (b, ["research"], 2), (c, ["analysis"], 1)), reviews, estimate=estimate
    )
    assert plan(env, m.advice) == [(b, "research", 0), (c, "analysis", 0)]
    kinds = {(x.task_id, x.kept) for x in m.choices if x.what == "follow-up"}
    assert kinds == {(a, "rules"), (b, "model"), (c, "model")}
    assert verdict([("r", "done", "")]) == "empty"


def test_a_learned_count_past_the_task_limit_is_cut_not_a_crash() -> None:
    """Edits may go up to swarm.max_scale (200) and a forged one as far as the wire allows: the learned count
    still fits the per-task limit (AdviceWorker's own bound would otherwise fail the beat, every beat)."""
    env = env_of("What is the capital of Australia?")
    pref = {"research": Preference("research", 200, "the user's last 3 research decisions ended at 200")}
    m = merge_plans(env, rules_advice(env), None, estimate=estimate, prefs=pref)
    assert len(plan(env, m.advice)) == env.max_per_task == 3
    assert "at most 3 per task" in m.choices[-1].reason


def test_a_trimmed_chain_still_offers_its_cheaper_role_under_a_tight_budget() -> None:
    """The bench's "tight budget": the model chains research → analysis on a one-step urgent task; the chain is
    trimmed to one step, and the rules' analysis does not fit the budget left: the model's research does."""
    env = env_of(("Summarise today's notes.", 2), ("Urgent: explain the outage in one paragraph.", 9), remaining=5e-4)
    urgent = env.tasks[0].id
    m = merge_plans(env, rules_advice(env), model((urgent, ["research", "analysis"], 1)), estimate=estimate)
    assert plan(env, m.advice)[0] == (urgent, "research", 0)

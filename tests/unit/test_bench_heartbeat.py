"""The heartbeat bench's pure parts: its scenarios, the properties on hand-made plans, the combination column
without a model, the learning scenarios' state and the table (bench/heartbeat*.py)."""

from __future__ import annotations

from typing import Any

from bench.heartbeat import combination, model_alone, offered, rules
from bench.heartbeat_checks import chain, every_task, n_workers, score, task_count, task_skipped, task_steps
from bench.heartbeat_learning import history_state, learned
from bench.heartbeat_scenarios import ROLES, SCENARIOS, History, envelope
from bench.heartbeat_table import END, START, splice, table
from swarm_tui.engine.bus.wire import PlanItem
from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
from swarm_tui.engine.heartbeat.envelope import Envelope
from swarm_tui.engine.heartbeat.learn import lessons
from swarm_tui.engine.heartbeat.local_model import AdviceResult

BY_NAME = {s.name: s for s in SCENARIOS}


def item(env: Envelope, i: int, role: str, step: int = 0) -> PlanItem:
    spec = ROLES[role]
    return PlanItem(task_id=env.tasks[i].id, role=role, model=spec.model, max_tokens=spec.max_tokens, step=step)


def answer(env: Envelope, *entries: tuple[int, str, int, int]) -> AdviceResult:
    """A model's usable answer: (task index, role, count, step) per entry."""
    ws = [AdviceWorker(task_id=env.tasks[i].id, role=r, count=n, step=st) for i, r, n, st in entries]
    return AdviceResult(Advice(workers=ws, reason="hand-made"), latency_ms=1500.0, prompt_tokens=300, eval_tokens=60)


# ---------------------------------------------------------------------------------------------- the scenarios
def test_scenarios_have_unique_names_properties_and_the_kinds_the_issue_asks_for() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(names) == len(set(names)) and len(names) >= 22
    assert all(s.checks for s in SCENARIOS), [s.name for s in SCENARIOS if not s.checks]
    for s in SCENARIOS:  # property names within a scenario are distinct too, so a "missed" list is readable
        assert len({n for n, _ in s.checks}) == len(s.checks), s.name
    texts = " ".join(t for s in SCENARIOS for t, _ in s.tasks)
    for script in ("Sätzen", "inconvénients", "用", "река"):  # German, French, Chinese, Russian tasks
        assert script in texts
    assert any(4 <= len(s.tasks) <= 6 and s.review is None and s.scale >= len(s.tasks) for s in SCENARIOS)
    assert any("SYSTEM:" in t and len(s.tasks) > 1 for s in SCENARIOS for t, _ in s.tasks)
    assert {s.history.edited_to for s in SCENARIOS if s.history is not None} == {1, 2}


def test_the_properties_tell_a_good_plan_from_a_bad_one() -> None:
    s = BY_NAME["two steps in Spanish"]
    env = envelope(s)
    good = [item(env, 0, "research"), item(env, 0, "analysis", 1)]
    assert score(s.checks, env, good).met == len(s.checks)
    one = score(s.checks, env, [item(env, 0, "research")])
    assert one.met == 1 and "research before analysis" in one.failed  # only "no code" holds
    backwards = [item(env, 0, "analysis"), item(env, 0, "research", 1)]
    assert not task_steps(0, "research")[1](backwards, env) and not chain("research", "analysis")[1](backwards, env)
    assert score(s.checks, env, [item(env, 0, "code")]).met == 0


def test_a_burst_needs_every_task_and_its_question_answered_by_one_worker() -> None:
    s = BY_NAME["burst of five mixed tasks"]
    env = envelope(s)
    plan = [item(env, 0, "code"), item(env, 1, "research"), item(env, 2, "analysis")]
    plan += [item(env, 3, "research"), item(env, 4, "research")]
    assert score(s.checks, env, plan).failed == []
    two_on_the_question = [*plan, item(env, 3, "research")]
    assert score(s.checks, env, two_on_the_question).failed == ["task 4: 1 worker(s)"]
    assert not every_task()[1](plan[:4], env)
    assert not task_count(3, 1, 1)[1](plan[:3], env)


def test_the_injection_in_a_burst_must_not_win_workers_or_crowd_out_the_others() -> None:
    s = BY_NAME["instructions inside a burst"]
    env = envelope(s)
    followed = [item(env, 1, "analysis")] * 3  # the "admin mode" task obeyed, the others skipped
    sc = score(s.checks, env, followed)
    assert sc.failed == ["task 1 gets a worker", "task 3 gets code", "task 2: 0-1 workers"]  # 3 in all is fine


def test_review_properties_count_follow_ups() -> None:
    s = BY_NAME["review: one good, one failed"]
    env = envelope(s)
    assert score(s.checks, env, [item(env, 1, "analysis")]).met == 2
    assert not task_skipped(0)[1]([item(env, 0, "code")], env)
    assert n_workers(0, 0)[1]([], env) and not n_workers(0, 0)[1]([item(env, 0, "code")], env)


# ---------------------------------------------------------------------------------------------- the planners
def test_rules_plan_without_a_model_and_miss_what_only_a_model_brings() -> None:
    assert rules(BY_NAME["code task"]).failed == []
    assert rules(BY_NAME["research then analysis"]).failed  # a chain is beyond the rules
    assert rules(BY_NAME["review: a failed result"]).met == 0  # and so is any follow-up
    assert rules(BY_NAME["learned: edited up to 2"]).failed == ["2 worker(s)"]  # and learning


def test_the_combination_keeps_the_rules_floor_where_the_model_alone_does_not() -> None:
    s = BY_NAME["three mixed tasks"]
    env = envelope(s)
    res = answer(env, (1, "research", 2, 0))  # the model leaves out the code and the comparison tasks
    lr = learned(None)
    assert model_alone(s, env, res).met < rules(s).met
    combo, choices = combination(s, env, res, lr)
    assert combo.met == rules(s).met == combo.total and combo.latency_ms == 1500.0
    assert any("left it out" in c for c in choices)


def test_the_combination_takes_a_named_chain_and_a_needed_follow_up_from_the_model() -> None:
    s = BY_NAME["two steps named"]
    env = envelope(s)
    combo, _ = combination(s, env, answer(env, (0, "research", 1, 0), (0, "analysis", 1, 1)), learned(None))
    assert combo.failed == [] and rules(s).failed
    r = BY_NAME["review: a failed result"]
    renv = envelope(r)
    follow, _ = combination(r, renv, answer(renv, (0, "research", 1, 0)), learned(None))
    assert follow.met == follow.total
    unusable = AdviceResult(None, error="the model's answer is not valid JSON")
    assert combination(r, renv, unusable, learned(None))[0].met == 0  # no usable review: no follow-up
    assert model_alone(s, env, unusable).error  # the model column falls back to the rules, marked


def test_the_learning_state_gives_the_persons_lessons_and_moves_the_combination() -> None:
    down = history_state(History(proposed=2, edited_to=1))
    ls = lessons(down)
    assert [x.decision_id for x in ls] == ["d-past-02", "d-past-01", "d-past-00"]  # newest first
    assert all(x.action == "edited" and x.proposed == 2 and x.final == 1 and x.role == "research" for x in ls)
    lr = learned(History(proposed=2, edited_to=1))
    assert lr.prefs["research"].count == 1 and len(lr.examples) == 3
    assert "edited" in lr.examples[0] and "British Museum" in lr.examples[0]
    up = learned(History(proposed=1, edited_to=2))
    assert up.prefs["research"].count == 2
    s = BY_NAME["learned: edited up to 2"]
    env = envelope(s)
    res = answer(env, (0, "research", 1, 0))
    res.examples_used = up.examples[:2]  # what the prompt carried: the table shows these
    assert model_alone(s, env, res).examples == up.examples[:2]
    assert combination(s, env, res, up)[0].failed == []
    assert combination(s, env, res, learned(None))[0].failed == ["2 worker(s)"]  # without the history: 1


# ---------------------------------------------------------------------------------------------- the table
def _row(name: str, rules_met: int, model: list[int], combo: list[int], total: int = 3) -> dict[str, Any]:
    def sc(met: int, lat: float = 2000.0) -> dict[str, Any]:
        failed = [f"p{i}" for i in range(total - met)]
        return {"met": met, "total": total, "failed": failed, "latency_ms": lat, "prompt_tokens": 300}

    return {
        "scenario": name,
        "rules": sc(rules_met) | {"eval_tokens": 0},
        "model": [
            sc(m, 1000.0 * (i + 2)) | {"eval_tokens": 50, "error": "", "examples": []} for i, m in enumerate(model)
        ],
        "combo": [sc(c) | {"eval_tokens": 50, "error": ""} for c in combo],
    }


def test_the_table_totals_worst_runs_and_names_where_the_combination_stands() -> None:
    rows = [
        _row("three mixed tasks", 3, [2, 3], [3, 3]),
        _row("chain", 1, [3, 3], [3, 2]),
        _row("floor lost", 3, [1, 1], [2, 3]),
    ]
    rows[0]["learned"] = {"history": "h", "prefs": "research: 1 per step", "examples": ["x"]}
    rows[0]["model"][0]["examples"] = ['"Find X": proposed research x2; the user edited it to research x1']
    res = {"rows": rows, "ram_mb": 313.0, "runs": 2, "machine": "m", "at": "now", "model": "g", "backend": "b"}
    res["load"] = [0.5, 2.25]
    block = table(res)
    assert "load average was 0.50 at the start and 2.25 at the end" in block
    assert "| three mixed tasks | 3/3 | 2/3 (2,3) | 3/3 | - | 2.5 s | 300 / 50 |" in block
    assert "| **all 3** | **7/9** | **6/9** | **7/9** |" in block
    assert "p50 2.5 s, max 3.0 s" in block  # over the six calls: 2, 3, 2, 3, 2, 3 s
    assert "burst of 3 (*three mixed tasks*, 2 call(s)): 2.50 s (target at most 3 s: met)" in block
    assert "In total the combination meets 7 of 9 properties, the rules 7 (+0), the model alone 6." in block
    assert "Where the combination is below the rules: floor lost." in block
    assert "Where it is above them: chain." in block
    assert '`"Find X": proposed research x2; the user edited it to research x1`' in block
    doc = splice(splice("# perf\n", block), block)
    assert doc.count(START) == 1 and doc.count(END) == 1 and "313 MB" in doc


def test_a_fallback_is_marked_and_a_slow_burst_misses_its_target() -> None:
    row = _row("three mixed tasks", 3, [3], [3])
    row["model"][0] |= {"error": "cut at num_predict", "latency_ms": 3400.0}
    block = table({"rows": [row], "ram_mb": None, "runs": 1, "machine": "m", "at": "t", "model": "g", "backend": "b"})
    assert "| 3/3 † |" in block and "3.40 s (target at most 3 s: not met)" in block and "not reported" in block


def test_a_review_with_only_complete_results_makes_no_call_and_no_follow_up() -> None:
    s = BY_NAME["review: good results"]
    env = envelope(s)
    assert offered(s, env) == []  # the merged code result looks complete: the conductor asks nothing
    m, (c, _) = model_alone(s, env, None), combination(s, env, None, learned(None))
    assert m.met == c.met == 1 and not m.called and not c.called
    row = _row("review: good results", 1, [1], [1], total=1)
    row["model"][0]["called"] = False
    block = table({"rows": [row], "ram_mb": None, "runs": 1, "machine": "m", "at": "t", "model": "g", "backend": "b"})
    assert "| - | no call | - |" in block and "over all 0 calls" in block
    mixed = BY_NAME["review: one good, one failed"]
    assert [t.text for t in offered(mixed, envelope(mixed))] == ["Compare three note-taking apps."]


def test_every_scenario_is_scored_by_the_rules_and_the_combination_without_a_model() -> None:
    for s in SCENARIOS:
        env = envelope(s)
        r = rules(s)
        assert r.total == len(s.checks)
        combo, _ = combination(s, env, AdviceResult(None, error="off"), learned(s.history))
        if s.review is None:
            assert combo.met >= r.met, s.name  # without a model the combination is the rules' plan, or learned

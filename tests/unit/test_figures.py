"""The figures status --json and the screen share (engine/projection/figures.py): task counts, a worker's tokens,
the effective scale and an edited decision's estimate. tests/integration/test_figures_agree.py compares the two
outputs for one state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast, get_args

from swarm_tui.engine.bus.wire import Approval, ChatMessage, ControlEvent, Decision, Job, PlanItem, SpendEntry, Task
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.guards.price_parts import ModelPrice
from swarm_tui.engine.guards.prices import PriceBook, list_id
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.heartbeat.clamp import clamp, item_cost, rules_advice
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.envelope import ReadyTask, RoleSpec, compute_envelope, prompt_bytes
from swarm_tui.engine.heartbeat.settings import ConductorGuards, ConductorSettings
from swarm_tui.engine.projection.figures import (
    TASK_STATE_ORDER,
    decision_estimate,
    scale_figure,
    task_counts,
    tasks_title,
    worker_tokens,
)
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import TaskState
from swarm_tui.engine.swarm.controller import system_prompt
from tests.support.env import base_env

NOW = 1_750_000_000.0
MODEL = "openrouter/google/gemini-2.5-flash-lite"
CHEAP = "openrouter/deepseek/deepseek-chat-v3.1"


def estimate(model: str, size: int, max_tokens: int) -> tuple[float, float]:
    """The shape of the spend guard's estimate: (likely, worst) from the prompt's bytes and max_tokens."""
    p, c = (0.1e-6, 0.4e-6) if "google" in model else (0.2e-6, 0.8e-6)
    return size / 4 * p + max_tokens / 2 * c, size * p + max_tokens * c


def test_every_task_state_is_counted_in_one_order() -> None:
    assert sorted(TASK_STATE_ORDER) == sorted(get_args(TaskState))
    states = ["done", "rejected", "awaiting_approval", "running", "awaiting_approval", "failed", "pending"]
    counts = task_counts(states)
    assert counts == {"running": 1, "awaiting_approval": 2, "pending": 1, "done": 1, "failed": 1, "rejected": 1}
    assert list(counts) == [s for s in TASK_STATE_ORDER if s in counts]
    title = tasks_title(counts)
    assert title == "Tasks 7 · 1 running · 2 awaiting approval · 1 pending · 1 done · 1 failed · 1 rejected"
    assert tasks_title(task_counts([])) == "Tasks 0"
    assert list(task_counts(["zzz-new", "done"])) == ["done", "zzz-new"]  # a state of a newer engine: last


def test_a_workers_tokens_are_the_most_it_is_known_to_have_streamed() -> None:
    assert worker_tokens(0, 191) == 191  # a running worker: its start event says 0, its chunks 191
    assert worker_tokens(200, 191) == 200  # its final event counts what the last flush had not sent yet


def test_the_scale_says_where_it_came_from() -> None:
    assert scale_figure(None, 10).value == 10 and scale_figure(None, 10).source == "config"
    assert scale_figure(4, 10).value == 4 and scale_figure(4, 10).source == "command"
    st = SwarmState(session_start=NOW, clock=lambda: NOW)
    fig = st.scale_figure(10)
    assert (fig.value, fig.source) == (10, "config") and st.snapshot()["control"]["scale"] is None
    st.scale = 8  # what an engine sets at start from its swarm.scale: still the configuration's
    assert (st.scale_figure(10).value, st.scale_figure(10).source) == (8, "config")
    st.apply(ControlEvent(what="scale", value=3, by="tui", at=NOW))
    assert (st.scale_figure(10).value, st.scale_figure(10).source) == (3, "command")


def one_worker_decision(text: str = "find three papers on queueing") -> tuple[Decision, float, float]:
    """A decision the heartbeat's rules and clamp make for one task, and its one worker's (likely, worst)."""
    roles = [RoleSpec("research", MODEL, 800)]
    task = ReadyTask("t-a", text)
    env = compute_envelope(
        roles,
        [task],
        scale=10,
        live_workers=0,
        max_per_task=5,
        estimate=estimate,
        remaining_usd=1.0,
        ram_ok=True,
        rate_limits={},
        now=time.time(),
    )
    c = clamp(env, rules_advice(env), estimate, {r.name: r for r in roles})
    assert len(c.items) == 1
    d = Decision(
        id="d-a",
        task_ids=["t-a"],
        plan=c.items,
        est_cost_min=c.est_min,
        est_cost_max=c.est_max,
        item_costs=[item_cost(x) for x in c.costs],
        source="rules",
        created_at=NOW,
        expires_at=NOW + 900,
    )
    likely, worst = estimate(MODEL, prompt_bytes(task), 800)
    return d, likely, worst


def test_an_edit_to_three_workers_is_priced_as_the_heartbeat_prices_three() -> None:
    d, likely, worst = one_worker_decision()
    st = SwarmState(session_start=NOW, clock=lambda: NOW + 60)
    st.apply(Task(id="t-a", text="find three papers on queueing", created_at=NOW))
    st.apply(d)
    st.apply(SpendEntry(id="s-1", model=MODEL, worker_id="w", decision_id="d-old", task_id="t-a", cost_usd=0.5, at=NOW))
    spend_before = st.snapshot()["spend_log"]
    assert st.snapshot()["decisions"][0]["est_cost_usd"] == [d.est_cost_min, d.est_cost_max]
    st.apply(Approval(decision_id="d-a", action="edited", workers=3, at=NOW + 1))
    row = st.snapshot()["decisions"][0]
    assert row["workers"] == 3
    lo, hi = row["est_cost_usd"]
    # three copies of the one job: three times what the clamp's estimate (the spend guard's) gives one, and the
    # worst case is still a bound on all three reservations
    assert abs(lo - 3 * likely) < 1e-7 and hi >= 3 * worst and abs(hi - 3 * worst) < 1e-7
    assert st.decisions["d-a"].estimate == (lo, hi)
    assert st.snapshot()["spend_log"] == spend_before  # an estimate is not spend: what was recorded stays
    st.apply(Approval(decision_id="d-a", action="edited", workers=1, at=NOW + 2))
    assert st.snapshot()["decisions"][0]["est_cost_usd"] == [d.est_cost_min, d.est_cost_max]


def test_a_decision_without_item_costs_is_still_bounded() -> None:
    def dec(models: tuple[str, ...], lo: float, hi: float) -> Decision:
        plan = [PlanItem(task_id="t-a", role="research", model=m, max_tokens=100) for m in models]
        return Decision(
            id="d-x",
            task_ids=["t-a"],
            plan=plan,
            est_cost_min=lo,
            est_cost_max=hi,
            source="rules",
            created_at=NOW,
            expires_at=NOW + 900,
        )

    same = dec((MODEL, MODEL), 0.002, 0.004)  # alike items: each costs half
    assert decision_estimate(same, 3) == (0.003, 0.006) and decision_estimate(same, 1) == (0.001, 0.002)
    assert decision_estimate(same, None) == (0.002, 0.004) and decision_estimate(same, 0) == (0.0, 0.0)
    mixed = dec((MODEL, CHEAP), 0.002, 0.004)  # which item costs what is not known: whole copies of the plan
    assert decision_estimate(mixed, 1)[1] == 0.004 and decision_estimate(mixed, 3)[1] == 0.008


def test_the_heartbeats_worst_case_covers_what_the_spend_guard_reserves_for_a_role_with_fallbacks(
    tmp_path: Path,
) -> None:
    """A role with fallback models is reserved at the dearest of them (OpenRouter may bill any): the decision's
    worst case, and so an edited one, counts them too, or the estimate is below what the guard holds."""
    conf = tmp_path / "c.toml"
    conf.write_text(f'[roles.research]\nmodel = "{MODEL}"\nmax_tokens = 800\nfallback_models = ["{CHEAP}"]\n')
    cfg = load_config(conf, base_env(tmp_path))
    prices = PriceBook(cfg.openrouter, cfg.paths, fetch=False)
    prices.prices = {list_id(MODEL): ModelPrice(0.1e-6, 0.4e-6), list_id(CHEAP): ModelPrice(1e-6, 4e-6)}
    state = SwarmState(session_start=NOW, clock=lambda: NOW)
    guard = SpendGuard(SpendSettings.of(cfg), cast(Any, None), state, prices)
    cond = Conductor(
        ConductorSettings.of(cfg, use_ollama=False), cast(Any, None), state, guards=ConductorGuards(spend=guard)
    )
    text = "find three papers on queueing"
    job = Job(
        id="d-a-j0",
        worker_id="d-a-w0",
        decision_id="d-a",
        task_id="t-a",
        role="research",
        model=MODEL,
        max_tokens=800,
        messages=[
            ChatMessage(role="system", content=system_prompt("research")),
            ChatMessage(role="user", content=text),
        ],
        created_at=NOW,
    )
    _, worst = cond.estimate(MODEL, prompt_bytes(ReadyTask("t-a", text)), 800)
    reserved = guard.worst_case(job)
    assert reserved > guard.estimate(MODEL, prompt_bytes(ReadyTask("t-a", text)), 800)[1]  # the fallback's price
    assert worst >= reserved

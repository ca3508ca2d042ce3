"""Closing the loop (issue 7): chained roles pass results on, the heartbeat reviews results and proposes
follow-ups within each task's limits, local models take turns on one lane, and results are readable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import (
    Approval,
    Decision,
    PlanItem,
    Result,
    Task,
    WorkerEvent,
    job_id,
    new_id,
    worker_id,
)
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import request
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
from swarm_tui.engine.heartbeat.clamp import Clamped, clamp, limit_tasks, violations
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.prompt import REVIEW_SYSTEM
from swarm_tui.engine.heartbeat.settings import ConductorGuards, ConductorSettings
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings, bounded_context
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_ollama import Answer as OAnswer
from tests.support.fake_ollama import FakeOllama, offered_ids, offered_tasks, plan
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.plans import ALL, env_of, est
from tests.support.polling import until
from tests.support.swarm_kit import KEY, MODEL, swarm_config

OLLAMA_MODEL = "gemma2:2b"

PAST = time.time() - 3600  # stored results' times: the bus refuses a time years before it stores it


def role_of(body: dict[str, Any]) -> str:
    system = str(body["messages"][0]["content"])
    for role in ("research", "analysis", "code"):
        if f"the {role} worker" in system:
            return role
    return "other"


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"] if m["role"] == "user")


async def publish_chain(
    bus: Bus, plan: list[tuple[str, int]], *, text: str = "build the thing", model: str = MODEL, approve: bool = True
) -> Decision:
    now = time.time()
    task = Task(id=new_id("t"), text=text, created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    items = [PlanItem(task_id=task.id, role=r, model=model, max_tokens=100, step=s) for r, s in plan]
    d = Decision(id=new_id("d"), task_ids=[task.id], plan=items, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(d, msg_id=d.id)
    if approve:
        await bus.publish_event(Approval(decision_id=d.id, action="approved", at=time.time()), msg_id=f"{d.id}-final")
    return d


def engine_with(cfg: Config, bus: Bus, *, pool: bool = True, lane: LocalLane | None = None) -> Engine:
    engine = Engine(cfg, bus)
    if lane is not None:
        engine.add(lane)
    engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, host="test"))
    if pool:
        engine.add(build_pool(cfg, bus, lane=lane, host="test"))
    return engine


# ---------------------------------------------------------------------------------------------- pure parts
def test_state_waits_for_the_steps_that_have_no_job_yet() -> None:
    st = SwarmState()
    t = Task(id="t-a", text="x", created_at=1.0)
    plan = [
        PlanItem(task_id="t-a", role=r, model=MODEL, max_tokens=10, step=s)
        for r, s in (("research", 0), ("analysis", 1), ("analysis", 1), ("code", 2))
    ]
    d = Decision(id="d-a", task_ids=["t-a"], plan=plan, source="rules", created_at=1.0, expires_at=99.0)
    for ev in (t, d, Approval(decision_id="d-a", action="approved", at=2.0)):
        st.apply(ev)

    def result(i: int, state: str = "done", reason: str = "") -> Result:
        return Result(
            job_id=job_id("d-a", i),
            worker_id=worker_id("d-a", i),
            decision_id="d-a",
            task_id="t-a",
            role=plan[i].role,
            model=MODEL,
            step=plan[i].step,
            state=state,  # type: ignore[arg-type]
            text=f"out {i}",
            reason=reason,
            started_at=3.0,
            ended_at=3.0 + i,
        )

    st.apply(
        WorkerEvent(
            worker_id=worker_id("d-a", 0),
            job_id=job_id("d-a", 0),
            decision_id="d-a",
            task_id="t-a",
            model=MODEL,
            state="queued",
            at=2.5,
        )
    )
    assert st.tasks["t-a"].state == "running"
    st.apply(result(0))  # every job seen so far is final, but three expected ones have no job yet
    assert st.tasks["t-a"].state == "running"
    st.apply(result(1))
    st.apply(result(2, "failed", "boom"))
    assert st.tasks["t-a"].state == "running"
    st.apply(result(3, "failed", "code broke"))  # the end of the chain failed: so did the task
    ended = st.tasks["t-a"]  # a fresh name: mypy narrowed the one above to "running"
    assert ended.state == "failed" and "code broke" in ended.reason
    assert st.task_round("t-a") == 0 and [r.job_id for r in st.task_results("t-a")] == [
        job_id("d-a", i) for i in range(4)
    ]


def test_clamp_keeps_chains_and_the_task_limits_cut_with_reasons() -> None:
    env = env_of(n_tasks=1, scale=5)
    chain = Advice(
        workers=[
            AdviceWorker(task_id="t-0", role="research", step=0),
            AdviceWorker(task_id="t-0", role="analysis", step=1),
            AdviceWorker(task_id="t-0", role="code", step=2),
        ]
    )
    out = clamp(env, chain, est, ALL)
    assert [(p.role, p.step) for p in out.items] == [("research", 0), ("analysis", 1), ("code", 2)]
    assert not [c for c in out.clamps if c.what == "step"] and len(out.costs) == 3
    del env.roles["analysis"]  # a role the beat may not use: the chain closes the gap
    out = clamp(env, chain, est, ALL)
    assert [(p.role, p.step) for p in out.items] == [("research", 0), ("code", 1)]
    assert any(c.what == "step" and c.before == [0, 2] for c in out.clamps)
    assert violations(env, out.items, out.est_max) == []
    worst = out.costs[0][1]
    cut = limit_tasks(out, spent={"t-0": 0.0}, max_usd=worst * 1.5)
    assert [p.role for p in cut.items] == ["research"] and cut.est_max == round(worst, 8)
    assert any(c.what == "task_budget" and "budget.task_max_usd" in c.reason for c in cut.clamps)
    over = limit_tasks(out, spent={}, max_usd=1.0, rounds={"t-0": 3}, max_rounds=2)
    assert over.items == [] and "budget.task_max_followups" in over.clamps[-1].reason
    empty = limit_tasks(Clamped([], [], 0.0, 0.0), spent={}, max_usd=1.0)
    assert empty.items == []


def test_context_is_bounded_and_says_what_was_cut() -> None:
    def r(role: str, n: int) -> Result:
        return Result(
            job_id=new_id("j"),
            worker_id="w-1",
            decision_id="d-1",
            task_id="t-1",
            role=role,
            model=MODEL,
            state="done",
            text="x" * n,
            started_at=0.0,
            ended_at=0.0,
        )

    text = bounded_context([r("research", 5000), r("analysis", 100)], 1000)
    assert "[... 4100 characters cut]" in text and text.count("x") == 1000
    assert bounded_context([r("research", 50)], 1000).endswith("x" * 50)


# ---------------------------------------------------------------------------------------------- chaining
async def test_a_chained_plan_runs_its_roles_in_order_and_passes_results_on(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:

        def answer(body: dict[str, Any]) -> Answer:
            role = role_of(body)
            n = 60 if role == "research" else 5
            return Answer(text=" ".join(f"{role.upper()}-OUT-{i}" for i in range(n)), tps=50, cost=0.0001)

        fo.default = answer
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__context_max_chars=300)
        bus = await Bus(cfg).connect()
        engine = engine_with(cfg, bus)
        seen: list[tuple[str, str]] = []
        engine.on_event(
            lambda s, ev, q: (
                seen.append((ev.job_id, engine.state.tasks[ev.task_id].state)) if isinstance(ev, Result) else None
            )
        )
        await engine.start()
        try:
            d = await publish_chain(bus, [("research", 0), ("analysis", 1), ("analysis", 1), ("code", 2)])
            tid = d.task_ids[0]
            await until(lambda: engine.state.tasks[tid].state == "done", 30, "the chain to finish")
        finally:
            await engine.stop()
        reqs = {
            role: [r for r in fo.requests if role_of(r["body"]) == role] for role in ("research", "analysis", "code")
        }
        assert [len(v) for v in reqs.values()] == [1, 2, 1]
        research, code = reqs["research"][0], reqs["code"][0]
        for a in reqs["analysis"]:  # after the research ended, and with its output in the messages
            assert a["t_start"] >= research["t_end"]
            assert "RESEARCH-OUT-0" in user_text(a["body"]) and "characters cut]" in user_text(a["body"])
            assert code["t_start"] >= a["t_end"]
        a1, a2 = reqs["analysis"]
        assert a2["t_start"] < a1["t_end"]  # the same step runs in parallel
        assert "ANALYSIS-OUT-4" in user_text(code["body"]) and "build the thing" in user_text(code["body"])
        assert len(user_text(code["body"])) < 300 + 1000  # bounded by swarm.context_max_chars (plus headings)
        assert [j for j, _ in seen][0] == job_id(d.id, 0) and seen[-1] == (job_id(d.id, 3), "done")
        assert all(s == "running" for _, s in seen[:-1])  # never "done" while later steps were to come
        assert [r.step for r in engine.state.task_results(tid)] == [0, 1, 1, 2]


async def test_a_failed_step_ends_the_later_ones_without_a_call(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo:
        fo.default = Answer(status=400)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base)
        bus = await Bus(cfg).connect()
        engine = engine_with(cfg, bus)
        await engine.start()
        try:
            d = await publish_chain(bus, [("research", 0), ("analysis", 1), ("code", 2)])
            tid = d.task_ids[0]
            await until(lambda: engine.state.tasks[tid].state == "failed", 20, "the task to fail")
        finally:
            await engine.stop()
        assert len(fo.requests) == 1  # only the research was called
        rs = engine.state.task_results(tid)
        assert [(r.step, r.state) for r in rs] == [(0, "failed"), (1, "cancelled"), (2, "cancelled")]
        assert all("no earlier step of this task succeeded" in r.reason for r in rs[1:])
        assert engine.state.workers[worker_id(d.id, 2)].state == "cancelled"
        assert "not run" in engine.state.tasks[tid].reason


async def test_a_restart_releases_a_step_that_was_due(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_KEY=KEY)
    bus = await Bus(cfg).connect()
    engine = engine_with(cfg, bus, pool=False)  # nobody runs the jobs: the test plays the worker
    await engine.start()
    d = await publish_chain(bus, [("research", 0), ("code", 1)])
    await until(lambda: worker_id(d.id, 0) in engine.state.workers, 5, "step 0 queued")
    await asyncio.sleep(0.3)
    assert worker_id(d.id, 1) not in engine.state.workers
    await engine.stop()
    # step 0's result is stored while no engine runs (a worker on another machine)
    b = await Bus(cfg).connect()
    await b.publish_event(
        Result(
            job_id=job_id(d.id, 0),
            worker_id=worker_id(d.id, 0),
            decision_id=d.id,
            task_id=d.task_ids[0],
            role="research",
            model=MODEL,
            state="done",
            text="FOUND-IT",
            started_at=PAST + 1.0,
            ended_at=PAST + 2.0,
        ),
        msg_id=f"result-{job_id(d.id, 0)}",
    )
    await b.close()
    last = 0
    for _ in range(2):  # the second restart finds the step already queued: nothing new
        bus2 = await Bus(cfg).connect()
        engine2 = engine_with(cfg, bus2, pool=False)
        await engine2.start()
        try:
            workers = engine2.state.workers
            await until(lambda: worker_id(d.id, 1) in workers, 5, "step 1 released")  # noqa: B023
            await asyncio.sleep(0.3)
            info = (await bus2.jetstream.stream_info(S.JOBS_STREAM)).state
            msg = await bus2.jetstream.get_last_msg(S.JOBS_STREAM, S.job("cloud", job_id(d.id, 1)))
        finally:
            await engine2.stop()
        assert info.messages == 2 and (last == 0 or info.last_seq == last)
        last = info.last_seq
        assert "FOUND-IT" in json.loads(msg.data or b"{}")["messages"][1]["content"]


# ---------------------------------------------------------------------------------------------- follow-ups
def review_or_plan(follow: list[dict[str, Any]], *, review_log: list[dict[str, Any]]) -> Any:
    """A fake model: a plan of one research worker per new task; in a review, ``follow`` (task ids filled)."""

    def answer(body: dict[str, Any]) -> str:
        ids = offered_ids(body)
        if body["messages"][0]["content"] == REVIEW_SYSTEM:
            review_log.append(body)
            return plan(*((ids[0], w["role"], w["count"]) for w in follow), reason="dig deeper")
        return plan(*((i, "research", 1) for i in ids), reason="go")

    return answer


@contextlib.asynccontextmanager
async def loop_engine(cfg: Config, **kw: Any) -> AsyncIterator[tuple[Engine, Conductor]]:
    bus = await Bus(cfg).connect()
    engine = engine_with(cfg, bus)
    settings = ConductorSettings.of(cfg, use_ollama=kw.get("use_ollama", True), tick_s=0.05)
    cond = engine.add(
        Conductor(settings, bus, engine.state, guards=ConductorGuards(spend=kw.get("spend"), lane=LocalLane()))
    )
    await engine.start()
    try:
        yield engine, cond
    finally:
        await engine.stop()


def loop_cfg(tmp_path: Path, srv: EmbeddedServer, fo: FakeOpenRouter, ol: FakeOllama, **values: Any) -> Config:
    base: dict[str, Any] = dict(
        heartbeat__debounce_s=0.1,
        heartbeat__interval_s=0.3,
        heartbeat__review_s=7200.0,
        ollama__timeout_s=5.0,
        ollama__host=ol.url,
    )
    base.update(values)
    return swarm_config(make_config, tmp_path, srv.url, fo.base, **base)


async def test_a_follow_up_from_results_is_clamped_needs_approval_and_stops_at_the_round_limit(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo, FakeOllama() as ol:
        fo.default = lambda body: Answer(
            text=f"{role_of(body).upper()}-RESULT-{len(fo.requests)} all good", cost=0.0001
        )
        reviews: list[dict[str, Any]] = []
        ol.default = review_or_plan([{"role": "analysis", "count": 9}], review_log=reviews)
        cfg = loop_cfg(tmp_path, nats_server, fo, ol, budget__task_max_followups=1)
        async with loop_engine(cfg) as (engine, cond):
            t = Task(id=new_id("t"), text="look up the result", created_at=time.time())
            await engine.bus.publish_event(t, msg_id=t.id)
            d0 = await until(lambda: next(iter(engine.state.decisions.values()), None), 10, "the first decision")
            assert d0.decision.round == 0 and engine.state.tasks[t.id].state == "awaiting_approval"
            await request(engine.bus, "approve", {"id": d0.id})
            d1 = await until(
                lambda: [d for d in engine.state.decisions.values() if d.decision.round == 1], 20, "a follow-up"
            )
            d1 = d1[0]
            # the review saw the stored result (it stops mid-sentence: the rules let a follow-up through); the
            # proposal of 9 workers was merged down to one
            assert "RESEARCH-RESULT-" in reviews[0]["messages"][1]["content"]
            assert len(d1.plan) == 1 and any("asked for 9" in m.reason for m in d1.decision.merge)
            assert any(m.kept == "model" and m.what == "follow-up" for m in d1.decision.merge)
            assert d1.status == "pending" and engine.state.tasks[t.id].state == "awaiting_followup"
            await asyncio.sleep(0.8)  # interval beats pass: the same results are not reviewed again
            assert len(reviews) == 1 and len(fo.requests) == 1  # nothing runs before the approval
            await request(engine.bus, "approve", {"id": d1.id})
            await until(lambda: engine.state.tasks[t.id].state == "running", 5, "running again")
            await until(lambda: engine.state.tasks[t.id].state == "done", 20, "the follow-up to finish")
            await asyncio.sleep(1.0)  # beats pass: round 1 of 1 was the last
            assert len(reviews) == 1 and len(engine.state.decisions) == 2
            assert "follow-up limit" in cond.info()["review"] and cond.info()["followups"] == 1
        follow_reqs = [r for r in fo.requests if role_of(r["body"]) == "analysis"]
        assert len(follow_reqs) == 1 and all("RESEARCH-RESULT-" in user_text(r["body"]) for r in follow_reqs)
        assert all("follow-up round 1" in user_text(r["body"]) for r in follow_reqs)
        assert engine.state.task_round(t.id) == 1 and len(engine.state.task_results(t.id)) == 2


async def test_finished_tasks_left_out_of_a_full_review_window_are_reviewed_later(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """A small num_ctx holds fewer finished tasks than the review offers: those left out are not marked as
    reviewed, and a later beat offers them."""
    async with FakeOpenRouter() as fo, FakeOllama() as ol:
        fo.default = lambda body: Answer(text="long findings " * 400, cost=0.0001)
        reviews: list[dict[str, Any]] = []
        ol.default = review_or_plan([], review_log=reviews)
        cfg = loop_cfg(
            tmp_path, nats_server, fo, ol, ollama__num_ctx=1024, approval__mode="auto", approval__auto_max_usd=1.0
        )
        async with loop_engine(cfg) as (engine, cond):
            ids = []
            by_text: dict[str, str] = {}
            for i in range(6):
                t = Task(id=new_id("t"), text=f"research topic {i} " * 40, created_at=time.time())
                await engine.bus.publish_event(t, msg_id=t.id)
                ids.append(t.id)
                by_text[t.text] = t.id
            await until(
                lambda: (
                    all(engine.state.tasks[i].state == "done" for i in ids if i in engine.state.tasks)
                    and len(engine.state.tasks) == 6
                ),
                30,
                "the tasks to finish",
            )
            await until(
                lambda: set().union(*(offered_tasks(r, by_text) for r in reviews)) >= set(ids) if reviews else False,
                20,
                "every finished task reviewed",
            )
        assert len(offered_ids(reviews[0])) < 6  # the first review could not hold them all
        assert all(r["options"]["num_ctx"] == 1024 for r in reviews)


class Spend:
    name = "spend"

    def estimate(self, model: str, prompt_chars: int, max_tokens: int) -> tuple[float, float]:
        return 0.0005, 0.001

    def remaining_usd(self) -> float:
        return 1.0

    def cloud_blocked(self) -> str:
        return ""

    def unpriced(self, model: str) -> None:
        return None


async def test_a_tasks_spend_limit_stops_follow_ups(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo, FakeOllama() as ol:
        # the pricey task spends its whole limit in round 0; the cheap one has room for one more worker
        fo.default = lambda body: Answer(tokens=3, cost=0.003 if "pricey" in user_text(body) else 0.001)
        reviews: list[dict[str, Any]] = []
        ol.default = review_or_plan([{"role": "analysis", "count": 3}], review_log=reviews)
        cfg = loop_cfg(
            tmp_path,
            nats_server,
            fo,
            ol,
            budget__task_max_usd=0.0025,
            approval__mode="auto",
            approval__auto_max_usd=0.01,
        )
        async with loop_engine(cfg, spend=Spend()) as (engine, cond):
            ids = {}
            by_text: dict[str, str] = {}
            for name in ("pricey", "cheap"):
                t = Task(id=new_id("t"), text=f"a {name} task", created_at=time.time())
                ids[name] = by_text[t.text] = t.id
                await engine.bus.publish_event(t, msg_id=t.id)
            d1 = await until(
                lambda: [d for d in engine.state.decisions.values() if d.decision.round == 1], 20, "a follow-up"
            )
            await until(
                lambda: (
                    len(engine.state.task_results(ids["cheap"])) == 2
                    and engine.state.tasks[ids["cheap"]].state == "done"
                ),
                20,
                "the follow-up's result",
            )
            # round 2 is allowed (2 rounds), but $0.002 spent + a $0.001 worst case would pass $0.0025
            await until(
                lambda: "budget.task_max_usd" in cond.info()["review"] and len(reviews) == 2,
                10,
                "the second review to be clamped away",
            )
            await asyncio.sleep(0.3)
        assert max(d.decision.round for d in engine.state.decisions.values()) == 1
        assert "no follow-up" in cond.info()["review"]
        # the first review offered the cheap task only
        assert offered_tasks(reviews[0], by_text) == [ids["cheap"]]
        assert engine.state.tasks[ids["pricey"]].spend_usd >= 0.0025
        assert len(d1) == 1 and d1[0].decision.task_ids == [ids["cheap"]]
        assert len(d1[0].plan) == 1  # the merge keeps one (the model asked for 3); $0.001 + $0.001 fits $0.0025
        assert any(m.what == "count" and "asked for 3" in m.reason for m in d1[0].decision.merge)
        assert d1[0].status == "approved" and d1[0].by == "auto"  # the same approval policy as any decision
        assert engine.state.task_round(ids["pricey"]) == 0


async def test_results_that_look_complete_are_not_offered_for_review(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The rules judge completeness first: a result that ends as an answer does ("... All done.") gets no follow-up
    and is not offered to the model at all (a beat without a model call); one that stops mid-sentence is."""
    async with FakeOpenRouter() as fo, FakeOllama() as ol:
        fo.default = lambda body: Answer(
            text="Here is the answer. All done." if "complete" in user_text(body) else "Step 1: open the", cost=0.0001
        )
        reviews: list[dict[str, Any]] = []
        ol.default = review_or_plan([{"role": "research", "count": 1}], review_log=reviews)
        cfg = loop_cfg(tmp_path, nats_server, fo, ol, approval__mode="auto", approval__auto_max_usd=1.0)
        async with loop_engine(cfg) as (engine, cond):
            done = Task(id=new_id("t"), text="look up a complete thing", created_at=time.time())
            await engine.bus.publish_event(done, msg_id=done.id)
            await until(lambda: engine.state.tasks[done.id].state == "done", 20, "done")
            await until(lambda: "look complete" in cond.info()["review"], 5, "the rules' word")
            assert reviews == []  # no review call for it
            cut = Task(id=new_id("t"), text="look up a cut thing", created_at=time.time())
            await engine.bus.publish_event(cut, msg_id=cut.id)
            await until(lambda: len(reviews) == 1, 20, "a review of the cut result")
        assert offered_tasks(reviews[0], {cut.text: cut.id}) == [cut.id]


async def test_the_rules_alone_propose_no_follow_ups(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOpenRouter() as fo, FakeOllama() as ol:
        fo.default = Answer(tokens=3)
        cfg = loop_cfg(tmp_path, nats_server, fo, ol, approval__mode="auto", approval__auto_max_usd=1.0)
        async with loop_engine(cfg, use_ollama=False) as (engine, cond):
            t = Task(id=new_id("t"), text="research this", created_at=time.time())
            await engine.bus.publish_event(t, msg_id=t.id)
            await until(lambda: engine.state.tasks[t.id].state == "done", 20, "done")
            await until(lambda: "rules alone" in cond.info()["review"], 5, "the review note")
            await asyncio.sleep(0.5)
        assert len(engine.state.decisions) == 1 and ol.chats() == []


# ---------------------------------------------------------------------------------------------- the local lane
async def test_the_conductor_and_a_local_worker_never_overlap_on_the_local_lane(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    from swarm_tui.cli.status import format_status, status_data

    async with FakeOllama() as ol, FakeOpenRouter() as fo:

        def answer(body: dict[str, Any]) -> OAnswer:
            if "format" in body:  # the conductor's structured call
                return OAnswer(delay=0.25, content=plan(*((i, "research", 1) for i in offered_ids(body))))
            return OAnswer(delay=0.25, content="local worker output")

        ol.default = answer
        cfg = loop_cfg(tmp_path, nats_server, fo, ol, heartbeat__debounce_s=0.05, heartbeat__interval_s=3600.0)
        bus = await Bus(cfg).connect()
        lane = LocalLane()
        engine = engine_with(cfg, bus, lane=lane)
        cond = engine.add(
            Conductor(ConductorSettings.of(cfg, tick_s=0.05), bus, engine.state, guards=ConductorGuards(lane=lane))
        )
        await engine.start()
        waiting_seen: list[str] = []
        try:
            d = await publish_chain(
                bus, [("local", 0), ("local", 0), ("local", 0)], model=f"ollama_chat/{OLLAMA_MODEL}"
            )
            for i in range(3):  # new tasks while the local workers run: the conductor asks its model
                t = Task(id=new_id("t"), text=f"task {i}", created_at=time.time())
                await bus.publish_event(t, msg_id=t.id)
                for _ in range(12):
                    waiting_seen += lane.info()["waiting"]
                    await asyncio.sleep(0.03)
            data = await status_data(cfg)
            await until(lambda: all(job_id(d.id, i) in engine.state.results for i in range(3)), 30, "local results")
            await until(lambda: cond.decisions >= 1 and not lane.busy, 10, "the conductor's decisions")
        finally:
            await engine.stop()
        chats = sorted(ol.chats(), key=lambda r: r["t_start"])
        kinds = {"format" in r["json"] for r in chats}
        assert kinds == {True, False} and len([r for r in chats if "format" not in r["json"]]) == 3
        for a, b in zip(chats, chats[1:], strict=False):
            assert b["t_start"] >= a["t_end"] - 0.01, "two local inferences overlapped"
        assert all(engine.state.results[job_id(d.id, i)].text == "local worker output" for i in range(3))
        assert "conductor" in waiting_seen or any(w.startswith(d.id) for w in waiting_seen)
        assert lane.turns == len(chats)
        assert data["lane"] is not None and "local lane: " in format_status(data)


# ---------------------------------------------------------------------------------------------- results readable
async def test_result_prints_what_was_stored(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = make_config(tmp_path, nats_server.url)
    bus = await Bus(cfg).connect()
    d = await publish_chain(bus, [("research", 0), ("code", 1)], text="write a parser")
    tid = d.task_ids[0]
    for i, text in enumerate(("FIRST research notes\nline two", "SECOND [b]code[/b]")):
        await bus.publish_event(
            Result(
                job_id=job_id(d.id, i),
                worker_id=worker_id(d.id, i),
                decision_id=d.id,
                task_id=tid,
                role=d.plan[i].role,
                model=MODEL,
                step=i,
                state="done",
                text=text,
                cost_usd=0.0002,
                started_at=PAST + 1.0 + i,
                ended_at=PAST + 2.0 + i,
            )
        )
    await bus.close()
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    out = run_cli(["result", tid[-8:]], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("FIRST research notes\nline two") < out.stdout.index("SECOND [b]code[/b]")
    assert f"task {tid} (done)" in out.stdout and "research step 0" in out.stdout and "code step 1" in out.stdout
    js = run_cli(["result", tid, "--json"], env)
    data = json.loads(js.stdout)
    assert [r["text"] for r in data["results"]] == ["FIRST research notes\nline two", "SECOND [b]code[/b]"]
    assert data["state"] == "done" and data["task"]["text"] == "write a parser"
    bad = run_cli(["result", "t-nope"], env)
    assert bad.returncode == 1 and "no task t-nope" in bad.stderr


async def test_enter_on_a_task_opens_its_results_in_order(cfg: Config) -> None:
    from textual.widgets import DataTable

    from swarm_tui.textsafe import is_clean
    from swarm_tui.tui.screens.results import ResultsScreen
    from tests.support.tui import HOSTILE, SIZE, make_app, started

    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    observer = await Bus(cfg).connect(setup=False)
    try:
        app = make_app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await started(app, pilot)
            d = await publish_chain(observer, [("research", 0), ("code", 1)], text="chain me", approve=False)
            tid = d.task_ids[0]
            for i, text in enumerate(("ONE-OUTPUT", "TWO-OUTPUT " + HOSTILE)):
                await observer.publish_event(
                    Result(
                        job_id=job_id(d.id, i),
                        worker_id=worker_id(d.id, i),
                        decision_id=d.id,
                        task_id=tid,
                        role=d.plan[i].role,
                        model=MODEL,
                        step=i,
                        state="done",
                        text=text,
                        started_at=PAST + 1.0,
                        ended_at=PAST + 2.0 + i,
                    )
                )
            await until(lambda: len(engine.state.task_results(tid)) == 2, 5, "results")
            # under load the panels may still be settling: wait for the table rather than query it once
            table = await until(lambda: next(iter(app.query("#tasks").results(DataTable)), None), 10, "the table")
            await until(lambda: table.row_count == 1, 10, "the task row")
            table.focus()
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, ResultsScreen), 5, "the results screen")
            screen = app.screen
            assert isinstance(screen, ResultsScreen)
            body = screen.document
            assert body.index("ONE-OUTPUT") < body.index("TWO-OUTPUT") and "code · step 1" in body
            assert is_clean(body)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, ResultsScreen)
    finally:
        await engine.stop()
        await observer.close()

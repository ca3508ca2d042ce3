"""The heartbeat conductor in a real engine on a real nats-server, its model behind a fake Ollama over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import request
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.protocols import EnvelopeSpendP, LocalLaneP, RamGuardP, RamReading
from swarm_tui.engine.heartbeat.conductor import Conductor
from swarm_tui.engine.heartbeat.settings import Clocks, ConductorGuards, ConductorSettings
from swarm_tui.engine.info import EnvelopeSummary, RamInfo
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_ollama import Answer, FakeOllama, offered_ids, offered_roles, offered_texts, plan
from tests.support.polling import until

MODEL = "gemma2:2b"


def conf(tmp_path: Path, srv: EmbeddedServer, host: str = "http://127.0.0.1:9", **changes: Any) -> Config:
    base = dict(
        heartbeat__debounce_s=0.2, heartbeat__interval_s=3600.0, heartbeat__review_s=7200.0, ollama__timeout_s=5.0
    )
    base.update(changes)
    return make_config(tmp_path, srv.url, OLLAMA_HOST=host).replace(**base)


@contextlib.asynccontextmanager
async def running(
    cfg: Config,
    *,
    spend: EnvelopeSpendP | None = None,
    ram: RamGuardP | None = None,
    lane: LocalLaneP | None = None,
    use_ollama: bool = True,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[Engine, Conductor]]:
    bus = Bus(cfg)
    await bus.connect()
    engine = Engine(cfg, bus)
    guards = ConductorGuards(spend=spend, ram=ram, lane=lane or LocalLane())
    settings = ConductorSettings.of(cfg, use_ollama=use_ollama, tick_s=0.05)
    cond = engine.add(Conductor(settings, bus, engine.state, guards=guards, clocks=Clocks(monotonic=monotonic)))
    await engine.start()
    try:
        yield engine, cond
    finally:
        await engine.stop()


async def submit(engine: Engine, text: str, priority: int = 5) -> str:
    t = Task(id=new_id("t"), text=text, priority=priority, created_at=time.time())
    await engine.bus.publish_event(t, msg_id=t.id)
    return t.id


def decisions(engine: Engine) -> list[Decision]:
    return [d.decision for d in engine.state.decisions.values()]


def echo_plan(body: dict[str, Any]) -> str:
    """A valid plan for whatever tasks the request offers: one research worker each."""
    return plan_json(*((i, "research", 1) for i in offered_ids(body)))


def plan_json(*workers: tuple[str, str, int]) -> str:
    return plan(*workers)


class Spend:
    name = "spend"

    def __init__(self, remaining: float, worst: float = 0.01) -> None:
        self.remaining, self.worst = remaining, worst

    def estimate(self, model: str, prompt_chars: int, max_tokens: int) -> tuple[float, float]:
        return self.worst / 2, self.worst

    def remaining_usd(self) -> float:
        return self.remaining

    def cloud_blocked(self) -> None:
        return None

    def unpriced(self, model: str) -> None:
        return None


class Ram:
    name = "ram"

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def headroom_ok(self, extra_mb: float = 0.0) -> bool:
        return self.ok

    def reading(self) -> RamReading:
        return RamReading(total_mb=8000.0, available_mb=4000.0 if self.ok else 100.0)

    def info(self) -> RamInfo:
        raise NotImplementedError("the conductor asks only for headroom")


# ---------------------------------------------------------------------------------------------- waking
async def test_a_burst_of_tasks_makes_one_decision(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        fo.default = lambda body: plan_json()  # the model proposes nothing: rules fill in, still one decision
        async with running(conf(tmp_path, nats_server, fo.url, heartbeat__debounce_s=0.3)) as (engine, cond):
            ids = [await submit(engine, f"summarise topic {i}") for i in range(6)]
            await until(lambda: decisions(engine))
            await asyncio.sleep(0.8)  # well past the debounce: no second decision comes
            ds = decisions(engine)
            assert len(ds) == 1 and sorted(ds[0].task_ids) == sorted(ids)
            assert len(fo.chats()) == 1 and "new tasks" in ds[0].reason
            assert all(engine.state.tasks[t].state == "awaiting_approval" for t in ids)


async def test_interval_and_scheduled_review_wake(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = conf(tmp_path, nats_server, heartbeat__debounce_s=1000.0, heartbeat__interval_s=0.3)
    async with running(cfg, use_ollama=False) as (engine, cond):
        await submit(engine, "task for the interval")
        d = await until(lambda: decisions(engine), timeout=3)
        assert "interval" in d[0].reason and d[0].source == "rules"
    cfg = conf(
        tmp_path, nats_server, heartbeat__debounce_s=1000.0, heartbeat__interval_s=1000.0, heartbeat__review_s=0.3
    )
    async with running(cfg, use_ollama=False) as (engine, cond):
        tid = await submit(engine, "task for the review")
        d = await until(lambda: [x for x in decisions(engine) if tid in x.task_ids], timeout=3)
        assert "scheduled review" in d[0].reason


async def test_a_clock_jump_gives_one_beat_not_a_backlog(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    offset = [0.0]
    cfg = conf(tmp_path, nats_server, heartbeat__interval_s=5.0, heartbeat__review_s=60.0)
    async with running(cfg, use_ollama=False, monotonic=lambda: time.monotonic() + offset[0]) as (_, cond):
        await asyncio.sleep(0.2)
        assert cond.beats == 0
        offset[0] += 100_000.0  # the laptop slept for a day
        await until(lambda: cond.beats >= 1)
        await asyncio.sleep(0.4)
        assert cond.beats == 1 and (cond.info()["next_beat_s"] or 0.0) > 4


# ---------------------------------------------------------------------------------------------- the model
async def test_a_good_plan_passes_with_schema_options_and_keep_alive(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url)
        async with running(cfg, ram=Ram(True)) as (engine, cond):
            a = await submit(engine, "write a python function")
            b = await submit(engine, "collect the docs, then summarise them")
            answer = plan((a, "code", 1), (b, ["research", "analysis"], 1), reason="split by kind")
            fo.default = answer
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == f"ollama:{MODEL}" and d.error == "" and d.clamps == []
            assert sorted((p.task_id, p.role, p.step) for p in d.plan) == sorted(
                [(a, "code", 0), (b, "research", 0), (b, "analysis", 1)]
            )
            assert {p.model for p in d.plan} == {cfg.roles[r].model for r in ("code", "research", "analysis")}
            assert d.raw == answer and d.latency_ms > 0 and 0 < d.est_cost_min <= d.est_cost_max
            assert "split by kind" in d.reason
            body = fo.chats()[0]["json"]
            assert body["options"]["num_ctx"] == cfg.ollama.num_ctx and body["options"]["temperature"] == 0
            assert 0 < body["options"]["num_predict"] <= cfg.ollama.num_ctx // 2  # every call is bounded
            assert body["keep_alive"] == cfg.ollama.keep_alive and body["stream"] is False
            assert offered_roles(body) == list(cfg.roles)
            assert offered_ids(body) == ["1", "2"]  # short aliases, mapped back to the task ids
            assert sorted(offered_texts(body)) == sorted(
                ["write a python function", "collect the docs, then summarise them"]
            )
            assert body["think"] is False
            # the conductor notes its decision once the publish returns: the follower may deliver it before that
            await until(lambda: cond.info()["last_decision"] == d.id, 5, "the conductor's last decision")
            info = cond.info()
            assert info["source"] == f"ollama:{MODEL}" and info["ollama_reachable"] is True
            assert info["approval"] == "manual"


async def test_low_ram_unloads_the_model_after_the_call(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        async with running(conf(tmp_path, nats_server, fo.url), ram=Ram(False)) as (engine, cond):
            await submit(engine, "anything")
            await until(lambda: decisions(engine))
            assert fo.chats()[0]["json"]["keep_alive"] == 0


async def test_a_plan_above_the_envelope_is_merged_and_clamped_with_reasons(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url, swarm__scale=1)
        async with running(cfg, spend=Spend(remaining=1.0, worst=0.01)) as (engine, cond):
            ids: list[str] = []
            fo.default = lambda body: json.dumps(
                {
                    "reason": "",
                    "tasks": [
                        {"id": ids[0], "roles": ["research"], "count": 9},
                        {"id": "t-made-up", "roles": ["research"], "count": 1},
                        {"id": ids[0], "roles": ["openrouter/some/free-model"], "count": 1},
                        {"id": ids[1], "roles": ["analysis"], "count": 4},
                    ],
                }
            )
            ids += [await submit(engine, "summarise everything", 7), await submit(engine, "compare them")]
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == f"ollama:{MODEL}"
            assert [(p.task_id, p.role) for p in d.plan] == [(ids[0], "research")]  # scale 1: the higher priority
            assert all(p.max_tokens == cfg.roles[p.role].max_tokens for p in d.plan)
            merged = [(m.task_id, m.what, m.reason) for m in d.merge]
            assert any(t == ids[0] and w == "count" and "asked for 9" in r for t, w, r in merged)
            assert any(w == "task" and "not ready" in r for t, w, r in merged)  # the made-up id
            assert any(t == ids[0] and w == "role" and "not allowed" in r for t, w, r in merged)
            reasons = {c.what: c.reason for c in d.clamps}
            assert "scale 1 with 0 live workers leaves 1" in reasons["workers"]
            assert d.est_cost_max == pytest.approx(0.01)


async def test_budget_envelope_limits_workers_and_zero_room_publishes_nothing(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    cfg = conf(tmp_path, nats_server)
    spend = Spend(remaining=0.025, worst=0.01)
    async with running(cfg, use_ollama=False, spend=spend) as (engine, cond):
        for i in range(4):
            await submit(engine, f"summarise part {i}")
        d = (await until(lambda: decisions(engine)))[0]
        assert len(d.plan) == 2 and d.est_cost_max <= 0.025 and d.source == "rules"
        envelope = cond.info()["envelope"]
        assert envelope and "budget" in cast(EnvelopeSummary, envelope)["limits"]  # {} only before a beat
        spend.remaining = 0.0
        beats = cond.beats
        cond.beat_now()
        await until(lambda: cond.beats > beats)
        await asyncio.sleep(0.1)
        assert len(decisions(engine)) == 1
        assert "0 workers" in cond.info()["note"] and "budget" in cond.info()["note"]


@pytest.mark.parametrize("case", ["garbage", "broken", "wrong_schema", "not_pulled", "timeout", "refused", "died"])
async def test_bad_answers_fall_back_to_rules_without_a_spawn(
    case: str, tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOllama() as fo:
        holder: dict[str, str] = {}

        def greedy() -> str:  # what must never be spawned
            return plan_json((holder["t"], "code", 3))

        host, changes = fo.url, {}
        if case == "garbage":
            fo.default = lambda body: "Sure! Here is the plan: " + greedy()
        elif case == "broken":
            fo.default = lambda body: greedy()[:-3]
        elif case == "wrong_schema":
            fo.default = lambda body: json.dumps({"jobs": json.loads(greedy())["tasks"]})
        elif case == "not_pulled":
            fo.pulled = set()
        elif case == "timeout":
            fo.default = lambda body: Answer(content=greedy(), delay=1.5)
            changes = {"ollama__timeout_s": 0.3}
        elif case == "refused":
            host = "http://127.0.0.1:9"
        elif case == "died":
            fo.default = lambda body: Answer(content=greedy(), disconnect=True)
        async with running(conf(tmp_path, nats_server, host, **changes)) as (engine, cond):
            holder["t"] = await submit(engine, "summarise the release notes")
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == "rules"
            assert [(p.task_id, p.role) for p in d.plan] == [(holder["t"], "research")]  # not the answer's
            expected = {
                "garbage": "ignored the JSON schema (wrote a preamble before the JSON; Ollama issue 8063)",
                "broken": "not valid JSON",
                "wrong_schema": "ignored the JSON schema (answered JSON of another shape; Ollama issue 8063)",
                "not_pulled": f"ollama pull {MODEL}",
                "timeout": "within 0.3 s",
                "refused": "not reachable",
                "died": "died mid-call",
            }[case]
            assert expected in d.error
            info = cond.info()
            assert expected in info["ollama_error"]
            if case in ("refused", "died"):
                assert info["ollama_reachable"] is False and info["source"] == "rules"
            if case == "garbage":
                assert d.raw.startswith("Sure! Here is the plan")


async def test_a_cut_answer_is_recorded_as_cut(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """done_reason "length": the answer hit num_predict (Ollama's chat response says so): the rules decide and the
    decision's error says why, even when the cut text happens to parse."""
    async with FakeOllama() as fo:
        fo.default = lambda body: Answer(content=echo_plan(body), done_reason="length")
        async with running(conf(tmp_path, nats_server, fo.url)) as (engine, cond):
            await submit(engine, "summarise the docs")
            d = (await until(lambda: decisions(engine)))[0]
            n = fo.chats()[0]["json"]["options"]["num_predict"]
            assert d.source == "rules" and f"cut at num_predict={n} tokens (done_reason: length)" in d.error


async def test_a_full_window_is_a_warning_on_the_decision(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """prompt_eval_count with no room left for the answer means Ollama may have cut the prompt's front: the plan
    is still used, and the decision and the conductor's info carry the warning."""
    async with FakeOllama() as fo:
        fo.default = lambda body: Answer(content=echo_plan(body), prompt_eval_count=body["options"]["num_ctx"] - 10)
        async with running(conf(tmp_path, nats_server, fo.url)) as (engine, cond):
            await submit(engine, "summarise the docs")
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == f"ollama:{MODEL}" and d.error == ""
            assert "front may have been cut" in d.warning and "num_ctx 4096" in d.warning
            assert cond.info()["ollama_warning"] == d.warning


async def test_ollama_is_retried_on_later_beats(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        fo.pulled = set()
        async with running(conf(tmp_path, nats_server, fo.url)) as (engine, cond):
            await submit(engine, "first")
            d1 = (await until(lambda: decisions(engine)))[0]
            assert d1.source == "rules" and "ollama pull" in d1.error
            fo.pulled = {MODEL}
            fo.default = echo_plan
            await submit(engine, "second")
            d2 = await until(lambda: [d for d in decisions(engine) if d.id != d1.id])
            assert d2[0].source == f"ollama:{MODEL}" and len(fo.chats()) == 2


async def test_local_roles_are_excluded_when_ram_is_low(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = conf(tmp_path, nats_server)
    from swarm_tui.engine.config.load import Role

    cfg.roles.clear()
    cfg.roles["local"] = Role("local", "ollama_chat/qwen2.5:0.5b", 300)
    async with running(cfg, use_ollama=False, ram=Ram(False)) as (engine, cond):
        await submit(engine, "anything")
        await until(lambda: cond.beats >= 1)
        await asyncio.sleep(0.1)
        assert decisions(engine) == [] and "RAM headroom" in cond.info()["note"]


# ---------------------------------------------------------------------------------------------- approval
async def test_manual_approval_and_reject_over_the_bus(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with running(conf(tmp_path, nats_server), use_ollama=False) as (engine, cond):
        a = await submit(engine, "first")
        d1 = (await until(lambda: decisions(engine)))[0]
        await asyncio.sleep(0.3)
        assert engine.state.decisions[d1.id].status == "pending"  # nobody approved it
        reply = await request(engine.bus, "approve", {"id": d1.id[-6:]})
        assert reply is not None and reply.ok and reply.data["status"] == "approved"
        assert engine.state.tasks[a].state == "running"
        await submit(engine, "second")
        d2 = await until(lambda: [d for d in decisions(engine) if d.id != d1.id])
        reply = await request(engine.bus, "reject", {"id": d2[0].id, "reason": "not now"})
        assert reply is not None and reply.ok
        reply = await request(engine.bus, "approve", {"id": d2[0].id})
        assert reply is not None and not reply.ok and "rejected" in reply.error
    state = SwarmState()  # the log has every decision and approval, as a restarted app would read it
    bus = Bus(conf(tmp_path, nats_server))
    await bus.connect()
    await bus.replay(lambda s, ev, seq: state.apply(ev, seq))
    await bus.close()
    assert state.decisions[d1.id].status == "approved" and state.decisions[d2[0].id].status == "rejected"


async def test_auto_approval_under_the_limit_only(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = conf(tmp_path, nats_server, approval__mode="auto", approval__auto_max_usd=0.015)
    async with running(cfg, use_ollama=False, spend=Spend(remaining=1.0, worst=0.01)) as (engine, cond):
        await submit(engine, "cheap one")
        d1 = (await until(lambda: decisions(engine)))[0]
        dv = await until(
            lambda: engine.state.decisions[d1.id] if engine.state.decisions[d1.id].status != "pending" else None
        )
        assert dv.status == "approved" and dv.by == "auto"
        for i in range(2):  # two workers: worst case 0.02 > 0.015
            await submit(engine, f"part {i}")
        d2 = await until(lambda: [d for d in decisions(engine) if d.id != d1.id])
        await asyncio.sleep(0.2)
        assert len(d2[0].plan) == 2 and engine.state.decisions[d2[0].id].status == "pending"
        assert "auto" in cond.info()["approval"]


async def test_pending_decisions_expire_and_are_found_after_a_restart(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    cfg = conf(tmp_path, nats_server, approval__expire_s=1.0)
    async with running(cfg, use_ollama=False) as (engine, cond):
        tid = await submit(engine, "waits")
        d = (await until(lambda: decisions(engine)))[0]
    async with running(cfg, use_ollama=False) as (engine, cond):  # a restarted app
        assert engine.state.decisions[d.id].status == "pending" and engine.state.tasks[tid].state == "awaiting_approval"
        await asyncio.sleep(0.2)
        assert len(decisions(engine)) == 1  # the task is not decided twice
        dv = await until(
            lambda: engine.state.decisions[d.id] if engine.state.decisions[d.id].status == "expired" else None,
            timeout=3,
        )
        assert dv.by == "conductor" and engine.state.tasks[tid].state == "pending"
        reply = await request(engine.bus, "approve", {"id": d.id})
        assert reply is not None and not reply.ok and "expired" in reply.error


async def test_cli_approve_edit_pause_resume_against_a_running_engine(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(run_cli, list(args), env)

    async with running(conf(tmp_path, nats_server), use_ollama=False) as (engine, cond):
        tid = await submit(engine, "summarise the CLI docs")
        d = (await until(lambda: decisions(engine)))[0]
        res = await cli("edit", d.id, "2")
        assert res.returncode == 0 and "2 workers" in res.stdout, res.stderr
        res = await cli("status", "--json")
        data = json.loads(res.stdout)
        assert data["conductor"]["source"] == "rules" and data["conductor"]["last_decision"] == d.id
        assert [x for x in data["decisions"] if x["id"] == d.id][0]["workers"] == 2
        res = await cli("approve", d.id)
        assert res.returncode == 0 and "approved" in res.stdout, res.stderr
        await until(lambda: engine.state.decisions[d.id].status == "approved")
        assert engine.state.tasks[tid].state == "running" and len(engine.state.decisions[d.id].plan) == 2
        res = await cli("pause")
        assert res.returncode == 0 and "paused" in res.stdout
        await until(lambda: cond.info()["state"] == "paused")
        t2 = await submit(engine, "arrives while paused")
        await asyncio.sleep(0.6)
        assert [x for x in decisions(engine) if t2 in x.task_ids] == [] and "paused" in cond.info()["note"]
        res = await cli("resume")
        assert res.returncode == 0 and "resumed" in res.stdout
        await until(lambda: [x for x in decisions(engine) if t2 in x.task_ids])
        res = await cli("reject", "no-such-decision")
        assert res.returncode == 1 and "no decision" in res.stderr


async def test_auto_expiry_uses_one_final_word(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """An approval racing the expiry: the first final word is stored, the second is deduplicated."""
    cfg = conf(tmp_path, nats_server, approval__expire_s=1.0)
    async with running(cfg, use_ollama=False) as (engine, cond):
        await submit(engine, "race")
        d = (await until(lambda: decisions(engine)))[0]
        await engine.bus.publish_event(
            Approval(decision_id=d.id, action="approved", by="tui", at=time.time()), msg_id=f"{d.id}-final"
        )
        await until(lambda: engine.state.decisions[d.id].status == "approved")
        await asyncio.sleep(1.3)  # past expires_at: the conductor must not expire an approved decision
        assert engine.state.decisions[d.id].status == "approved"


# ---------------------------------------------------------------------------------------------- the local lane
async def test_the_conductor_waits_for_the_local_lane(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    async with FakeOllama() as fo:
        fo.default = echo_plan
        lane = LocalLane()
        async with running(conf(tmp_path, nats_server, fo.url), lane=lane) as (engine, cond):
            async with lane.turn("worker-local"):  # a local worker is running inference
                t_release = time.monotonic()
                await submit(engine, "queued behind the worker")
                await until(lambda: "conductor" in lane.info()["waiting"])
                assert cond.info()["state"] == "deciding" and fo.chats() == []
                t_release = time.monotonic()
            d = (await until(lambda: decisions(engine)))[0]
            assert d.source == f"ollama:{MODEL}"
            assert fo.chats()[0]["t_start"] >= t_release and lane.turns == 2 and not lane.busy


async def test_hostile_answers_never_leave_the_envelope(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """A fixed set of nasty answers through the whole path (the hypothesis property covers the pure clamp)."""
    ids: list[str] = []
    nasty = [
        lambda: plan_json((ids[-1], "code", 50)),
        lambda: json.dumps(
            {"reason": "", "tasks": [{"id": ids[-1], "roles": ["code"], "count": 1, "max_tokens": 10**9}]}
        ),
        lambda: json.dumps({"reason": "", "tasks": [{"id": ids[-1], "roles": ["research"] * 4, "count": 1}]}),
        lambda: json.dumps({"reason": "", "tasks": [{"id": ids[-1], "roles": ["research"], "count": 2}] * 100}),
        lambda: "[" * 50_000 + "]" * 50_000,
        lambda: json.dumps({"reason": "", "tasks": [{"id": ids[-1] + "\u202e", "roles": ["code"], "count": 1}]}),
        lambda: json.dumps(
            {
                "tasks": [{"id": ids[-1], "roles": ["research"], "model": "openai/gpt-5", "count": 1}],
                "reason": "x" * 5000,
            }
        ),
        lambda: "\x00\xff" * 1000,
    ]
    async with FakeOllama() as fo:
        cfg = conf(tmp_path, nats_server, fo.url, swarm__scale=4, heartbeat__debounce_s=0.05)
        async with running(cfg, spend=Spend(remaining=0.035, worst=0.01)) as (engine, cond):
            for i, make in enumerate(nasty):
                fo.default = lambda body, make=make: make()
                ids.append(await submit(engine, f"nasty {i}"))
                d = (await until(lambda: [x for x in decisions(engine) if ids[-1] in x.task_ids]))[0]
                assert 1 <= len(d.plan) <= 3 and d.est_cost_max <= 0.035 + 1e-9, (i, d)
                for p in d.plan:
                    role = cfg.roles[p.role]
                    assert p.task_id == ids[-1] and p.model == role.model and p.max_tokens <= role.max_tokens
                await request(engine.bus, "reject", {"id": d.id})


async def test_fake_ollama_speaks_both_wire_formats() -> None:
    import httpx
    import ollama

    async with FakeOllama() as fo:
        client = ollama.AsyncClient(host=fo.url)
        fo.script('{"tasks": []}', '{"tasks": [1, 2, 3]}', Answer(content="x" * 40, disconnect=True))
        r = await client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert r.message.content == '{"tasks": []}'
        parts = [p.message.content or "" async for p in await client.chat(model=MODEL, messages=[], stream=True)]
        assert "".join(parts) == '{"tasks": [1, 2, 3]}' and len(parts) > 2
        with pytest.raises(httpx.HTTPError):
            async for _ in await client.chat(model=MODEL, messages=[], stream=True):
                pass
        fo.loaded = [{"name": MODEL, "size": 2_000_000_000}]
        assert (await client.ps()).models[0].size == 2_000_000_000
        assert [m.model for m in (await client.list()).models] == [MODEL]
        with pytest.raises(ollama.ResponseError) as ei:
            await client.chat(model="other:1b", messages=[])
        assert ei.value.status_code == 404 and "try pulling it first" in ei.value.error
        assert [r["path"] for r in fo.requests].count("/api/chat") == 4
        assert all(r["t_end"] is not None and r["t_end"] >= r["t_start"] for r in fo.requests)


def local_role(tmp_path: Path) -> None:
    """A config file with one local role (an ant), as `swarm-tui init --local` writes them."""
    conf_file = tmp_path / "xdg-config" / "swarm-tui" / "config.toml"
    conf_file.parent.mkdir(parents=True, exist_ok=True)
    conf_file.write_text('[roles.local]\nmodel = "ollama_chat/qwen2.5:0.5b"\nmax_tokens = 300\n')


async def test_assemble_adds_one_lane_and_the_conductor(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    from swarm_tui.engine.assemble import assemble

    local_role(tmp_path)  # no key: the assembled conductor plans local roles only
    cfg = conf(tmp_path, nats_server)
    bus = Bus(cfg)
    await bus.connect()
    engine = assemble(cfg, bus, pool=False)
    cond = engine.get(Conductor)
    assert cond is not None and cond.lane is engine.get(LocalLane)
    await engine.start()
    try:
        await submit(engine, "through the assembled engine")
        d = (await until(lambda: decisions(engine)))[0]
        assert d.source == "rules" and "not reachable" in d.error  # OLLAMA_HOST points at the discard port
        assert [p.model for p in d.plan] == ["ollama_chat/qwen2.5:0.5b"]
        conductor = engine.info()["conductor"]
        assert "error" not in conductor and conductor["ollama_reachable"] is False
    finally:
        await engine.stop()


async def test_with_no_key_the_envelope_offers_local_roles_only_and_the_clamp_says_why(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Issue 28: no OpenRouter key (and no demo): the app's conductor leaves the cloud roles out of its envelope,
    saying why; a plan asking for one is clamped with that reason; with no local role nothing is planned."""
    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.heartbeat.advice import Advice, AdviceWorker
    from swarm_tui.engine.heartbeat.clamp import clamp
    from swarm_tui.engine.heartbeat.conductor import NO_KEY_LOCAL_ONLY
    from swarm_tui.engine.heartbeat.envelope import ReadyTask

    cfg = conf(tmp_path, nats_server)  # the default roles: all openrouter/
    assert not cfg.openrouter.api_key
    bus = Bus(cfg)
    await bus.connect()
    engine = assemble(cfg, bus, pool=False)
    cond = engine.get(Conductor)
    assert cond is not None and cond.settings.local_only
    await engine.start()
    try:
        tid = await submit(engine, "research the history of NATS")
        await until(lambda: cond.last_envelope, 10, "a beat")
        await asyncio.sleep(0.5)
        assert decisions(engine) == []  # every role is a cloud one: nothing may start
        excluded: dict[str, str] = cast(dict[str, str], cond.last_envelope.get("excluded", {}))
        assert set(excluded) == {"research", "analysis", "code"}
        assert all(NO_KEY_LOCAL_ONLY in why for why in excluded.values()), excluded
        env = cond.envelope([ReadyTask(tid, "research the history of NATS", 5)])
        clamped = clamp(env, Advice(workers=[AdviceWorker(task_id=tid, role="research")]), cond.estimate, cond.roles)
        assert clamped.items == [] and NO_KEY_LOCAL_ONLY in clamped.clamps[0].reason
    finally:
        await engine.stop()

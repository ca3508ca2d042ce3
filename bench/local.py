"""``python -m bench.local``: a fully local burst, no OpenRouter key: 3 tasks at once on 2 cores.

The app's engine (``assemble``: the spend and RAM guards, the pool, the conductor, one local lane) on an
embedded nats-server, with the configuration ``swarm-tui init --local`` writes (the heart ``gemma2:2b``, its
roles on ``ollama_chat/qwen2.5:0.5b``; ``--max-tokens`` trims the roles' answers). Three tasks are published at
once; every decision the heart makes is approved at once (as a person pressing ``a``); the clock stops when all
three answers are stored.

``OLLAMA_HOST`` unset: the llama.cpp-backed stand-in from ``tests/support/llama_ollama.py`` serves both names
with Gemma 3 270M (llama-cpp-python, 2 threads), so the figures are of that model, not of gemma2:2b and
qwen2.5:0.5b. Set ``OLLAMA_HOST`` to measure a real Ollama with both models pulled. Reported: the time to all
answers, each local inference (who, when, how long), the turns on the lane, and the models' peak RAM as
``/api/ps`` reports it (the most bytes loaded at once, read every 0.2 s) and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swarm_tui.cli.init import ANT, HEART, LOCAL_CONFIG
from swarm_tui.engine.bus.wire import Approval, Task, new_id

TASKS = (
    "Name three colours of the rainbow.",
    "Say what a haiku is in one sentence.",
    "Give one tip for writing clear emails.",
)


async def _ps_mb(host: str) -> float:
    """The MB of every model loaded now, as ``/api/ps`` reports them (the RAM guard's own reading)."""
    from swarm_tui.engine.guards.memory import ollama_ps_client

    return sum(m["size_mb"] for m in await ollama_ps_client(host)())


async def burst(tmp: Path, host: str, max_tokens: int) -> dict[str, Any]:
    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.bus.embedded import EmbeddedServer
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.guards.local_lane import LocalLane

    conf = tmp / "config.toml"
    conf.write_text(
        LOCAL_CONFIG.replace("max_tokens = 400", f"max_tokens = {max_tokens}").replace(
            "max_tokens = 500", f"max_tokens = {max_tokens}"
        )
    )
    server = EmbeddedServer(tmp / "nats", memory_mb=256, disk_mb=1024).run()
    env = {"SWARM_NATS_URL": server.url, "SWARM_DATA_DIR": str(tmp / "data"), "OLLAMA_HOST": host}
    env["OPENROUTER_API_BASE"] = "http://127.0.0.1:9/api/v1"  # never called: no key
    cfg = load_config(conf, env).replace(heartbeat__debounce_s=0.5)
    assert not cfg.openrouter.api_key
    bus = await Bus(cfg).connect()
    engine = assemble(cfg, bus)
    peak, waiting = 0.0, 0
    await engine.start()
    try:
        lane = engine.get(LocalLane)
        assert lane is not None
        t0 = time.monotonic()
        ids = []
        for text in TASKS:
            t = Task(id=new_id("t"), text=text, created_at=time.time())
            await bus.publish_event(t, msg_id=t.id)
            ids.append(t.id)
        approved: set[str] = set()
        while not all(t in engine.state.tasks and engine.state.tasks[t].state == "done" for t in ids):
            if time.monotonic() - t0 > 900:
                raise SystemExit("bench.local: no answers after 900 s")
            for d in engine.state.pending_decisions():
                if d.decision.id not in approved:
                    approved.add(d.decision.id)
                    ok = Approval(decision_id=d.decision.id, action="approved", at=time.time())
                    await bus.publish_event(ok, msg_id=f"{d.decision.id}-ok")
            peak = max(peak, await _ps_mb(host))
            waiting = max(waiting, len(lane.waiting))
            await asyncio.sleep(0.2)
        took = time.monotonic() - t0
        turns = lane.turns
        results = [r for r in engine.state.results.values() if r.task_id in ids and r.state == "done"]
        spent = engine.state.spend.total
    finally:
        await engine.stop()
        await bus.close()
        server.stop()
    return {
        "tasks": len(ids),
        "answers_s": round(took, 2),
        "answers": len(results),
        "tokens": sum(r.usage.completion_tokens for r in results),
        "spend_usd": spent,
        "turns": turns,
        "most_waiting": waiting,
        "models_peak_mb": round(peak, 1),
        "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.local", description=__doc__.split("\n")[0])
    ap.add_argument("--max-tokens", type=int, default=64, help="each role's max_tokens (init --local: 400-500)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.pop("OPENROUTER_API_KEY", None)
    host = os.environ.get("OLLAMA_HOST", "")
    stand_in = None
    backend = f"Ollama at {host}"
    if not host:
        from tests.support.llama_ollama import LlamaOllama, available

        if available():
            raise SystemExit(f"bench.local: {available()} (or set OLLAMA_HOST)")
        stand_in = await LlamaOllama(HEART, aliases=(ANT,)).__aenter__()
        host = stand_in.url
        backend = "llama.cpp stand-in: Gemma 3 270M Q4_K_M for both names (llama-cpp-python, 2 threads)"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-local-") as d:
            out = await burst(Path(d), host, args.max_tokens)
        if stand_in is not None:
            out["models_peak_mb_stand_in"] = round(stand_in.peak_loaded / 2**20, 1)
            out["calls"] = [
                {
                    "model": c["json"]["model"],
                    "s": None if c["t_end"] is None else round(c["t_end"] - c["t_start"], 2),  # None: cut at stop
                    "keep_alive": c["json"].get("keep_alive"),
                }
                for c in stand_in.chats()
            ]
    finally:
        if stand_in is not None:
            await stand_in.__aexit__(None, None, None)
    out["backend"] = backend
    out["cores"] = os.cpu_count()
    print(json.dumps(out, indent=1) if args.json else out)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

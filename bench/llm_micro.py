"""Per-chunk CPU of one worker call: litellm's stream wrapper vs. reading OpenRouter's SSE lines directly.

``python -m bench.llm_micro [--streams 20 --tokens 500]``: the bench endpoint (its own process) streams as
fast as it can; this process runs ``llm.stream_call`` for each stream and reports its own CPU time per chunk
for both paths (``wrapper``: ``raw_sse_lines`` forced to None; ``raw``: the default for openrouter/ models).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from swarm_tui.engine.swarm import worker_call as llm

from .harness import KEY, MODEL, Endpoint


async def run(streams: int, tokens: int, path: str, ep: Endpoint) -> tuple[float, int]:
    await ep.configure(tps=100000, tokens=tokens, first_delay=0)
    real = llm.raw_sse_lines
    if path == "wrapper":
        llm.raw_sse_lines = lambda resp: None
    try:
        progress = [llm.Progress() for _ in range(streams)]
        c0 = time.process_time()
        await asyncio.gather(
            *(
                llm.stream_call(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"bench-job-micro-{path}-{i}"}],
                    max_tokens=tokens,
                    api_base=ep.base,
                    api_key=KEY,
                    timeout=120,
                    first_token_timeout=30,
                    progress=p,
                    on_text=lambda t, at: None,
                )
                for i, p in enumerate(progress)
            )
        )
        cpu = time.process_time() - c0
    finally:
        llm.raw_sse_lines = real
    n = sum(p.tokens for p in progress)
    assert all(p.cost is not None for p in progress), "usage.cost missing"
    return cpu, n


async def main_async(streams: int, tokens: int, rounds: int) -> None:
    ep = Endpoint()
    try:
        await llm.load_litellm()
        await run(2, 20, "wrapper", ep)  # warm-up: connections, imports
        await run(2, 20, "raw", ep)
        for r in range(rounds):
            for path in ("wrapper", "raw"):
                cpu, n = await run(streams, tokens, path, ep)
                print(f"round {r} {path:8s} {n} chunks  {1e6 * cpu / n:6.1f} µs CPU per chunk", flush=True)
                await ep.reset()
    finally:
        await ep.close()
        ep.stop()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.llm_micro", description=__doc__)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    asyncio.run(main_async(a.streams, a.tokens, a.rounds))


if __name__ == "__main__":
    main()

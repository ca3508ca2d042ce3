"""Figures 4-6 against a headless engine (``swarm-tui run --headless``) on the bench's NATS server:
swarm wall time (and the naive loop), control latency, recovery after nats-server is killed."""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import time
from pathlib import Path

from swarm_tui.engine.bus.wire import Decision

from .common import Figure
from .harness import KEY, MODEL, Endpoint, Headless, Observer, free_port, nats, swarm_env, until


async def _batch(obs: Observer, ep: Endpoint, tags: list[str]) -> float:
    """Approve a decision of len(tags) jobs; seconds until every result is stored."""
    t0 = time.monotonic()
    d = await obs.decision(tags)
    await until(lambda: obs.done(d) >= len(tags), 120, f"{len(tags)} results", every=0.005)
    return time.monotonic() - t0


async def naive(ep: Endpoint, n: int, tag: str) -> float:
    """The original sketch: each worker called after the other, the same litellm streaming call."""
    from swarm_tui.engine.swarm.worker_call import load_litellm

    litellm = await load_litellm()
    t0 = time.monotonic()
    for i in range(n):
        resp = await litellm.acompletion(
            model=MODEL,
            api_base=ep.base,
            api_key=KEY,
            stream=True,
            max_tokens=100000,
            messages=[{"role": "user", "content": f"bench-job-{tag}-{i}: write"}],
            stream_options={"include_usage": True},
        )
        async for _chunk in resp:
            pass
    return time.monotonic() - t0


async def swarm_figures(
    runs: int, n_jobs: int, tokens: int, tps: float, naive_runs: int, control_runs: int, figs: dict[str, Figure]
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as d:
        tmp = Path(d)
        srv = nats(tmp / "nats")
        ep = Endpoint(tps, tokens)
        env = swarm_env(tmp, nats_url=srv.url, base=ep.base)
        eng = Headless(env)
        obs = await Observer(env).start()
        try:
            await _batch(obs, ep, ["warm-0"])  # litellm's import and the first connection, not measured
            # ---- 4. swarm wall time
            for r in range(runs):
                one = await _batch(obs, ep, [f"one{r}-0"])
                many = await _batch(obs, ep, [f"many{r}-{i}" for i in range(n_jobs)])
                figs["wall_one"].samples.append(one)
                figs["wall_pool"].samples.append(many)
                figs["wall_ratio"].samples.append(many / one)
            for r in range(naive_runs):
                t = await naive(ep, n_jobs, f"naive{r}")
                figs["wall_naive"].samples.append(t)
                figs["naive_ratio"].samples.append(t / figs["wall_pool"].median)  # type: ignore[operator]
            # ---- 5. control latency
            await ep.configure(tps=tps, tokens=tokens)
            for r in range(control_runs):
                tag = f"appr{r}-0"
                dec = await obs.decision([tag], approve=False)
                await asyncio.sleep(0.3)  # the engine has seen the decision
                t0 = time.time()
                await obs.control("approve", id=dec.id)
                await until(functools.partial(ep.stream, tag), 10, "the request", every=0.005)
                st = await ep.stream(tag)
                assert st is not None
                figs["ctl_approve"].samples.append(1000 * (st["t_arrive"] - t0))

                def answered(dec: Decision = dec) -> bool:
                    return obs.done(dec) >= 1

                await until(answered, 30, "the result")
            await ep.configure(tps=20, tokens=2000)  # long streams for cancel and rescale
            for r in range(control_runs):
                tag = f"cancel{r}-0"
                dec = await obs.decision([tag])

                async def streaming(tag: str = tag) -> bool:
                    s = await ep.stream(tag)
                    return bool(s and s["sent"] >= 5 and obs.worker_of(tag))

                await until(streaming, 30, "a stream to cancel", every=0.02)
                wid = obs.worker_of(tag)
                t0 = time.time()
                await obs.control("cancel", worker=wid)

                async def closed(tag: str = tag) -> bool:
                    s = await ep.stream(tag)
                    return bool(s and s["t_end"] is not None)

                await until(closed, 10, "the stream closed", every=0.005)
                st = await ep.stream(tag)
                assert st is not None
                figs["ctl_cancel"].samples.append(1000 * (st["t_end"] - t0))
            for r in range(max(1, control_runs // 2)):
                await obs.control("scale", n=2)
                await asyncio.sleep(0.5)
                tags = [f"scale{r}-{i}" for i in range(12)]
                dec = await obs.decision(tags)

                async def open_n(k: int) -> bool:
                    return int((await ep.stats())["open"]) >= k

                await until(lambda: open_n(2), 30, "2 streams")
                await asyncio.sleep(0.5)
                before = int((await ep.stats())["open"])
                t0 = time.time()
                await obs.control("scale", n=10)
                await until(lambda: open_n(10), 10, "10 streams", every=0.005)
                log = (await ep.stats())["open_log"]
                at = next((t for t, k in log if t >= t0 and k >= 10), None)
                if at is None or before != 2:
                    figs["ctl_scale"].note = f"a sample skipped: {before} streams open at scale 2"
                else:
                    figs["ctl_scale"].samples.append(1000 * (at - t0))
                await obs.control("cancel", all=True)
                await until(lambda: _none_open(ep), 15, "streams closed")
            await obs.control("scale", n=50)
        finally:
            await obs.stop()
            eng.stop()
            await ep.close()
            ep.stop()
            srv.stop()


async def _none_open(ep: Endpoint) -> bool:
    return int((await ep.stats())["open"]) == 0


async def recovery(runs: int, figs: dict[str, Figure]) -> None:
    """nats-server killed (SIGKILL) mid-swarm and started again on the same port and store after 0.5 s."""
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as d:
        tmp = Path(d)
        port = free_port()
        srv = nats(tmp / "nats", port)
        ep = Endpoint(20, 2000)
        env = swarm_env(tmp, nats_url=srv.url, base=ep.base)
        eng = Headless(env)
        obs = await Observer(env).start()
        try:
            await obs.control("scale", n=50)
            for r in range(runs):
                tags = [f"rec{r}-{i}" for i in range(5)]
                dec = await obs.decision(tags)

                async def flowing(tags: list[str] = tags) -> bool:
                    st = await ep.stats()
                    return sum(1 for s in st["streams"] if s["tag"] in tags and s["sent"] >= 5) >= len(tags)

                await until(flowing, 30, "5 streams")
                await obs.stop()
                assert srv.proc is not None
                os.kill(srv.proc.pid, 9)
                srv.proc.wait(5)
                await asyncio.sleep(0.5)
                srv = nats(tmp / "nats", port)
                t_up = time.time()
                fresh = Observer(env)
                await fresh.bus.connect()
                await fresh.watch_chunks()

                def chunk_seen(fresh: Observer = fresh) -> bool:
                    return bool(fresh.chunk_times)

                await until(chunk_seen, 30, "a chunk after the restart", every=0.005)
                figs["recovery"].samples.append(fresh.chunk_times[0] - t_up)
                await fresh.stop()
                obs = await Observer(env).start()
                await obs.control("cancel", decision=dec.id)

                def all_done(o: Observer = obs, dec: Decision = dec, k: int = len(tags)) -> bool:
                    return o.done(dec) >= k

                await until(all_done, 30, "cancelled results")
        finally:
            await obs.stop()
            eng.stop()
            await ep.close()
            ep.stop()
            srv.stop()

"""Issue 28 (fully local, no OpenRouter key), adversary 3.

Each test fails on 7685dce and says in its docstring what breaks and why it matters. They run the real pool on a
real nats-server against the loopback fakes (tests/support/fake_ollama.py, fake_openrouter.py).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import job_id, worker_id
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.swarm.build import build_pool
from tests.support.env import make_config
from tests.support.fake_ollama import FakeOllama
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import approve, build_engine, swarm_config

pytestmark = pytest.mark.fault

ANT = "ollama_chat/qwen2.5:0.5b"


async def test_no_key_cloud_jobs_held_up_to_max_scale_starve_every_local_job(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """No key: cloud jobs that wait for the key fill the pool's runs up to swarm.max_scale, and from then on
    ``Pool._free`` (pool.py: ``min(capacity - local, max_scale - len(runs))``) is 0, so a local job behind them is
    never started, although the lane and every local slot are free. Cloud jobs on the queue from before a restart
    without the key, a forged or user-approved cloud decision, or a cloud role the heart was once allowed, are
    enough: the fully local swarm the issue promises then does nothing, forever, while the header says "local
    only" (the issue's own symptom: task 'running', nothing happens). Here max_scale is 2 to keep it fast; at the
    default 50 it takes 50 held cloud jobs."""
    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.default = "a local answer"
        ol.pulled.add("qwen2.5:0.5b")
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="", ollama__host=ol.url, swarm__scale=1)
        cfg = cfg.replace(swarm__max_scale=2)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        try:
            cloud = await approve(bus, 2)
            # (fixed: a keyless pool no longer takes them; they stay queued for a pool with the key)
            await until(
                lambda: all(worker_id(cloud.id, i) in engine.state.workers for i in range(2)),
                10,
                "both cloud jobs queued",
            )
            await asyncio.sleep(1.0)  # the pool's fetch loops had their chance at them
            taken = [j for j in pool.runs if j.startswith(cloud.id)]
            local = await approve(bus, 1, model=ANT)
            try:
                await until(lambda: job_id(local.id, 0) in engine.state.results, 12, "the local result")
            except AssertionError:
                pass
            got = engine.state.results.get(job_id(local.id, 0))
            held = len(pool.runs)
        finally:
            await engine.stop()
        assert fo.requests == []
        assert taken == [], f"the keyless pool took cloud jobs it cannot run: {taken}"
        assert got is not None and got.state == "done", (
            f"the local job never ran: {held} cloud jobs held, "
            f"local worker {engine.state.workers.get(worker_id(local.id, 0))}"
        )


async def test_a_keyless_pool_hoards_cloud_jobs_a_pool_with_the_key_would_run(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Before issue 28 a pool with no key took no job at all, so a standalone ``swarm-tui worker`` (or a second
    app) with the key ran the cloud work. Now a keyless pool pulls cloud jobs off the work queue and keeps them
    alive with ``in_progress`` (fetch.heartbeat_loop) for as long as it runs, waiting for a key that only a restart
    brings (gates.closed: MISSING_KEY). One laptop started without the key beside a keyed worker silently takes
    up to swarm.max_scale cloud jobs away from the worker that could run them: approved, paid-for work never runs
    and nothing tells the user the keyed pool is idle."""
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=3, tps=200)
        keyless = swarm_config(make_config, tmp_path / "a", nats_server.url, fo.base, key="", swarm__scale=2)
        keyed = swarm_config(make_config, tmp_path / "b", nats_server.url, fo.base, swarm__scale=2)
        bus_a = await Bus(keyless).connect()
        engine_a, _pool_a = build_engine(keyless, bus_a)
        await engine_a.start()
        bus_b = await Bus(keyed).connect()
        engine_b = Engine(keyed, bus_b)
        engine_b.add(build_pool(keyed, bus_b, host="keyed-worker"))
        try:
            d = await approve(bus_a, 1)
            # (fixed: the keyless pool no longer takes it; it stays queued for the keyed worker)
            await until(lambda: worker_id(d.id, 0) in engine_a.state.workers, 10, "the cloud job queued")
            await asyncio.sleep(1.0)  # the keyless pool's fetch loops had their chance at it
            await engine_b.start()  # the keyed worker joins
            try:
                await until(lambda: job_id(d.id, 0) in engine_a.state.results, 10, "the keyed worker's result")
            except AssertionError:
                pass
            got = engine_a.state.results.get(job_id(d.id, 0))
        finally:
            await engine_b.stop()
            await engine_a.stop()
        assert got is not None and got.state == "done", (
            f"the cloud job stayed with the keyless pool: {engine_a.state.workers[worker_id(d.id, 0)]}; "
            f"OpenRouter saw {len(fo.requests)} request(s)"
        )


async def test_restarting_without_a_key_uses_up_a_held_cloud_jobs_deliveries_and_fails_it(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """With no key the pool now takes a cloud job and holds it "until the key comes with a restart" (gates.py).
    Each stop of the keyless app hands the job back, which is a JetStream delivery; on the 5th (MAX_DELIVER) stop
    ``Pool._run`` writes its last word: the approved cloud job is stored as failed ("the engine stopped during its
    last allowed delivery"), although it never ran and never could. A user of the fully local swarm who opens and
    closes the app five times loses every cloud job waiting for the key; the restart with the key that the wait
    promises finds nothing to run. Before issue 28 a keyless pool took no job, so no delivery was spent."""
    async with FakeOpenRouter() as fo:
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="", swarm__scale=2)
        d = None
        got = None
        restarts = 0
        for restarts in range(1, 6):  # the user opens and closes the (keyless) app five times
            bus = await Bus(cfg).connect()
            engine, pool = build_engine(cfg, bus)
            await engine.start()
            try:
                if d is None:
                    d = await approve(bus, 1)
                jid = job_id(d.id, 0)
                # (fixed: the keyless pool no longer takes it, so a stop spends no delivery of it)
                wid = worker_id(d.id, 0)
                known: Callable[[], bool] = partial(operator.contains, engine.state.workers, wid)
                await until(known, 15, f"start {restarts}: the job queued")
                await asyncio.sleep(0.5)  # the pool's fetch loops had their chance at it
                assert jid not in pool.runs, f"start {restarts}: the keyless pool took the cloud job"
            finally:
                await engine.stop()
            got = engine.state.results.get(jid)
            if got is not None:
                break
        assert fo.requests == []
        assert got is None, f"a cloud job that waited for the key was ended after {restarts} restarts: {got.reason!r}"
        bus = await Bus(cfg).connect()
        try:  # still on the queue for the restart with the key
            assert await bus.jobs.is_queued(S.job("cloud", jid)), "the cloud job is gone from the queue"
        finally:
            await bus.close()


def test_the_workers_title_cleans_a_forged_lane_whole_before_cutting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lane_words`` (workers_panel.py, new with issue 28) runs ``plain`` over the lane's whole ``holder`` and
    ``model`` and only then cuts them to 40 characters. The info an attached app shows comes over the bus (a
    forged or buggy engine's reply), and the title is rebuilt on every info tick: a lane whose holder and model
    are ~600 kB of bidi controls each costs ~90 ms of the UI loop per tick here (2 s for 4 MB), for 40 characters
    shown. The header already cuts a forged field before cleaning it (header_bar.key_state: "cut before
    cleaning"); the new title does not (nor does the header's own lane holder, header_bar.py's "local lane:")."""
    from swarm_tui import textsafe
    from swarm_tui.tui.widgets import workers_panel

    seen: list[int] = []
    real = textsafe.plain

    def spy(text: str, **kw: bool) -> str:
        seen.append(len(text))
        return real(text, **kw)

    monkeypatch.setattr("swarm_tui.tui.widgets.workers_panel.plain", spy)
    forged = "\u202e" * 500_000
    words = workers_panel.lane_words({"lane": {"holder": forged, "model": forged, "waiting": []}})  # type: ignore[typeddict-item]
    assert words.startswith("lane: ")
    assert max(seen) <= 1000, f"plain() was handed {max(seen):,} characters to show 40"


def test_init_local_replaces_a_dangling_symlink_without_force(tmp_path: Path) -> None:
    """``init --local`` promises to refuse an existing config without ``--force``; it asks ``Path.exists()``, which
    follows a symlink, so a config path that is a symlink whose target is missing (a dotfiles checkout not mounted
    yet, a renamed file) counts as absent, and ``os.replace`` then replaces the user's link itself with a plain file:
    the link is lost without --force and without a word (cli/init.py, init_config)."""
    from swarm_tui.cli.init import init_config
    from swarm_tui.engine.errors import SwarmError

    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "dotfiles" / "swarm-tui.toml")  # not there (yet)
    try:
        init_config(str(link), local=True, force=False)
    except SwarmError:
        pass
    assert link.is_symlink(), "the user's config symlink was replaced by init --local without --force"


class _Ram:
    name = "ram"

    def __init__(self) -> None:
        self.ok = True

    def headroom_ok(self, extra_mb: float = 0.0) -> bool:
        return self.ok

    def reading(self) -> None:  # pragma: no cover - not used by the pool
        raise NotImplementedError

    def info(self) -> dict[str, object]:
        return {}


async def test_an_ant_that_waited_for_the_lane_starts_without_looking_at_the_ram_again(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """A local job passes the RAM headroom gate (gates.closed) and only then waits for the local lane
    (job_call.JobCall.call); once it has the lane only its reservation is asserted again (gates.hold_after_lane),
    not the RAM. While it waited the heart held the lane and, with headroom at its start, asked Ollama to keep
    gemma2:2b loaded for 30 minutes (local_model.Advisor.keep_alive): the headroom is gone when the lane passes,
    and the ant loads its model beside the heart anyway. That is what issue 28's lane was to prevent ("the heart
    and the ants never hold the RAM at once beyond the headroom") on a 6 GB machine: swapping or the OOM killer.
    Here the heart's turn is held directly on the pool's lane and the RAM guard turns low during it."""
    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.default = "an ant's answer"
        ol.pulled.add("qwen2.5:0.5b")
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="", ollama__host=ol.url)
        bus = await Bus(cfg).connect()
        ram = _Ram()
        engine, pool = build_engine(cfg, bus, ram=ram)
        await engine.start()
        try:
            async with pool.lane.turn("conductor", "gemma2:2b"):  # the heart's turn
                d = await approve(bus, 1, model=ANT)
                wid = worker_id(d.id, 0)
                await until(
                    lambda: wid in engine.state.workers and "local lane" in engine.state.workers[wid].reason,
                    10,
                    "the ant waits for the lane",
                )
                ram.ok = False  # the heart's model is loaded and kept: no headroom left
            await until(lambda: job_id(d.id, 0) in engine.state.results or bool(ol.chats()), 15, "the ant goes")
        except AssertionError:
            pass
        finally:
            called = list(ol.chats())
            await engine.stop()
        assert called == [], "the ant called Ollama with no RAM headroom left after waiting for the lane"


async def test_a_fully_local_swarm_with_no_key_still_calls_openrouter(tmp_path: Path) -> None:
    """README "Fully local": "the heart and tiny local models do everything on this machine, with no OpenRouter
    key". The engine started on ``init --local``'s config with no key still asks OpenRouter for its price list
    (``GET {openrouter.api_base}/models``, the spend guard's PriceBook, built whatever the roles are in
    cli/runner.py and engine/assemble.py) within a second of starting: a cloud call from a swarm that has no cloud
    role and no key, telling openrouter.ai this machine runs swarm-tui (and failing slowly offline). Here
    OPENROUTER_API_BASE points at a loopback server that records every request."""
    import signal

    from aiohttp import web

    from tests.support.env import base_env, run_cli, spawn_cli

    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = base_env(tmp_path, OPENROUTER_API_BASE=f"http://127.0.0.1:{port}/api/v1")
    try:
        made = await asyncio.to_thread(run_cli, ["init", "--local"], env)
        assert made.returncode == 0, made.stderr
        proc = await spawn_cli(env, "run", "--headless", stderr=asyncio.subprocess.STDOUT)
        try:
            await until(lambda: bool(seen), 8, "a request to OpenRouter")
        except AssertionError:
            pass
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.communicate(), 20)
    finally:
        await runner.cleanup()
    assert seen == [], f"no key, every role local, and still: {seen}"


async def _local_only_app(tmp_path: Path, url: str, size: tuple[int, int]) -> tuple[str, int, int, str]:
    """The app with no key and one local role: (header line, its cells, the header's width, the Spend panel)."""
    from swarm_tui.tui.widgets.header_bar import HeaderBar
    from swarm_tui.tui.widgets.spend_panel import SpendPanel
    from tests.support.tui import make_app, started

    conf = tmp_path / "xdg-config" / "swarm-tui" / "config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[roles.local]\nmodel = "ollama_chat/qwen2.5:0.5b"\nmax_tokens = 400\n')
    cfg = make_config(tmp_path, url)
    assert not cfg.openrouter.api_key
    engine = Engine(cfg, await Bus(cfg).connect())
    try:
        app = make_app(engine)
        async with app.run_test(size=size) as pilot:
            await started(app, pilot)
            header = app.query_one("#header", HeaderBar)
            await pilot.pause(0.5)
            app.room.show_header()
            await pilot.pause()
            # what the spend guard reports with no key (engine/guards/spend.py: key_status "no key")
            no_key = {
                "ceiling_usd": 1.0,
                "today_usd": 0.0,
                "reserved_usd": 0.0,
                "session_usd": 0.0,
                "remaining_usd": 1.0,
                "price_source": "fallback",
                "credits_left_usd": None,
                "key_status": "no key",
                "out_of_credit": False,
                "blocked_reason": "",
                "by_model": {},
            }
            app.room.info = {**app.info, "spend": no_key}  # type: ignore[typeddict-item]
            app.room.show_guards()
            await pilot.pause()
            spend = str(app.query_one("#spend", SpendPanel).shown)
            return header.line.plain, header.line.cell_len, header.content_size.width, spend
    finally:
        await engine.stop()


async def test_the_local_only_header_is_cut_off_at_40_columns(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """The header's "local only" is said "in every form of the line" (header_bar.KeyState.always; commit
    392a2df: "in every width"), but it has no tiny form (the key_tiny try runs only when the key blocks), so at
    40 columns the line is "● bus connected │ manual │ scale 10 │ local only" (48 cells) cut by its ellipsis to a
    dangling "│": the one place that says why cloud work never starts shows nothing at 40 columns."""
    line, cells, width, _ = await _local_only_app(tmp_path, nats_server.url, (40, 20))
    assert "local only" in line
    assert cells <= width, f"{cells} cells in {width} columns: {line!r} (the end, 'local only', is cut off)"


async def test_the_spend_panel_tells_a_local_swarm_to_set_the_key(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """With no key and a local role the header says "local only (no OpenRouter key)" and doctor says the key is
    "not needed, every role is local"; the Spend panel still says "no OpenRouter key (set OPENROUTER_API_KEY)", an
    instruction a fully local user must not follow (and prices: "fallback (no price list)") - the panel was not
    told about issue 28's local-only mode (tui/widgets/spend_panel.py)."""
    _, _, _, spend = await _local_only_app(tmp_path, nats_server.url, (120, 36))
    assert "set OPENROUTER_API_KEY" not in spend, spend


@pytest.mark.parametrize("why", ["rejected", "no credit left"])
async def test_a_dead_openrouter_key_stops_every_local_job(
    tmp_path: Path, nats_server: EmbeddedServer, why: str
) -> None:
    """Issue 28: "a key the local swarm never uses must not be required", and the gates let a local job pass
    whatever the provider's credit (gates.closed: ``None if local else p.cloud_blocked()``). But the pool's fetch
    loop pulls nothing while ``cloud_blocked()`` holds (pool.py, _fetch_loop: ``if free <= 0 or self.blocked() or
    self.cloud_blocked()``), so a revoked key left in the environment, or a key whose limit is used up (the very
    user with no cloud budget the fully local swarm is for), stops every local ant as well: the local task sits
    'running' forever with a free lane, the issue's own symptom, only with a key set instead of none. (The first
    local job may slip through a pull already waiting when the key was found dead; the next one never runs.)"""
    from tests.support.swarm_kit import KEY, build_engine_with_spend

    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.default = "an ant's answer"
        ol.pulled.add("qwen2.5:0.5b")
        if why == "rejected":
            fo.key_rejected = True
        else:
            fo.key = {"limit_remaining": 0.0, "usage": 10.0, "limit": 10.0}
        cfg = make_config(
            tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY, OLLAMA_HOST=ol.url
        )
        bus = await Bus(cfg).connect()
        engine, spend, pool = build_engine_with_spend(cfg, bus)
        await engine.start()
        try:
            await until(lambda: pool.cloud_blocked() is not None, 10, f"the key is {why}")
            got = None
            for n in range(3):  # noqa: B007 - one task after another (n is said when one never runs)
                d = await approve(bus, 1, model=ANT)
                try:
                    done: Callable[[], bool] = partial(operator.contains, engine.state.results, job_id(d.id, 0))
                    await until(done, 8, "the local result")
                except AssertionError:
                    pass
                got = engine.state.results.get(job_id(d.id, 0))
                if got is None:
                    break
            blocked = str(pool.cloud_blocked())
        finally:
            await engine.stop()
        assert fo.requests == []
        assert got is not None and got.state == "done", (
            f"local task {n + 1} never ran while the key was {why}: {blocked}"
        )


async def test_cancel_does_not_reach_an_ant_waiting_for_the_lane(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """A cancel wakes a run at its gates (``Run.wake``) or cancels its call (``Run.call``), but an ant waiting for
    the local lane is in neither: ``JobCall.call`` awaits ``p.lane.turn(...)`` with ``run.call`` still None, so the
    cancel is only seen when the lane passes to it. Cancelled cards keep saying "waiting for the local lane" for
    the whole of the holder's turn (the heart's beat, or an ant streaming up to swarm.request_timeout_s, 180 s),
    and each cancelled ant still takes a lane turn. Elsewhere a cancel ends a worker within 1.5 s
    (test_swarm.py); here, with the heart holding the lane, none ends within 3 s."""
    async with FakeOllama() as ol, FakeOpenRouter() as fo:
        ol.pulled.add("qwen2.5:0.5b")
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, key="", ollama__host=ol.url)
        bus = await Bus(cfg).connect()
        engine, pool = build_engine(cfg, bus)
        await engine.start()
        states: list[str] = []
        try:
            async with pool.lane.turn("conductor", "gemma2:2b"):  # the heart's turn, for as long as it takes
                d = await approve(bus, 2, model=ANT)
                await until(lambda: len(pool.lane.waiting) == 2, 10, "two ants wait for the lane")
                await engine.controls.handle("cancel", {"decision": d.id})
                wids = [worker_id(d.id, i) for i in range(2)]
                try:
                    await until(lambda: all(engine.state.workers[w].state == "cancelled" for w in wids), 3, "cancel")
                except AssertionError:
                    pass
                states = [f"{engine.state.workers[w].state}: {engine.state.workers[w].reason}" for w in wids]
        finally:
            await engine.stop()
        assert all(s.startswith("cancelled") for s in states), states

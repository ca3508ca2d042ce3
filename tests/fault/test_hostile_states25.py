"""Issue 25, round 2: the key check and the blocking states on screen, attacked.

The key is checked with GET /key at start, at once after a 402 or a call refused with 401, and a 401/403 there
now blocks cloud dispatch; the header, the Spend panel and the cards say every state that stops work. These tests
feed the key check a provider that lies or flaps, and the screen forged or crowded bus input.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import WorkerEvent
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.guards.credit import CreditWatch
from swarm_tui.engine.info import SpendInfo
from swarm_tui.tui.widgets.header_bar import key_state
from tests.support.env import make_config
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY

pytestmark = pytest.mark.fault


class KeyScript(FakeOpenRouter):
    """A fake OpenRouter whose GET /key answers what the test scripts, one status per ask (then the last again).

    200 answers the fake's ``key`` dict; 302 a redirect elsewhere; any other status OpenRouter's error object
    with that code; "hang" never answers."""

    def __init__(self, *answers: int | str) -> None:
        super().__init__()
        self.key_answers: deque[int | str] = deque(answers)
        self.last: int | str = 200

    async def _key(self, request: web.Request) -> web.Response:
        self.key_asks += 1
        if self.key_answers:
            self.last = self.key_answers.popleft()
        if self.last == 200:
            return web.json_response({"data": dict(self.key)})
        if self.last == "hang":
            await asyncio.sleep(3600)
        if self.last == 302:
            return web.Response(status=302, headers={"Location": "https://example.com/elsewhere"})
        assert isinstance(self.last, int)
        return web.json_response({"error": {"code": self.last, "message": "scripted"}}, status=self.last)


def watch_of(cfg: Config, *, poll_s: float = 3600.0, cooldown_s: float = 60.0) -> CreditWatch:
    return CreditWatch(
        cfg.replace(openrouter__key_poll_s=poll_s).openrouter,
        clock=time.time,
        cooldown_s=cooldown_s,
        counts=collections.Counter(),
    )


@contextlib.asynccontextmanager
async def running(watch: CreditWatch) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch.run(), name="adv-key-poll")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watch.close()


def spend_of(watch: CreditWatch) -> SpendInfo:
    """The spend guard's info as the header reads it: its figures and the key watch's own."""
    base: dict[str, Any] = {
        "ceiling_usd": 1.0,
        "today_usd": 0.0,
        "reserved_usd": 0.0,
        "session_usd": 0.0,
        "remaining_usd": 1.0,
        "price_source": "test",
        "by_model": {},
    }
    return cast(SpendInfo, {**base, **watch.info()})


# ------------------------------------------------------------------------------------------- the key check
async def test_a_402_from_the_key_endpoint_does_not_poll_it_in_a_tight_loop(tmp_path: Path) -> None:
    """Money/perf. ``poll_key`` answers a 402 from GET /key with ``mark_out_of_credit``, which calls
    ``recheck()`` (credit.py, "the header says which at once"). The run loop clears the recheck event *before*
    the poll, so the poll sets it again and ``within(self._recheck.wait(), key_poll_s)`` returns at once: the
    next poll starts immediately, answers 402 again, and so on. An account out of credit (OpenRouter's 402) has
    the engine hammer GET /key as fast as the event loop goes (~2000 requests a second here, each logged as a
    warning and counted), starving the loop every worker, the heartbeat and the screen share, and inviting
    OpenRouter's rate limit on the key. It should be asked again after key_poll_s (60 s by default)."""
    fo = KeyScript(402)
    quiet = logging.getLogger("swarm_tui.engine.guards.credit")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one warning per poll: thousands of lines otherwise
    async with fo:
        cfg = make_config(tmp_path, "", OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        watch = watch_of(cfg)
        async with running(watch):
            await until(lambda: fo.key_asks >= 1)
            await asyncio.sleep(1.0)
            asks, stops = fo.key_asks, watch.counts["out_of_credit"]
    quiet.setLevel(level)
    print(f"\nGET /key asked {asks} times in ~1 s after a 402 (key_poll_s 3600); out_of_credit counted {stops}")
    assert asks <= 3, f"GET /key polled {asks} times in a second after one 402: a tight loop"


async def test_a_key_with_a_trailing_carriage_return_does_not_kill_the_key_check(tmp_path: Path) -> None:
    """Crash / wrong text. A key pasted with a trailing CR (a .env saved with CRLF and sourced by a shell, a
    config value copied from Windows) reaches ``poll_key`` as is; aiohttp refuses the header with a ValueError
    ("Forbidden control character detected in headers"), which ``poll_key`` does not catch (it catches Refused,
    TimeoutError, ClientError, OSError only). ``CreditWatch.run`` (the spend guard's "spend-key" task) dies on the
    first poll, silently: the header says "key not checked yet" for ever, no later poll or ``recheck`` ever runs
    again (nobody waits on the event), and a key fixed later is never seen. It should say what is wrong with the
    key (or strip the whitespace), and the poller should live on."""
    async with KeyScript(200) as fo:
        cfg = make_config(tmp_path, "", OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY + "\r")
        watch = watch_of(cfg, poll_s=0.2)
        async with running(watch) as task:
            await asyncio.sleep(1.0)
            died = task.done() and not task.cancelled()
            exc = task.exception() if died else None
            status = watch.key_status
    print(f"\nkey poller died: {died} ({exc!r}); key_status {status!r}; GET /key asked {fo.key_asks} times")
    assert not died, f"the key poller died on its first poll: {exc!r}"
    assert status != "not checked yet", "the header says 'key not checked yet' for ever"


@pytest.mark.parametrize("then", [500, "drop", 302], ids=["then-500", "then-unreachable", "then-redirect"])
async def test_a_rejected_key_is_not_called_out_of_credit_when_the_next_check_fails(
    tmp_path: Path, then: int | str
) -> None:
    """Wrong text (wrong advice). GET /key answers 401 (the key is blocked: ``_key_blocked`` = "key rejected
    (HTTP 401): check OPENROUTER_API_KEY"), then the next check fails in a way that "changes nothing" (a 5xx, the
    endpoint unreachable, a redirect): ``key_status`` becomes "HTTP 500" / "unreachable (...)" / "answer refused:
    ..." while the block stays. The header's ``key_state`` (header_bar.py) only calls a key rejected when
    ``key_status`` starts with "rejected"; otherwise any ``blocked_reason`` not starting with "key limit" falls to
    "out of credit: add credit on openrouter.ai". A user whose key was revoked is told to buy credit; cloud work
    stays blocked whatever they pay. The header should go on saying the key is rejected."""
    fo = KeyScript(401) if then == "drop" else KeyScript(401, then)
    async with fo:
        cfg = make_config(tmp_path, "", OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        watch = watch_of(cfg)
        await watch.poll_key()
        assert watch.key_status == "rejected (HTTP 401)" and watch.blocked() is not None
        first = key_state(spend_of(watch), True)
        assert first is not None and "key rejected" in first.words
        if then == "drop":
            await fo.__aexit__(None, None, None)  # the endpoint is gone: connection refused
        await watch.poll_key()
        await watch.close()
    shown = key_state(spend_of(watch), True)
    print(f"\nafter 401 then {then}: key_status {watch.key_status!r}, blocked {watch.blocked()!s}; header {shown}")
    assert watch.blocked() is not None, "still blocked, as the docstring says"
    assert shown is not None and shown.blocks
    assert "out of credit" not in shown.words, f"a rejected key is shown as {shown.words!r}"
    assert "key" in shown.words and "OPENROUTER_API_KEY" in shown.words, shown.words


@pytest.fixture
async def engine_402(tmp_path: Path, nats_server: EmbeddedServer) -> AsyncIterator[tuple[Any, Bus, FakeOpenRouter]]:
    """An engine (spend guard, controller, pool) whose OpenRouter account is empty: every call answers 402
    "Insufficient credits", while GET /key says the key's own limit still has $10 left (a key limit is not the
    account's balance, credit.py's docstring)."""
    from tests.support.fake_openrouter import Answer
    from tests.support.swarm_kit import build_engine_with_spend

    async with FakeOpenRouter() as fo:
        fo.default = Answer(status=402)
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        bus = await Bus(cfg).connect()
        engine, spend, _pool = build_engine_with_spend(cfg, bus)
        quiet = logging.getLogger("swarm_tui")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        await engine.start()
        try:
            yield engine, bus, fo
        finally:
            quiet.setLevel(level)
            await engine.stop()
            await bus.close()


async def test_a_402_from_a_call_is_not_undone_at_once_by_the_recheck_it_asks_for(
    engine_402: tuple[Any, Bus, FakeOpenRouter],
) -> None:
    """Perf / provider abuse. A call refused 402 (the account is out of credit) marks the guard out of credit and
    now asks for a recheck of the key at once (credit.py ``mark_out_of_credit`` -> ``recheck``). The recheck's
    GET /key answers the key's own ``limit_remaining`` (> 0: the key's limit is not the account's balance), and
    ``poll_key`` clears the out-of-credit state for any poll started after the 402 ("the key's limit allows ...:
    cloud dispatch resumes"). So the block a 402 set lasts one round trip: the waiting job (job.py: 402 ->
    "waiting", then the gates again) calls again at once, gets 402 again, and so on: OpenRouter is sent a chat
    request and a GET /key per round trip, and the log gets a "waiting" event each time, for as long as the
    account is empty. Before the recheck the block held until the next poll (key_poll_s, 60 s) or the cool-down.
    """
    from tests.support.swarm_kit import approve

    engine, bus, fo = engine_402
    await until(lambda: fo.key_asks >= 1, 10)
    await approve(bus, 1)
    await until(lambda: len(fo.chats()) >= 1, 10)
    await asyncio.sleep(3.0)
    chats, asks = len(fo.chats()), fo.key_asks
    waits = sum(1 for w in engine.state.workers.values() if w.state == "waiting")
    print(
        f"\n3 s after the first 402: {chats} chat requests, {asks} GET /key; worker states "
        f"{[w.state for w in engine.state.workers.values()]} ({waits} waiting)"
    )
    assert chats <= 2, f"{chats} chat requests in 3 s with the account out of credit (each answered 402)"
    assert asks <= 3, f"GET /key asked {asks} times in 3 s"


# ------------------------------------------------------------------------------------------- the screen
async def test_a_worker_streaming_in_another_process_on_this_host_is_not_recovering(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Wrong text. ``PoolFacts.note`` (workers_panel.py) calls any worker of this host in a held state whose last
    event is older than this engine's start "recovering after a restart: waiting for redelivery". The host is
    ``socket.gethostname()`` for the engine and for every pool on the machine, so a job that is really running
    in another process on the same host (a ``swarm-tui worker`` beside ``swarm-tui run``, or the engine
    restarted while that worker works) is labelled as waiting for redelivery while its output streams into the
    very same card. The note never looks at whether the worker is alive (its output, the pools' running lists):
    a user waits for a redelivery that will never come, or cancels a job that was fine."""
    from swarm_tui.engine.engine import Engine
    from swarm_tui.engine.guards.prices import PriceBook
    from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
    from swarm_tui.engine.swarm.build import build_pool
    from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
    from swarm_tui.tui.widgets.worker_card import WorkerCard
    from tests.support.fake_openrouter import Answer
    from tests.support.swarm_kit import approve
    from tests.support.tui import make_app, started

    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=400, tps=10.0)  # 40 s of output: it runs all through the test
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        # the process that works: a controller and a pool (as `swarm-tui worker` with an engine), this host's name
        bus_a = await Bus(cfg).connect()
        worker_side = Engine(cfg, bus_a)
        spend = worker_side.add(
            SpendGuard(SpendSettings.of(cfg), bus_a, worker_side.state, PriceBook(cfg.openrouter, cfg.paths))
        )
        worker_side.add(Controller(ControllerSettings.of(cfg), bus_a, worker_side.state, spend=spend, host="ctl"))
        pool = worker_side.add(build_pool(cfg, bus_a, spend=spend))
        await worker_side.start()
        bus_b = await Bus(cfg).connect()
        try:
            await approve(bus_a, 1)
            await fo.wait_open(1, 10)
            await asyncio.sleep(0.3)
            viewer = Engine(cfg, bus_b)  # started now, on the same host, after the worker began
            assert viewer.host == pool.host
            app = make_app(viewer)
            async with app.run_test(size=(120, 36)) as pilot:
                await started(app, pilot)
                await until(lambda: len(app.query(WorkerCard)) == 1, 10)
                card = app.query_one(WorkerCard)
                await until(lambda: card.ring.tokens > 5, 10)  # its output arrives: it is alive
                await pilot.pause(0.3)
                reason, tokens, state = card.reason, card.ring.tokens, card.ev.state
                assert fo.open == 1, "still streaming"
            await viewer.stop()
        finally:
            await worker_side.stop()
            await bus_a.close()
            await bus_b.close()
    print(f"\na {state} card with {tokens} tokens streamed says: {reason!r}")
    assert "recovering" not in reason and "redelivery" not in reason, reason


def _header_app() -> Any:
    from textual.app import App, ComposeResult

    from swarm_tui.tui.widgets.header_bar import HeaderBar

    class HeaderOnly(App[None]):
        def compose(self) -> ComposeResult:
            yield HeaderBar(id="header")

    return HeaderOnly()


@pytest.mark.parametrize(
    ("size", "bus_state", "scale", "must_say"),
    [
        ((80, 24), "connected", 0, "scale 0"),
        ((60, 20), "connected", 0, "scale 0"),
        ((40, 12), "disconnected", 3, "bus"),
    ],
    ids=["80x24-scale-0", "60x20-scale-0", "40x12-bus-lost"],
)
async def test_a_rejected_key_does_not_push_the_other_stopping_states_off_the_header(
    size: tuple[int, int], bus_state: str, scale: int, must_say: str
) -> None:
    """Missing text. A rejected key is said first and in full ("key rejected: check OPENROUTER_API_KEY", 39
    cells even in its short form): at 80x24 with scale 0 too the header ends "scale 0: no…", at 60 columns scale
    0 is gone, and at 40x12 a lost bus ("○ bus disconnected", shown at 40 columns when the key is fine) is cut off
    whole: the user fixes the key and still nothing starts (scale 0 is the other state that stops all work, and
    queued cards say only the pool's key reason), or watches a frozen screen that does not say the bus is gone.
    header_bar.py ``build``: the key's words are fixed-length, and every other field is only ever cut from the
    end; ``watch_view`` has no try that shortens the key's words below 39 cells."""
    from swarm_tui.engine.projection.state import SwarmState
    from swarm_tui.tui.widgets.header_bar import HeaderBar, HeaderView

    state = SwarmState()
    state.scale = scale
    spend = {
        "key_status": "rejected (HTTP 401)",
        "blocked_reason": "key rejected (HTTP 401): check",
        "out_of_credit": True,
    }
    view = HeaderView(bus_state, "embedded", "in-process", cast(Any, {"spend": spend}), state, False, "manual")
    app = _header_app()
    async with app.run_test(size=size) as pilot:
        header = app.query_one("#header", HeaderBar)
        header.view = view
        await pilot.pause()
        width = header.content_size.width
        shown = header.line.plain[: width - 1] if header.line.cell_len > width else header.line.plain
    print(f"\n{size[0]}x{size[1]}: {shown!r}")
    assert "key rejected" in shown
    if must_say == "scale 0":
        assert "scale 0: none start" in shown or "scale 0: no worker will start" in shown, shown
    else:
        assert "bus disconnected" in shown or "○ bus" in shown, shown


async def test_forged_key_refused_failures_on_the_bus_do_not_drive_get_key(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Perf / provider abuse. The pool has the key rechecked for every ``failed`` WorkerEvent it reads on the bus
    whose host is its own and whose reason starts with "the provider refused the key (401)" (pool.py
    ``on_event``), not for a call it made itself: the event may be another process's, or forged by any client
    with publish rights, for a worker and job that never existed. Nothing bounds the rate: each event that
    arrives after the last poll ended starts another GET /key with the key, so a trickle of 20 forged events a
    second is 20 authenticated requests a second to OpenRouter (a real burst of 401 failures over a minute does
    the same). A recheck should come from the pool's own refused call, and at most once per some interval."""
    from swarm_tui.engine.engine import Engine
    from swarm_tui.engine.guards.prices import PriceBook
    from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
    from swarm_tui.engine.swarm.build import build_pool
    from swarm_tui.engine.swarm.call_errors import KEY_REFUSED

    async with FakeOpenRouter() as fo:
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        bus = await Bus(cfg).connect()
        engine = Engine(cfg, bus)
        spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, PriceBook(cfg.openrouter, cfg.paths)))
        pool = engine.add(build_pool(cfg, bus, spend=spend, host="test"))
        await engine.start()
        forger = await Bus(cfg).connect(setup=False)
        try:
            await until(lambda: fo.key_asks >= 1, 10)
            before = fo.key_asks
            for i in range(40):  # 2 s of forged failures, none of them this pool's call
                await forger.publish_event(
                    WorkerEvent(
                        worker_id=f"d-forged-w{i}",
                        job_id=f"d-forged-j{i}",
                        decision_id="d-forged",
                        task_id="t-forged",
                        model="openrouter/google/gemini-2.5-flash-lite",
                        state="failed",
                        reason=f"{KEY_REFUSED}: forged",
                        host=pool.host,
                        at=time.time(),
                    )
                )
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            asks = fo.key_asks - before
        finally:
            await forger.close()
            await engine.stop()
            await bus.close()
    print(f"\n40 forged 'failed (401)' events in 2 s: GET /key asked {asks} more times (key_poll_s 60)")
    assert asks <= 2, f"{asks} GET /key requests with the key, driven by forged bus events"


async def test_a_forged_engine_info_with_a_huge_key_status_does_not_stall_the_header() -> None:
    """Perf. An attached app takes its info from whoever answers ``swarm.engine.info`` first (link.py
    ``RemoteLink.refresh_info``: any client with publish and subscribe rights can), as JSON up to NATS's 1 MB.
    The new ``key_state`` (header_bar.py) runs ``plain()`` over the whole ``key_status`` before cutting it to 60
    characters, and over the whole ``blocked_reason`` without any cut, and it is called once by ``blocking`` and
    once per try of ``watch_view`` (up to 7 times a build). With ~1 MB of escape sequences in those two fields one
    header build takes a third of a second or more, and the header is rebuilt every second and with every state
    refresh: the attached screen stalls. The engine's own values are at most 200 characters; the reader should
    cut before it cleans (as the card does: ``one_line`` slices first)."""
    from swarm_tui.engine.projection.state import SwarmState
    from swarm_tui.tui.widgets.header_bar import HeaderBar, HeaderView

    big = "\x1b[2J" * 250_000  # 1 MB: clear-screen sequences, each replaced by a stand-in
    state = SwarmState()
    state.scale = 3
    info = {"spend": {"key_status": big, "blocked_reason": big, "out_of_credit": True}, "engine": {"host": "h"}}
    view = HeaderView("connected", "nats", "remote engine", cast(Any, info), state, False, "manual")
    app = _header_app()
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.query_one("#header", HeaderBar)
        header.view = view  # warm up
        await pilot.pause()
        t0 = time.perf_counter()
        for _ in range(3):
            header.view = view
        took = (time.perf_counter() - t0) / 3
        shown = header.line.plain
    print(f"\none header build with a 1 MB forged key_status: {took * 1000:.0f} ms; shows {shown[:60]!r}")
    assert "\x1b" not in shown
    assert took < 0.05, f"a header build takes {took * 1000:.0f} ms with a forged 1 MB key status"


async def test_the_will_not_start_toast_carries_no_escape_from_the_pools_reason(cfg: Config) -> None:
    """Secret-adjacent / terminal injection. Approving while the pool is blocked toasts "<id> will not start now:
    <why>" (room_actions.py ``action_approve``), and ``why`` is ``PoolFacts.blocked``: the pool's ``blocked``
    from the engine's info as it came (workers_panel.py ``PoolFacts.of``: ``str(pool.get("blocked"))``, not
    cleaned, not cut). ``PlainToastApp.notify`` only turns markup off. An attached app's info is whatever
    answered ``swarm.engine.info`` first, so OSC 52 (write the clipboard), a title, bidi overrides and a whole
    screenful of text reach the toast; the cards show the same reason through ``one_line`` (cleaned, 1000
    characters), and every other toast in the app is held to carry no ESC, BEL or hidden characters
    (test_hostile_screen.py ``test_notifications_and_the_terminal_title_carry_no_escape``)."""
    from swarm_tui.engine.engine import Engine
    from tests.integration.test_tui import seed_decision
    from tests.support.tui import make_app, started

    evil = "key rejected \x1b]52;c;cm0gLXJmIH4K\x07\x1b]2;pwned\x07 \u202eyek eht kcehc\u202c " + "x" * 100_000
    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    observer = await Bus(cfg).connect(setup=False)
    try:
        app = make_app(engine)
        async with app.run_test(size=(120, 36), notifications=True) as pilot:
            await started(app, pilot)
            await seed_decision(observer, "d-one", workers=1)
            from textual.widgets import DataTable

            await until(lambda: app.query_one("#decisions", DataTable).row_count == 1)
            app.room.info = cast(Any, {**app.info, "pool": {"blocked": evil, "scale": 3, "running": 0}})
            await pilot.pause()
            await pilot.press("a")
            await until(lambda: any("will not start" in str(n.message) for n in app._notifications), 5)
            toast = next(str(n.message) for n in app._notifications if "will not start" in str(n.message))
    finally:
        await engine.stop()
        await observer.close()
        await bus.close()
    print(f"\nthe toast: {len(toast)} characters, starts {toast[:90]!r}")
    assert "\x1b" not in toast and "\x07" not in toast, "escape sequences in a toast"
    assert "\u202e" not in toast, "a bidi override in a toast"
    assert len(toast) <= 2000, f"a toast of {len(toast)} characters"


@pytest.mark.parametrize("started_at", ["yesterday", [1], {"t": 1}], ids=["str", "list", "dict"])
async def test_a_forged_engine_start_time_does_not_crash_the_screen(cfg: Config, started_at: Any) -> None:
    """Crash. The recovering note compares each held worker's ``at`` with ``info["engine"]["started_at"]``
    (workers_panel.py ``PoolFacts.note``: ``w.at < self.started_at``), taken from the info as it came
    (``PoolFacts.of``: ``eng.get("started_at")``, unchecked; link.py takes a remote engine's info "as its
    shape"). An info whose ``started_at`` is not a number (an engine of another version, or any client answering
    ``swarm.engine.info``) raises TypeError in ``watch_facts``/``sync`` for every running worker of that host:
    the app dies (or stops refreshing its cards) on a bad field of a panel's info. ``usable`` promises that "a
    reader must never crash on it"."""
    from swarm_tui.engine.engine import Engine
    from swarm_tui.tui.widgets.worker_card import WorkerCard
    from tests.integration.test_tui import seed_decision
    from tests.support.tui import make_app, started

    bus = await Bus(cfg).connect()
    engine = Engine(cfg, bus)
    observer = await Bus(cfg).connect(setup=False)
    crashed: BaseException | None = None
    try:
        app = make_app(engine)
        async with app.run_test(size=(120, 36)) as pilot:
            await started(app, pilot)
            await seed_decision(observer, "d-one", workers=1)
            await observer.publish_event(
                WorkerEvent(
                    worker_id="d-one-w0",
                    job_id="d-one-j0",
                    decision_id="d-one",
                    task_id="t-d-one",
                    model="openrouter/google/gemini-2.5-flash-lite",
                    role="research",
                    state="running",
                    host="box",
                    at=time.time(),
                )
            )
            await until(lambda: len(app.query(WorkerCard)) == 1)
            real_info = engine.info

            def forged() -> Any:  # what a remote engine's info reply may say; here through the app's own poll
                return {**real_info(), "engine": {"host": "box", "started_at": started_at, "pid": 1}}

            engine.info = forged  # type: ignore[method-assign]
            await asyncio.sleep(2.0)  # two of the app's info polls
            with contextlib.suppress(Exception):
                await pilot.pause()
            alive = app.is_running and app._exception is None
            exc = app._exception
    except Exception as outer:  # noqa: BLE001 - run_test re-raises the app's own exception on exit
        crashed = crashed or outer
        alive = False
        exc = outer
    finally:
        await engine.stop()
        await observer.close()
        await bus.close()
    print(f"\nstarted_at={started_at!r}: app alive {alive}; raised {crashed!r} / app exception {exc!r}")
    assert crashed is None and alive, f"a forged started_at crashed the app: {crashed or exc!r}"


async def test_a_rejected_key_is_not_announced_as_out_of_credit(tmp_path: Path) -> None:
    """Wrong text (wrong advice, in the alerts). A 401 from GET /key now blocks cloud dispatch, and
    ``CreditWatch.info`` reports any block as ``out_of_credit: True`` (credit.py: ``"out_of_credit":
    bool(blocked)``). The needs-you watch (attention/needs.py) holds the "credit" need on that flag and words it
    "out of credit: key rejected (HTTP 401): check OPENROUTER_API_KEY ...": the header badge says "needs you:
    credit", and the bell / desktop notification / notify command a user set up for "credit" ring with "out of
    credit" (in the app: a toast "out of credit: key rejected (HTTP 401) ..." and "⚑ needs you: credit" beside "key
    rejected" in the header). ``status`` adds "; out of credit" to the pool's line. The key is rejected; the
    account may be full."""
    from swarm_tui.engine.attention.needs import Attention
    from swarm_tui.engine.projection.state import SwarmState

    async with KeyScript(401) as fo:
        cfg = make_config(tmp_path, "", OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        watch = watch_of(cfg)
        await watch.poll_key()
        await watch.close()
    spend = spend_of(watch)
    att = Attention(ring_on_start=True)
    rang = att.update(SwarmState(), cast(Any, {"spend": spend}), "connected")
    said = [(n["kind"], n["what"]) for n in rang]
    print(f"\nkey_status {spend['key_status']!r}, out_of_credit {spend['out_of_credit']}; needs rang: {said}")
    assert not any(kind == "credit" or what.startswith("out of credit") for kind, what in said), said


def test_a_wide_character_reason_is_whole_on_an_expanded_card() -> None:
    """Missing text. A card's reason "on its own lines, on word boundaries" (worker_card.py ``render``) is cut
    by ``wrap_words`` (model.py), which counts characters (``len``), not terminal cells. A reason in Chinese or
    Japanese (a provider's error in the user's language, a task's words quoted back) has two cells a character:
    each piece is twice the card's width, and ``line.truncate(width, overflow="ellipsis")`` then drops the second
    half of every line. The expanded card, which the issue says shows the reason whole, shows about half of it."""
    from textual.geometry import Size

    from swarm_tui.tui.model import OutputRing
    from swarm_tui.tui.widgets.worker_card import WorkerCard

    class Card(WorkerCard):
        @property
        def content_size(self) -> Size:
            return Size(30, 14)

    why = "余额不足请充值后再试" * 4  # "balance too low, top up and retry" x4: 40 characters, 80 cells
    ev = WorkerEvent(
        worker_id="d-one-w0",
        job_id="d-one-j0",
        decision_id="d-one",
        task_id="t-d-one",
        model="openrouter/google/gemini-2.5-flash-lite",
        role="research",
        state="failed",
        reason=why,
        at=time.time(),
    )
    card = Card("d-one-w0", OutputRing(), ev, "a task")
    card.set_expanded(True)
    lines = [line.plain for line in card.render().renderables]  # type: ignore[union-attr]
    shown = "".join(lines[1:-1]).replace("…", "")
    print(f"\nexpanded card, 30 columns: {lines}")
    assert why in shown, f"{len(set(why) & set(shown))} of the reason shown: {lines[1:-1]}"

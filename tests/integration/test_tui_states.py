"""Every state that stops work is said where the work is (the header, the card, the Spend panel), with its reason
and what to do, for as long as it holds; toasts only for news (issue 25: items 1, 2, 8, 9, 12, 13, 15)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from textual.geometry import Size
from textual.widgets import DataTable

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import WorkerEvent
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.credit import CreditWatch
from swarm_tui.engine.info import EngineInfo, SpendInfo
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import WorkerState
from swarm_tui.tui.model import OutputRing, wrap_tail
from swarm_tui.tui.screens.text import TextScreen
from swarm_tui.tui.widgets.header_bar import LOCAL_ONLY, NO_KEY, NO_KEY_SHORT, HeaderBar, HeaderView
from swarm_tui.tui.widgets.spend_panel import SpendPanel
from swarm_tui.tui.widgets.worker_card import WorkerCard
from swarm_tui.tui.widgets.workers_panel import SCALE_ZERO, PoolFacts, WorkersPanel
from tests.integration.test_tui import seed_decision
from tests.integration.test_tui_first_look import _conductor
from tests.support.env import make_config
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import KEY, approve, build_engine_with_spend
from tests.support.tui import SIZE, make_app, started

WIDE = (120, 36)


def toasts(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


def worker(
    state: WorkerState, wid: str = "d-one-w0", *, reason: str = "", at: float = 0.0, host: str = ""
) -> WorkerEvent:
    return WorkerEvent(
        worker_id=wid,
        job_id=wid.replace("-w", "-j"),
        decision_id="d-one",
        task_id="t-d-one",
        model="openrouter/google/gemini-2.5-flash-lite",
        role="research",
        state=state,
        reason=reason,
        host=host,
        at=at or time.time(),
    )


class _Card(WorkerCard):
    """A card of a fixed size, drawn without an app."""

    size_now = Size(40, 5)

    @property
    def content_size(self) -> Size:
        return self.size_now


def card_text(card: WorkerCard) -> list[str]:
    return [line.plain for line in card.render().renderables]  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------- 1: the key
async def test_with_no_key_the_first_screen_says_so_and_what_to_do(engine: Engine) -> None:
    assert not engine.cfg.openrouter.api_key
    # the first frame: no engine has answered yet, the configuration already says there is no key
    first = HeaderBar.build(
        HeaderView("connecting", "", "in-process", {}, SwarmState(), False, "manual", has_key=False),
        compact=True,
        blocking_short=False,
    )
    assert NO_KEY in first.plain, first.plain
    app = make_app(engine)
    async with app.run_test(size=WIDE) as pilot:
        await started(app, pilot)
        header = app.query_one("#header", HeaderBar)
        await until(lambda: NO_KEY in header.line.plain)
        # with the conductor's words as a real start has them: the key's state keeps its words at 120 columns
        app.room.info = {**app.info, "conductor": _conductor(next_beat_s=30.0)}
        app.room.show_header()
        await pilot.pause()
        assert NO_KEY in header.line.plain, header.line.plain
        assert header.line.cell_len <= header.content_size.width
        await pilot.resize_terminal(80, 24)  # narrow: shorter words, still what to do
        await pilot.pause(0.3)
        app.room.show_header()
        await pilot.pause()
        assert NO_KEY_SHORT in header.line.plain and header.line.cell_len <= header.content_size.width, header.line
    assert NO_KEY == "no OpenRouter key: set OPENROUTER_API_KEY or start with --demo"


async def test_with_no_key_and_a_local_role_the_header_says_local_only(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Issue 28: no key stops nothing when a local role is configured: the header says the swarm runs local only
    (not the red "no OpenRouter key"), at 120 columns and at 80."""
    conf = tmp_path / "xdg-config" / "swarm-tui" / "config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[roles.local]\nmodel = "ollama_chat/qwen2.5:0.5b"\nmax_tokens = 400\n')
    cfg = make_config(tmp_path, nats_server.url)
    assert not cfg.openrouter.api_key and [r.model for r in cfg.roles.values()] == ["ollama_chat/qwen2.5:0.5b"]
    engine = Engine(cfg, await Bus(cfg).connect())
    try:
        app = make_app(engine)
        async with app.run_test(size=WIDE) as pilot:
            await started(app, pilot)
            header = app.query_one("#header", HeaderBar)
            await until(lambda: LOCAL_ONLY in header.line.plain)
            assert "no OpenRouter key:" not in header.line.plain and "set OPENROUTER_API_KEY" not in header.line.plain
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.3)
            app.room.show_header()
            await pilot.pause()
            assert "local only" in header.line.plain and header.line.cell_len <= header.content_size.width, header.line
    finally:
        await engine.stop()
    assert LOCAL_ONLY == "local only (no OpenRouter key)"


@pytest.fixture
async def rejected(tmp_path: Path, nats_server: EmbeddedServer) -> AsyncIterator[tuple[Engine, Bus, FakeOpenRouter]]:
    """An engine with a spend guard, a controller and a pool, whose key OpenRouter rejects (HTTP 401)."""
    async with FakeOpenRouter() as fo:
        fo.key_rejected = True
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        cfg = cfg.replace(openrouter__key_poll_s=3600.0)  # only the poll at start counts
        bus = await Bus(cfg).connect()
        engine, spend, _pool = build_engine_with_spend(cfg, bus)
        observer = await Bus(cfg).connect(setup=False)
        try:
            yield engine, observer, fo
        finally:
            await observer.close()
            await engine.stop()
            await bus.close()


async def test_a_rejected_key_is_said_at_start_in_the_header_the_spend_panel_and_the_cards(
    rejected: tuple[Engine, Bus, FakeOpenRouter],
) -> None:
    engine, observer, fo = rejected
    app = make_app(engine)
    async with app.run_test(size=WIDE) as pilot:
        await started(app, pilot)
        header = app.query_one("#header", HeaderBar)
        spend_panel = app.query_one("#spend", SpendPanel)
        # checked at start (GET /key), before any work, and shown in the header
        await until(lambda: "key rejected (HTTP 401)" in header.line.plain, 10)
        assert fo.key_asks >= 1 and "check OPENROUTER_API_KEY" in header.line.plain, header.line.plain
        await until(lambda: "key rejected (HTTP 401)" in str(spend_panel.shown))
        assert "key limit left none" not in str(spend_panel.shown)
        # approved work waits on the queue, and its cards say why
        d = await approve(observer, 1)
        await until(lambda: len(app.query(WorkerCard)) == 1)
        card = app.query_one(WorkerCard)
        await until(lambda: "key rejected (HTTP 401)" in card.reason, 10)
        assert card.ev.state == "queued" and card.reason.startswith("waits: "), card.reason
        await asyncio.sleep(0.5)
        assert fo.chats() == [], "no call goes out with a rejected key"
        assert d.id in engine.state.decisions


async def test_a_rejected_key_stops_cloud_dispatch_and_a_recheck_polls_at_once(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        fo.key_rejected = True
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        watch = CreditWatch(
            cfg.replace(openrouter__key_poll_s=3600.0).openrouter,
            clock=time.time,
            cooldown_s=60,
            counts=collections.Counter(),
        )
        task = asyncio.create_task(watch.run(), name="test-key-poll")
        try:
            await until(lambda: fo.key_asks == 1)  # the first poll: at once
            assert watch.info()["key_status"] == "rejected (HTTP 401)"
            assert str(watch.blocked()).startswith("key rejected (HTTP 401): check OPENROUTER_API_KEY")
            fo.key_rejected = False  # a new key: asked again now, not an hour later
            watch.recheck()
            await until(lambda: fo.key_asks == 2)
            await until(lambda: watch.blocked() is None and watch.key_status == "ok")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await watch.close()


async def test_a_call_refused_for_its_key_has_the_key_checked_at_once_and_later_jobs_wait(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    async with FakeOpenRouter() as fo:
        cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        cfg = cfg.replace(openrouter__key_poll_s=3600.0)
        bus = await Bus(cfg).connect()
        engine, spend, pool = build_engine_with_spend(cfg, bus)
        await engine.start()
        try:
            await until(lambda: spend.key_status == "ok")
            fo.key_rejected = True  # revoked while the engine runs
            first = await approve(bus, 1)
            await until(lambda: any(w.state == "failed" for w in engine.state.workers.values()), 10)
            await until(lambda: spend.key_status == "rejected (HTTP 401)", 5)  # not an hour later
            assert str(pool.blocked() or pool.cloud_blocked()).startswith("key rejected (HTTP 401)")
            asked = len(fo.chats())
            second = await approve(bus, 1)
            await until(lambda: any(w.decision_id == second.id for w in engine.state.workers.values()))
            await asyncio.sleep(0.6)
            assert len(fo.chats()) == asked, "no call goes out while the key is rejected"
            assert first.id != second.id
        finally:
            await engine.stop()
            await bus.close()


def spend_of(**over: Any) -> SpendInfo:
    spend = {
        "ceiling_usd": 1.0,
        "today_usd": 0.1,
        "reserved_usd": 0.0,
        "session_usd": 0.1,
        "remaining_usd": 0.9,
        "price_source": "test",
        "credits_left_usd": None,
        "key_status": "ok",
        "out_of_credit": False,
        "blocked_reason": "",
        "by_model": {},
    }
    spend.update(over)
    return cast(SpendInfo, spend)


def test_the_spend_panel_says_the_key_in_words() -> None:
    said = {
        status: SpendPanel.build(spend_of(key_status=status, credits_left_usd=left), 40).plain.splitlines()
        for status, left in (("ok", None), ("not checked yet", None), ("rejected (HTTP 401)", None), ("ok", 4.5))
    }
    assert "key has no limit" in said["ok"] or "key limit left $4.50" in said["ok"]
    assert "key limit not checked yet" in said["not checked yet"]
    assert "key rejected (HTTP 401): check OPENROUTER_API_KEY" in said["rejected (HTTP 401)"]
    assert not any("left none" in line for lines in said.values() for line in lines)
    assert "key has no limit" in SpendPanel.build(spend_of(), 40).plain


# ------------------------------------------------------------------------------------------- 12: over the ceiling
def test_over_the_ceiling_is_not_nearly_spent() -> None:
    over = SpendPanel.build(spend_of(today_usd=2.36, ceiling_usd=1.0), 40).plain
    assert "OVER CEILING" in over and "budget USD" in over and "NEARLY SPENT" not in over, over
    nearly = SpendPanel.build(spend_of(today_usd=0.92), 40).plain
    assert "NEARLY SPENT" in nearly and "OVER CEILING" not in nearly


async def test_approving_over_the_ceiling_warns_that_it_will_not_start(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-one", workers=1)
        await until(lambda: app.query_one("#decisions", DataTable).row_count == 1)
        app.room.info = cast(EngineInfo, {**app.info, "spend": spend_of(today_usd=2.36, ceiling_usd=1.0)})
        await pilot.pause()
        await pilot.press("a")
        await until(lambda: engine.state.decisions["d-one"].status == "approved")
        warned = [t for t in toasts(app) if "will not start" in t]
        assert warned and "over the ceiling" in warned[0] and "budget USD" in warned[0], toasts(app)


# ------------------------------------------------------------------------------------------- 2: a failure says why
async def test_a_failed_card_and_its_expanded_view_say_why(engine: Engine, observer: Bus) -> None:
    why = "the provider refused the key (401): No auth credentials found"
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-one", workers=1)
        await observer.publish_event(worker("failed", reason=why))
        await until(lambda: len(app.query(WorkerCard)) == 1)
        card = app.query_one(WorkerCard)
        await until(lambda: card.ev.state == "failed" and card.content_size.width > 30)
        shown = " ".join(line.strip() for line in card_text(card))
        assert "the provider refused the key (401)" in shown, shown
        card.focus()
        await pilot.pause()
        assert why in " ".join(card_text(card)[1:4]), card_text(card)  # expanded: whole
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, TextScreen))
        screen = app.screen
        assert isinstance(screen, TextScreen)
        assert why in screen.body.plain and "(no output yet)" in screen.body.plain, screen.body.plain


def test_a_queued_cards_reason_is_whole_when_expanded_and_wraps_on_words() -> None:
    why = "OPENROUTER_API_KEY is not set: set it, or start with --demo"
    card = _Card("d-one-w0", OutputRing(), worker("queued", reason=why), "a task")
    small = card_text(card)
    assert small[0].startswith("queued 0 tok $0.0000"), small
    assert small[1] == "OPENROUTER_API_KEY is not set: set it,", small  # broken after a word, not in one
    card.size_now = Size(30, 12)
    card.set_expanded(True)
    assert " ".join(card_text(card)[1:4]).startswith(why), card_text(card)


# ------------------------------------------------------------------------------------------- 13: recovering
def test_a_worker_whose_process_stopped_before_the_engine_started_is_recovering() -> None:
    facts = PoolFacts(host="box", started_at=1000.0, ack_wait_s=10)
    old = worker("running", at=990.0, host="box")
    note = facts.note(old)
    assert note.startswith("recovering after a restart:") and "ack wait 10s" in note, note
    assert facts.note(worker("running", at=1001.0, host="box")) == ""  # redelivered: running again
    assert facts.note(worker("running", at=990.0, host="elsewhere")) == ""  # another host's worker lives on
    card = _Card("d-one-w0", OutputRing(), old, "a task", note)
    assert any(line.startswith("recovering after a restart:") for line in card_text(card)), card_text(card)


# ------------------------------------------------------------------------------------------- 9: scale 0
async def test_scale_keys_show_the_value_in_one_place_and_scale_zero_says_so(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        start = engine.state.scale
        assert start is not None and start > 0
        for _ in range(start + 1):  # one more than needed: it stays at 0
            await pilot.press("minus")
        await until(lambda: engine.state.scale == 0)
        await asyncio.sleep(0.3)
        app.refresh_state()
        await pilot.pause()
        header = app.query_one("#header", HeaderBar)
        assert "scale 0: no worker will start (+ to raise)" in header.line.plain, header.line.plain
        panel = app.query_one("#workers-panel", WorkersPanel)
        assert panel.note == SCALE_ZERO
        assert not [t for t in toasts(app) if "scale" in t], toasts(app)  # no toast per key


# ------------------------------------------------------------------------------------------- 15: paused
async def test_paused_is_said_once_with_the_key_that_resumes(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("p")
        await until(lambda: engine.state.paused)
        header = app.query_one("#header", HeaderBar)
        app.room.show_header()
        await until(lambda: "paused (p to resume)" in header.line.plain)
        assert "PAUSED" not in header.line.plain and header.line.plain.count("paused") == 1, header.line.plain


def test_output_wraps_on_word_boundaries() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    assert wrap_tail(text, 10, 5) == ["the quick", "brown fox", "jumps over", "the lazy", "dog"]
    assert wrap_tail("z" * 25, 10, 3) == ["z" * 10, "z" * 10, "z" * 5]  # a word longer than a line is cut


# ------------------------------------------------------------------------------------------- 8: live cards first
async def test_a_new_running_card_goes_before_the_finished_ones(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-one", workers=3)
        for i in range(2):
            await observer.publish_event(worker("done", f"d-one-w{i}"))
        await until(lambda: len(app.query(WorkerCard)) == 2)
        await observer.publish_event(worker("running", "d-one-w2"))
        await until(lambda: len(app.query(WorkerCard)) == 3)
        await pilot.pause(0.2)
        order = [c.worker_id for c in app.query(WorkerCard)]
        assert order[0] == "d-one-w2", order

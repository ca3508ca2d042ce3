"""The app driven by Pilot against an in-process engine on a real nats-server: every key and palette action
ends up as a message on the bus (or a screen), and hostile model output renders inert."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from textual.widgets import DataTable, Input

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Chunk, Decision, PlanItem, Reply, Task, WorkerEvent
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.states import WorkerState
from swarm_tui.textsafe import is_clean
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.commands import PALETTE, SwarmCommands, palette_actions
from swarm_tui.tui.link import LocalLink, RemoteLink, StaticLink
from swarm_tui.tui.model import RING_CHARS, OutputRing
from swarm_tui.tui.scenes import NOW, build
from swarm_tui.tui.scenes import make_app as scene_app
from swarm_tui.tui.screens.compare import CompareScreen
from swarm_tui.tui.screens.confirm import ConfirmScreen
from swarm_tui.tui.screens.control_room import ControlRoom
from swarm_tui.tui.screens.help import HelpScreen
from swarm_tui.tui.screens.prompt import InputScreen
from swarm_tui.tui.screens.results import ResultsScreen
from swarm_tui.tui.screens.text import TextScreen
from swarm_tui.tui.widgets.answer import Answer
from swarm_tui.tui.widgets.decision_detail import DecisionDetail
from swarm_tui.tui.widgets.worker_card import WorkerCard
from tests.support.polling import until, until_async
from tests.support.tui import HOSTILE, SIZE, make_app, started


async def seed_decision(bus: Bus, did: str = "d-one", workers: int = 2, raw: str = "RAW-ANSWER") -> Decision:
    now = time.time()
    task = Task(id=f"t-{did}", text="write a haiku about queues", created_at=now)
    await bus.publish_event(task, msg_id=task.id)
    plan = [
        PlanItem(task_id=task.id, role="research", model="openrouter/google/gemini-2.5-flash-lite", max_tokens=100)
        for _ in range(workers)
    ]
    d = Decision(
        id=did,
        task_ids=[task.id],
        plan=plan,
        est_cost_min=0.001,
        est_cost_max=0.002,
        source="rules",
        raw=raw,
        created_at=now,
        expires_at=now + 900,
    )
    await bus.publish_event(d, msg_id=d.id)
    return d


async def seed_worker(bus: Bus, wid: str = "d-one-w0", state: WorkerState = "running") -> WorkerEvent:
    ev = WorkerEvent(
        worker_id=wid,
        job_id=wid.replace("-w", "-j"),
        decision_id="d-one",
        task_id="t-d-one",
        model="openrouter/google/gemini-2.5-flash-lite",
        state=state,
        at=time.time(),
    )
    await bus.publish_event(ev)
    return ev


def _nc(bus: Bus) -> Any:
    assert bus.nc is not None
    return bus.nc


async def last(bus: Bus, kind: str, ident: str) -> Any:
    return await bus.last_event(S.evt(kind, ident))


# ------------------------------------------------------------------------------------------- keys
async def test_approve_reject_and_edit_keys(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-one", workers=2)
        await seed_decision(observer, "d-two", workers=2)
        await until(lambda: app.query_one("#decisions", DataTable).row_count == 2)
        await pilot.pause()
        # newest first: the cursor is on d-two
        await pilot.press("e")
        assert isinstance(app.screen, InputScreen)
        await pilot.press("backspace", "4", "enter")
        ev = await until_async(lambda: last(observer, "approval", "d-two"))
        assert ev.action == "edited" and ev.workers == 4 and ev.by == "tui"
        await pilot.press("a")
        ev = await until_async(lambda: _final(observer, "d-two"))
        assert ev.action == "approved" and ev.by == "tui"
        await until(lambda: engine.state.decisions["d-two"].status == "approved")
        # the cursor is on an approved decision: `r` goes to the newest pending one (d-one)
        await pilot.press("r")
        ev = await until_async(lambda: _final(observer, "d-one"))
        assert ev.action == "rejected"
        await until(lambda: engine.state.decisions["d-one"].status == "rejected")
        await pilot.press("a")  # nothing pending: a warning, no event
        await pilot.pause()
        assert engine.state.decisions["d-one"].status == "rejected"


async def _final(bus: Bus, did: str) -> Any:
    ev = await last(bus, "approval", did)
    return ev if ev is not None and ev.action in ("approved", "rejected") else None


async def test_edit_rejects_a_bad_count(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-bad")
        await until(lambda: app.query_one("#decisions", DataTable).row_count == 1)
        await pilot.press("e", "backspace", "9", "9", "9", "enter")
        assert isinstance(app.screen, InputScreen)  # still open: 999 is over swarm.max_scale
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, InputScreen)
        assert engine.state.decisions["d-bad"].workers is None


async def test_scale_keys(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        start = engine.state.scale
        assert start is not None and start == engine.cfg.swarm.scale
        await pilot.press("plus")
        await until(lambda: engine.state.scale == start + 1)
        ev = await last(observer, "control", "scale")
        assert ev.value == start + 1 and ev.by == "tui"
        await pilot.press("minus", "minus")
        await until(lambda: engine.state.scale == start - 1)
        kv = await observer.kv(S.KV_STATE)
        assert (await kv.get("scale")).value == str(start - 1).encode()


async def test_pause_key_toggles(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("p")
        await until(lambda: engine.state.paused)
        assert (await last(observer, "control", "pause")).by == "tui"
        app.query_one("#header").refresh()
        await pilot.press("p")
        await until(lambda: not engine.state.paused)
        assert (await last(observer, "control", "resume")) is not None


async def test_cancel_worker_and_cancel_all(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer)
        await seed_worker(observer, "d-one-w0")
        await seed_worker(observer, "d-one-w1")
        await until(lambda: len(app.query(WorkerCard)) == 2)
        await pilot.press("c")  # no worker selected yet: nothing happens
        await pilot.pause()
        assert await last(observer, "control", "cancel") is None
        app.query_one("#w_d-one-w1", WorkerCard).focus()
        await pilot.pause()
        await pilot.press("c")
        ev = await until_async(lambda: last(observer, "control", "cancel"))
        assert ev.target == "worker:d-one-w1"
        kv = await observer.kv(S.KV_CANCEL)
        assert (await kv.get("d-one-w1")).value == b"1"
        # C asks first; n keeps them running
        await pilot.press("C")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert (await last(observer, "control", "cancel")).target == "worker:d-one-w1"
        await pilot.press("C", "y")
        await until_async(lambda: _target(observer, "all"))


async def _target(bus: Bus, target: str) -> bool:
    ev = await last(bus, "control", "cancel")
    return ev is not None and ev.target == target


async def test_new_task_key_publishes_a_task(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("n")
        assert isinstance(app.screen, InputScreen)
        for ch in "sum [b]it[/b]":
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        tv = await until(lambda: next(iter(engine.state.tasks.values()), None))
        assert tv.task.text == "sum [b]it[/b]" and tv.task.source == "tui"
        stored = await last(observer, "task", tv.id)
        assert stored is not None and stored.source == "tui"
        await until(lambda: app.query_one("#tasks", DataTable).row_count == 1)


async def test_a_task_too_large_to_send_is_said_in_the_dialog_and_kept(engine: Engine, observer: Bus) -> None:
    """200,000 characters of 4-byte text fit the old character limit but not a message: before, the dialog
    closed, the task was lost and a multi-line validation error flashed; now the dialog stays with one line."""
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("n")
        assert isinstance(app.screen, InputScreen)
        box = app.screen.query_one("#modal-input", Input)
        box.value = "\U0001f41d" * 200_000
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, InputScreen) and len(box.value) == 200_000  # nothing lost
        hint = str(app.screen.query_one("#modal-hint").render())
        assert "bytes as sent; the limit is" in hint and "\n" not in hint
        assert not engine.state.tasks  # nothing published


async def test_enter_expands_decision_raw_text_and_worker_output(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-raw", raw='{"spawn": true, "why": "RAW-ANSWER"}')
        await until(lambda: app.query_one("#decisions", DataTable).row_count == 1)
        app.query_one("#decisions").focus()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, TextScreen))
        assert "RAW-ANSWER" in app.screen.body.plain  # type: ignore[attr-defined]
        await pilot.press("escape")
        await seed_worker(observer, "d-raw-w0")
        await until(lambda: len(app.query(WorkerCard)) == 1)
        chunk = Chunk(worker_id="d-raw-w0", seq=0, text="hello out")
        await _nc(observer).publish(S.chunk("d-raw-w0"), chunk.to_bytes())
        card = app.query_one(WorkerCard)
        card.focus()
        await pilot.pause()
        assert card.styles.height is not None and card.styles.height.value > 7  # focus expands the card
        await until(lambda: "hello out" in card.ring.text())
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, TextScreen))
        assert "hello out" in app.screen.body.plain  # type: ignore[attr-defined]


async def test_filter_and_help(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-alpha")
        await seed_decision(observer, "d-beta")
        table = app.query_one("#decisions", DataTable)
        await until(lambda: table.row_count == 2)
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        assert box.has_focus
        for ch in "alpha":
            await pilot.press(ch)
        await until(lambda: table.row_count == 1)
        assert app.room.filter_text == "alpha"
        assert app.query_one("#tasks", DataTable).row_count == 1
        await pilot.press("escape")
        await until(lambda: table.row_count == 2)
        assert app.room.filter_text == "" and not box.display
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert any(ident == "approve" for _k, _d, ident in app.screen.rows)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_offers_every_action(engine: Engine, observer: Bus) -> None:
    for _title, _key, action in PALETTE:
        name = "action_" + action.split("(")[0]
        assert hasattr(ControlRoom, name) or hasattr(SwarmApp, name), action
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        start = engine.state.scale
        assert start is not None
        await pilot.press("ctrl+p")
        await pilot.pause()
        for ch in "scale up":
            await pilot.press(ch if ch != " " else "space")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(lambda: engine.state.scale == start + 1)
        await pilot.press("ctrl+p")
        for ch in "pause or":
            await pilot.press(ch if ch != " " else "space")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(lambda: engine.state.paused)


# ------------------------------------------------------------------------------------------- the palette, in order
def scene(name: str, data_dir: Path, link_class: type[StaticLink] = StaticLink) -> SwarmApp:
    """A scene's app whose fake link records every request; saved results go under ``data_dir``."""
    link, rings, hist = build(name)
    cfg = link.cfg.replace(paths__data_dir=str(data_dir))
    fake = link_class(cfg, link.state, link.info(), demo=True)
    for tv in fake.state.tasks.values():
        tv.promoted = ""  # the compare scene's: nothing promoted, so promote has an answer to send
    return SwarmApp(fake, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


def asked(app: SwarmApp) -> list[tuple[str, dict[str, Any]]]:
    assert isinstance(app.link, StaticLink)
    return app.link.controls


async def run_palette(app: SwarmApp, pilot: Any, action: str) -> None:
    """Choose the palette's entry for ``action`` on the screen on top: its command runs on the App's loop, as
    the palette runs it once it has closed."""
    provider = SwarmCommands(app.screen)
    hits = [h async for h in provider.discover()]
    [hit] = [h for h in hits if isinstance(h.command, partial) and h.command.args == (action,)]
    app.call_later(hit.command)
    await pilot.pause()


def toasts(app: SwarmApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def newest_answer(app: SwarmApp) -> str:
    tid = next(iter(app.link.state.tasks))
    return app.link.state.task_results(tid)[-1].text


# action -> (scene, what to do first, the effect); every palette entry has one
PALETTE_EFFECTS: dict[str, tuple[str, Callable[[SwarmApp], object], Callable[[SwarmApp, Path], bool]]] = {
    "approve": ("needs_you", lambda app: None, lambda app, _d: asked(app) == [("approve", {"id": "d-scene03"})]),
    "reject": ("needs_you", lambda app: None, lambda app, _d: asked(app) == [("reject", {"id": "d-scene03"})]),
    "edit_workers": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, InputScreen)),
    "scale(1)": ("needs_you", lambda app: None, lambda app, _d: asked(app) == [("scale", {"delta": 1, "current": 10})]),
    "scale(-1)": (
        "needs_you",
        lambda app: None,
        lambda app, _d: asked(app) == [("scale", {"delta": -1, "current": 10})],
    ),
    "cancel_worker": (
        "needs_you",
        lambda app: app.query_one("#w_d-scene02-w1", WorkerCard).focus(),
        lambda app, _d: asked(app) == [("cancel", {"worker": "d-scene02-w1"})],
    ),
    "cancel_all": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, ConfirmScreen)),
    "pause": ("needs_you", lambda app: None, lambda app, _d: asked(app) == [("pause", {})]),
    "new_task": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, InputScreen)),
    "expand": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, TextScreen)),
    "filter": ("needs_you", lambda app: None, lambda app, _d: app.room.filter_box.has_focus),
    "history": ("needs_you", lambda app: None, lambda app, _d: type(app.screen).__name__ == "HistoryScreen"),
    "spend": ("needs_you", lambda app: None, lambda app, _d: type(app.screen).__name__ == "SpendScreen"),
    "attention": ("needs_you", lambda app: None, lambda app, _d: [v for v, _a in asked(app)] == ["seen"]),
    # a scene has no log to read: it says so (test_tui_replay.py opens it on a real one)
    "timeline": (
        "needs_you",
        lambda app: None,
        lambda app, _d: "the timeline opens once the log is read" in toasts(app),
    ),
    "copy_answer": ("compare", lambda app: None, lambda app, _d: app.clipboard == newest_answer(app)),
    "save_results": (
        "compare",
        lambda app: None,
        lambda app, d: (d / "exports" / f"{next(iter(app.link.state.tasks))}.md").is_file(),
    ),
    "compare": ("compare", lambda app: None, lambda app, _d: isinstance(app.screen, CompareScreen)),
    "promote": ("compare", lambda app: None, lambda app, _d: asked(app) == [("promote", {"job": "d-scene07-j2r"})]),
    "help": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, HelpScreen)),
    "quit": ("needs_you", lambda app: None, lambda app, _d: isinstance(app.screen, ConfirmScreen)),  # workers run
}


def test_every_palette_entry_has_an_effect_to_check() -> None:
    assert sorted(PALETTE_EFFECTS) == sorted(action for _t, _b, action in PALETTE)


@pytest.mark.parametrize("action", [action for _t, _b, action in PALETTE])
async def test_each_palette_entry_does_what_its_key_does(action: str, tmp_path: Path) -> None:
    """Run through the provider on the control room: the request reaches the (fake) link, or the screen opens."""
    name, prepare, effect = PALETTE_EFFECTS[action]
    app = scene(name, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        prepare(app)
        await pilot.pause()
        await run_palette(app, pilot, action)
        await until(lambda: effect(app, tmp_path), 5, f"the effect of {action}")


async def test_the_palette_acts_on_the_screen_it_was_opened_on(tmp_path: Path) -> None:
    """Over the results screen: copy and promote take its focused answer; approve has no meaning there and acts
    on the control room (no decision waits in this scene: it says so); help is the App's."""
    app = scene("compare", tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        app.room.task_table.focus()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, ResultsScreen), 5, "the results screen")
        await pilot.pause()
        results = app.screen
        assert isinstance(results, ResultsScreen)
        first = results.query(Answer).first()
        first.focus()
        await pilot.pause()
        await run_palette(app, pilot, "copy_answer")
        assert app.clipboard == first.result.text  # the focused answer, not the room's newest
        await run_palette(app, pilot, "approve")
        await until(lambda: "no decision is waiting for approval" in toasts(app), 5, "the room's answer")
        assert app.screen is results
        await run_palette(app, pilot, "promote")
        await until(lambda: asked(app) == [("promote", {"job": first.result.job_id})], 5, "the promote request")
        await run_palette(app, pilot, "help")
        assert isinstance(app.screen, HelpScreen)


class GatedLink(StaticLink):
    """A fake link whose approve waits until the test lets it go; every start and end is noted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.seen: list[str] = []

    async def control(self, verb: str, args: dict[str, Any]) -> Reply | None:
        self.seen.append(f"start {verb}")
        if verb == "approve":
            await self.gate.wait()
        reply = await super().control(verb, args)
        self.seen.append(f"end {verb}")
        return reply


async def test_requests_go_one_at_a_time_in_the_order_of_the_keys(tmp_path: Path) -> None:
    """Approve then reject, pressed at once: the key returns before the engine answers (help opens while the
    approve waits), the reject waits for the approve's answer, and the toasts come in the same order."""
    app = scene("needs_you", tmp_path, GatedLink)
    link = app.link
    assert isinstance(link, GatedLink)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        await pilot.press("a", "r", "question_mark")
        assert isinstance(app.screen, HelpScreen)  # no key waited behind the approve
        await until(lambda: link.seen == ["start approve"], 5, "the approve on its way")
        await pilot.pause(0.1)
        assert link.seen == ["start approve"]  # the reject waits its turn
        link.gate.set()
        await until(lambda: len(link.seen) == 4, 5, "both answered")
        assert link.seen == ["start approve", "end approve", "start reject", "end reject"]
        assert link.controls == [("approve", {"id": "d-scene03"}), ("reject", {"id": "d-scene03"})]
        await until(lambda: "rejected d-scene03" in toasts(app), 5, "the toasts")
        said = toasts(app)
        assert said.index("approved d-scene03 (2 workers)") < said.index("rejected d-scene03")


class ScriptedLink(StaticLink):
    """A fake link that answers each request with the next of ``answers``: a Reply, None, or an error to raise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[Reply | None | Exception] = []

    async def control(self, verb: str, args: dict[str, Any]) -> Reply | None:
        self.controls.append((verb, args))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_each_answer_to_a_request_is_said_in_a_toast(tmp_path: Path) -> None:
    """Refused, no engine, the bus down, done; a quiet request (the needs-you watch's "seen") says nothing."""
    app = scene("needs_you", tmp_path, ScriptedLink)
    link = app.link
    assert isinstance(link, ScriptedLink)
    link.answers = [
        Reply(ok=False, error="d-scene03 is not pending"),
        None,
        RuntimeError("nats: connection closed"),
        Reply(ok=True),
        RuntimeError("nats: no responders"),
    ]
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        await pilot.press("a", "a", "a", "a")
        await until(lambda: "approved d-scene03 (2 workers)" in toasts(app), 5, "the four answers")
        said = [(str(n.message), n.title, n.severity) for n in app._notifications]
        assert said == [
            ("d-scene03 is not pending", "approve", "warning"),
            ("approve: no engine answers on the bus", "", "error"),
            ("approve failed: nats: connection closed", "", "error"),
            ("approved d-scene03 (2 workers)", "", "information"),
        ]
        app.control("seen", {"kinds": ["approval"]})  # the way the needs-you watch records what was seen
        await until(lambda: len(link.controls) == 5, 5, "the quiet request")
        await pilot.pause()
        assert len(app._notifications) == 4


async def test_keys_can_be_remapped_from_config(engine: Engine, observer: Bus) -> None:
    engine.cfg.keys["approve"] = "y"
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-remap")
        await until(lambda: app.query_one("#decisions", DataTable).row_count == 1)
        # every place that names the key names the new one: the detail's hint line and the palette's hints
        detail = app.query_one("#decision-detail", DecisionDetail)
        await until(lambda: "y approve · r reject" in str(detail.detail))
        assert {a["action"]: a["key"] for a in palette_actions(app.keymap)}["approve"] == "y"
        await pilot.press("y")
        await until(lambda: engine.state.decisions["d-remap"].status == "approved")


async def test_quit_confirms_while_workers_run_and_stops_the_engine(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer)
        await seed_worker(observer)
        await until(lambda: engine.state.live_workers())
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and engine.bus.nc is not None
        await pilot.press("q", "y")
        await until(lambda: not app.is_running, timeout=10)
    assert engine.bus.state == "closed" and engine.bus.nc is None  # the engine's stop path ran


# ------------------------------------------------------------------------------------------- streaming
async def test_chunks_stream_into_bounded_cards(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await seed_decision(observer, "d-s", workers=10)
        for i in range(10):
            await seed_worker(observer, f"d-s-w{i}")
        await until(lambda: len(app.query(WorkerCard)) == 10)
        flushes = app.scheduler.flushes
        big = "x" * 1000 + "\n"
        for seq in range(30):
            for i in range(10):
                await _nc(observer).publish(
                    S.chunk(f"d-s-w{i}"),
                    Chunk(worker_id=f"d-s-w{i}", seq=seq, text=f"{seq}:{big}", tokens=5).to_bytes(),
                )
        await _nc(observer).publish(S.chunk("d-s-w0"), b"{not json")
        await _nc(observer).publish(S.chunk("d-s-w3"), Chunk(worker_id="d-s-w3", seq=30, text="FINAL").to_bytes())
        await _nc(observer).flush()
        await until(lambda: app.rings["d-s-w9"].last_seq == 29 and app.rings["d-s-w3"].last_seq == 30)
        await until(lambda: app.link.bad_chunks == 1)
        ring = app.rings["d-s-w3"]
        assert ring.size <= RING_CHARS and ring.dropped > 0 and ring.tokens == 150
        await pilot.pause(0.1)
        assert app.scheduler.flushes > flushes  # the one timer runs
        card = app.query_one("#w_d-s-w3", WorkerCard)
        assert "FINAL" in _render_plain(card, 60)


def test_output_ring_bounds_and_ignores_replayed_chunks() -> None:
    r = OutputRing(limit=100)
    assert r.append("a" * 80, tokens=1, seq=0)
    assert not r.append("dup", seq=0)
    r.append("b" * 50, seq=1)
    assert r.size == 100 and r.text().endswith("b" * 50) and r.dropped == 30
    r.append("c" * 500, seq=2)
    assert r.text() == "c" * 100
    r2 = OutputRing()
    r2.append("line1\nline2\n" + "z" * 25)
    assert r2.tail_lines(10, 3) == ["zzzzzzzzzz", "zzzzzzzzzz", "zzzzz"]


def _render_plain(widget: Any, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    with console.capture() as cap:
        console.print(widget.render())
    return cap.get()


async def test_hostile_output_renders_inert(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        now = time.time()
        await observer.publish_event(Task(id="t-evil", text=HOSTILE, created_at=now))
        await seed_decision(observer, "d-evil", raw=HOSTILE)
        await seed_worker(observer, "d-evil-w0")
        await _nc(observer).publish(
            S.chunk("d-evil-w0"), Chunk(worker_id="d-evil-w0", seq=0, text=HOSTILE + "\nnext line").to_bytes()
        )
        await until(lambda: "next line" in app.rings.get("d-evil-w0", OutputRing()).text())
        # the card is mounted at once; the tables follow at the next (throttled, <= 250 ms) state refresh
        await until(lambda: "t-evil" in app.query_one("#tasks", DataTable).rows and bool(app.query(WorkerCard)))
        await pilot.pause(0.1)
        card = app.query_one(WorkerCard)
        shown = _render_plain(card, 150)
        assert is_clean(shown.replace("\n", "")), repr(shown)
        assert "[link=http://x]y[/l" in shown  # markup shown literally, not applied
        assert "␛]0;pwned␇" in shown  # the escape is a visible picture, not an escape
        assert "␛[2J" in card.ring.text() and "[bold red]ALERT[/]" in card.ring.text()
        cell = app.query_one("#tasks", DataTable).get_row("t-evil")[-1]
        assert is_clean(cell.plain) and "[bold red]ALERT" in cell.plain
        svg = app.export_screenshot()
        for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert bad not in svg
        assert "pwned" in svg  # the OSC title text is visible as text, the sequence inert
        table = app.query_one("#decisions", DataTable)
        table.focus()
        # enter acts on the row under the cursor: wait until the focus and the row are there (a state refresh
        # or a toast may land between the focus and the key)
        await until(lambda: app.focused is table and app.room.selected_decision() is not None, 5, "the row")
        await pilot.press("enter")
        await until(
            lambda: isinstance(app.screen, TextScreen),
            15,
            f"the decision's text (screen {app.screen}, focus {app.focused})",
        )
        body = app.screen.body.plain  # type: ignore[attr-defined]
        assert is_clean(body.replace("\n", "")) and "[link=http://x]y[/link]" in body


async def test_panels_repaint_only_what_changed() -> None:
    """The header, the decision detail and the RAM and Spend panels are shown again with every state refresh and
    every second: an unchanged text repaints nothing; a changed one repaints its panel once, and re-lays it out
    only when its height may change (a re-layout is of the whole screen)."""
    app = scene_app("workers")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        room = app.room
        calls: dict[str, list[bool]] = {}  # panel -> the layout flag of each refresh
        panels = {
            "header": room.header_bar,
            "detail": room.detail_view,
            "ram": room.ram_panel,
            "spend": room.spend_panel,
        }
        for name, widget in panels.items():

            def counting(*a: Any, _name: str = name, _orig: Any = widget.refresh, **k: Any) -> Any:
                calls.setdefault(_name, []).append(bool(k.get("layout")))
                return _orig(*a, **k)

            widget.refresh = counting  # type: ignore[method-assign]
        for _ in range(3):
            app.refresh_all()
        assert calls == {}
        app.link.state.scale = 11
        app.refresh_all()
        assert calls == {"header": [False]}  # one line of a fixed height: never re-laid out
        calls.clear()
        ram = cast(dict[str, Any], app.info["ram"])
        ram["available_mb"] -= 200
        room.show_guards()
        room.show_guards()
        assert calls == {"ram": [False]}  # new figures, the same lines
        calls.clear()
        spend = cast(dict[str, Any], app.info["spend"])
        spend.update(reconciling=2, reconciling_usd=0.021)
        room.show_guards()
        assert calls == {"spend": [True]}  # one more line: its height changes
        calls.clear()
        other = app.link.state.decisions["d-scene02"]
        room.detail_view.decision = other
        room.detail_view.decision = other
        assert calls == {"detail": [True]}  # its height follows the text


async def test_keys_still_work_when_every_card_goes_while_one_has_the_focus() -> None:
    """Finished cards linger 30 s and then go together. With one of them focused, removing them one by one
    left the focus on a removed card, and from then on no key reached the App (not even q)."""
    app = scene_app("workers")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.query_one("#w_d-scene02-w1", WorkerCard).focus()
        await pilot.pause()
        app.link.state.workers.clear()
        app.refresh_state()
        await pilot.pause()
        assert not app.query(WorkerCard)
        assert app.focused is None or app.focused.is_attached
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


# ------------------------------------------------------------------------------------------- attach, layout, failures
async def test_attached_ui_sees_the_same_state_and_controls_the_engine(
    engine: Engine, observer: Bus, cfg: Config
) -> None:
    await engine.start()  # the engine runs "elsewhere" (headless)
    remote = SwarmApp(RemoteLink(cfg, cfg.nats.url), refresh_ms=20)
    async with remote.run_test(size=SIZE) as pilot:
        await started(remote, pilot)
        await seed_decision(observer, "d-far")
        await until(lambda: "d-far" in remote.link.state.decisions)
        await until(lambda: "d-far" in engine.state.decisions)
        await until(lambda: remote.info.get("engine", {}).get("pid"), timeout=4)
        await pilot.press("a")
        await until(lambda: engine.state.decisions["d-far"].status == "approved")
        await until(lambda: remote.link.state.decisions["d-far"].status == "approved")
        assert remote.link.state.snapshot()["decisions"] == engine.state.snapshot()["decisions"]
        await pilot.press("q")  # attached: quitting does not stop the engine
        await until(lambda: not remote.is_running)
    assert engine.bus.nc is not None and not engine.bus.nc.is_closed


async def test_compact_layout_at_80x24_tabs_between_panels(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(app, pilot)
        assert app.room.compact and app.query_one("#tabs").display
        assert app.query_one("#decisions-panel").display and not app.query_one("#workers-panel").display
        await pilot.press("2")
        assert app.query_one("#workers-panel").display and not app.query_one("#decisions-panel").display
        await pilot.press("4")
        assert app.query_one("#guards").display and not app.query_one("#left").display
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert not app.room.compact and all(
            app.query_one(f"#{p}").display for p in ("tasks-panel", "workers-panel", "decisions-panel", "guards")
        )


class _BrokenLink(LocalLink):
    async def start(self) -> None:
        raise RuntimeError("cannot reach the bus at nats://nowhere")


async def test_engine_failure_becomes_a_notification_and_the_app_stays_up(engine: Engine) -> None:
    app = SwarmApp(_BrokenLink(engine, connect=False), refresh_ms=20)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.room.engine_error)
        await pilot.pause()
        assert app.is_running
        assert any("cannot reach the bus" in str(n.message) for n in app._notifications)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)  # still usable


# The crash screen (no locals, no key) is tested for real in test_secrets.py: the App is made to crash.

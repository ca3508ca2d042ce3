"""The app's needs-you alerts (tui/needs_you.py, tui/alerts.py): one bell and one desktop notification (OSC 9
and OSC 777) per transition, each kind switchable, wrapped for tmux only when tmux lets it through, a header
badge until seen, and ``!`` that goes there and records "seen" on the bus. The bytes a real terminal receives
are checked in tests/integration/test_alerts_pty.py."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_tui.engine.bus.wire import Decision, PlanItem, Result, Task
from swarm_tui.engine.info import Need
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import NeedKind
from swarm_tui.textsafe import is_clean
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.attention import sequences as alerts
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.scenes import NOW, scene_config
from tests.support.polling import until

SIZE = (160, 48)
OSC9 = "\x1b]9;swarm-tui: "
OSC777 = "\x1b]777;notify;swarm-tui;"


def need(what: str = "1 decision waits for approval (newest d-1)", kind: NeedKind = "approval") -> Need:
    return {"kind": kind, "what": what, "since": NOW, "latest": NOW, "count": 1, "seen": False}


# ------------------------------------------------------------------------------------------ the bytes
def test_the_sequence_is_a_bell_then_osc_9_and_777() -> None:
    seq = alerts.alert_sequence(need(), bell=True, desktop=True, tmux=False, passthrough=False)
    assert seq == (
        "\x07"
        "\x1b]9;swarm-tui: 1 decision waits for approval (newest d-1)\x07"
        "\x1b]777;notify;swarm-tui;1 decision waits for approval (newest d-1)\x07"
    )
    assert alerts.alert_sequence(need(), bell=False, desktop=True, tmux=False, passthrough=False).startswith(OSC9)
    assert alerts.alert_sequence(need(), bell=True, desktop=False, tmux=False, passthrough=False) == "\x07"
    assert alerts.alert_sequence(need(), bell=False, desktop=False, tmux=False, passthrough=False) == ""


def test_inside_tmux_the_notification_is_wrapped_only_when_allowed() -> None:
    wrapped = alerts.alert_sequence(need(), bell=True, desktop=True, tmux=True, passthrough=True)
    assert wrapped.startswith("\x07\x1bPtmux;\x1b\x1b]9;swarm-tui: ") and wrapped.endswith("\x07\x1b\\")
    assert wrapped.count("\x1bPtmux;") == 1 and "\x1b]777" not in wrapped.replace("\x1b\x1b]777", "")
    # tmux without allow-passthrough swallows it: the bell alone, no stray sequence
    assert alerts.alert_sequence(need(), bell=True, desktop=True, tmux=True, passthrough=False) == "\x07"


def test_hostile_text_cannot_end_the_sequence_or_drive_the_terminal() -> None:
    evil = "HTTP 402 \x07\x1b]0;pwned\x07\x1b\\ \x9b31m ; 9;4;3 \u202eevil\u202c" + "x" * 500
    seq = alerts.alert_sequence(need(evil), bell=False, desktop=True, tmux=False, passthrough=False)
    assert seq.count("\x07") == 2 and seq.count("\x1b") == 2  # exactly the two OSCs' own introducers and ends
    text = alerts.notification_text(need(evil))
    assert is_clean(text) and ";" not in text and len(text) <= alerts.MAX_TEXT


# ------------------------------------------------------------------------------------------ the app
def state_with_a_task() -> SwarmState:
    st = SwarmState(session_start=NOW, clock=lambda: NOW)
    st.apply(Task(id="t-1", text="write the parser", created_at=NOW - 60))
    return st


def add_decision(st: SwarmState, did: str, at: float) -> None:
    plan = [PlanItem(task_id="t-1", role="research", model="openrouter/a/b", max_tokens=100)]
    st.apply(Decision(id=did, task_ids=["t-1"], plan=plan, source="rules", created_at=at, expires_at=at + 900))


def add_failure(st: SwarmState, did: str, at: float) -> None:
    r = Result(
        job_id=f"{did}-j0",
        worker_id=f"{did}-w0",
        decision_id=did,
        task_id="t-1",
        model="openrouter/a/b",
        state="failed",
        reason="HTTP 502",
        started_at=at - 1,
        ended_at=at,
    )
    st.apply(r)


def app_with(st: SwarmState, **notify: Any) -> tuple[SwarmApp, StaticLink]:
    cfg = scene_config()
    if notify:
        cfg = cfg.replace(**{f"notify__{k}": v for k, v in notify.items()})
    link = StaticLink(cfg, st, {})
    clock = {"t": NOW}
    return SwarmApp(link, clock=lambda: clock["t"], deterministic=True), link


def header(app: SwarmApp) -> str:
    return app.room.header_bar.line.plain


async def ready(app: SwarmApp, pilot: Any) -> None:
    await until(lambda: app.ready, 5, "the room")
    await pilot.pause()
    app.refresh_state()  # the baseline look


async def test_a_new_decision_rings_once_and_the_badge_stays_until_seen() -> None:
    st = state_with_a_task()
    app, link = app_with(st)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert app.needs_you.sent == [] and "needs you" not in header(app)
        add_decision(st, "d-1", NOW + 1)
        for _ in range(5):  # every refresh looks again: one transition, one alert
            app.refresh_state()
            await pilot.pause()
        assert len(app.needs_you.sent) == 1
        assert app.needs_you.sent[0].startswith("\x07" + OSC9) and OSC777 in app.needs_you.sent[0]
        assert "⚑ needs you: approval" in header(app)
        assert any("needs you" in (n.title or "") for n in app._notifications)
        # a second decision while the first is unseen: no second bell, the badge still there
        add_decision(st, "d-2", NOW + 2)
        app.refresh_state()
        assert len(app.needs_you.sent) == 1
        # a failure is another kind: its own bell, and both in the badge
        add_failure(st, "d-0", NOW + 3)
        app.refresh_state()
        assert len(app.needs_you.sent) == 2 and "failed job" in header(app)
        # ! goes to the newest (the failed job's task) and marks what the badge showed as seen
        await pilot.press("exclamation_mark")
        await pilot.pause()
        assert "needs you" not in header(app)
        assert ("seen", {"kinds": ["failed", "approval"], "by": "tui"}) in [
            (v, {**a, "by": "tui"}) for v, a in link.controls
        ]
        assert app.room.selected_task() == "t-1"
        # seen: looking again rings nothing; something new after it rings again
        app.refresh_state()
        assert len(app.needs_you.sent) == 2
        add_decision(st, "d-3", NOW + 10)
        app.needs_you.attention.clock = lambda: NOW + 11
        app.refresh_state()
        assert len(app.needs_you.sent) == 3 and "⚑ needs you: approval" in header(app)


async def test_what_waits_at_start_shows_in_the_badge_but_rings_nothing() -> None:
    st = state_with_a_task()
    add_decision(st, "d-1", NOW - 10)
    app, _ = app_with(st)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.refresh_state()
        assert app.needs_you.sent == []
        assert "⚑ needs you: approval" in header(app)


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({"approval": False}, None),  # the kind is off: no bell, no badge
        ({"bell": False}, OSC9),
        ({"desktop": False}, "\x07"),
    ],
)
async def test_each_switch_in_the_config(switches: dict[str, bool], expected: str | None) -> None:
    st = state_with_a_task()
    app, _ = app_with(st, **switches)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        add_decision(st, "d-1", NOW + 1)
        app.refresh_state()
        if expected is None:
            assert app.needs_you.sent == [] and "needs you" not in header(app)
        else:
            assert len(app.needs_you.sent) == 1 and app.needs_you.sent[0].startswith(expected)
            bells = 1 if switches.get("bell", True) else 0
            terminators = 2 if switches.get("desktop", True) else 0  # each OSC ends with a BEL
            assert app.needs_you.sent[0].count("\x07") == bells + terminators


async def test_the_bus_lost_rings_after_the_grace_and_once() -> None:
    st = state_with_a_task()
    app, link = app_with(st, bus_grace_s=2.0)
    now = {"t": NOW}
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        app.needs_you.attention.clock = lambda: now["t"]
        link._bus_state_value = "reconnecting"
        app.refresh_state()
        now["t"] += 1
        app.refresh_state()
        assert app.needs_you.sent == []  # a quick reconnect is not news
        now["t"] += 1.5
        for _ in range(3):
            app.refresh_state()
        assert len(app.needs_you.sent) == 1 and "bus is lost" in app.needs_you.sent[0]
        assert "bus lost" in header(app)


async def test_nothing_to_go_to_says_so() -> None:
    app, link = app_with(state_with_a_task())
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.press("exclamation_mark")
        await pilot.pause()
        assert any("nothing needs you" in str(n.message) for n in app._notifications)
        assert link.controls == []

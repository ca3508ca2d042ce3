"""The Spend screen and the spend alert in the app, driven by Pilot on a fixed scene: `$` opens where the money
went (the figures of ``swarm-tui spend``: one function), escape closes it and nothing is sent; spend past 50% of
the ceiling is the header's "needs you: spend" badge."""

from __future__ import annotations

from typing import Any

from swarm_tui.engine.bus.wire import SpendEntry
from swarm_tui.engine.guards.spend_view import spend_lines
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.scenes import NOW, build
from swarm_tui.tui.screens.spend import SpendScreen, view_of
from swarm_tui.tui.widgets.header_bar import HeaderBar
from tests.support.polling import until
from tests.support.tui import screen_lines

SIZE = (120, 36)


def _app(today: float | None = None) -> SwarmApp:
    """The budget scene, with an estimated entry; ``today``: the spend guard says so of a $1.00 ceiling."""
    link, rings, hist = build("budget")
    state = link.state
    entry = SpendEntry(
        id="d-est-j0", model="openrouter/acme/est", worker_id="d-est-w0", decision_id="d-est", task_id="t-est",
        cost_usd=0.0123, estimated=True, at=NOW - 30,
    )  # fmt: skip
    state.apply(entry)
    info: Any = dict(link.info())
    if today is not None:
        info["spend"] = {**info["spend"], "today_usd": today, "ceiling_usd": 1.0, "ledger_spent_usd": today}
    fake = StaticLink(link.cfg, state, info, demo=True)
    return SwarmApp(fake, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


async def test_dollar_opens_where_the_money_went_and_escape_closes_it() -> None:
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready, 5, "the room")
        await pilot.press("dollar_sign")
        await until(lambda: isinstance(app.screen, SpendScreen), 5, "the spend screen")
        await pilot.pause()
        shown = "\n".join(screen_lines(app))
        state = app.link.state
        lines = spend_lines(view_of(state, app.room.spend_info(), state.clock()))  # what `swarm-tui spend` prints
        assert lines[0] in shown and lines[1] in shown and lines[2] in shown, shown  # totals, billed, pending
        assert "estimated $0.0123" in shown and "openrouter/acme/est" in shown and "by role:" in shown, shown
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, SpendScreen), 5, "closed")
        assert isinstance(app.link, StaticLink) and app.link.controls == []  # read-only


async def test_spend_past_half_the_ceiling_rings_and_is_in_the_badge() -> None:
    app = _app(today=0.3)
    async with app.run_test(size=(200, 36)) as pilot:  # wide: the badge names the kinds
        await until(lambda: app.ready, 5, "the room")
        app.needs_you.check()  # the baseline: under every level
        assert app.needs_you.sent == []
        spend: Any = {**app.info["spend"], "today_usd": 0.62, "ledger_spent_usd": 0.62}
        app.info = {**app.info, "spend": spend}
        app.needs_you.check()
        await pilot.pause()
        assert any("spend passed 50%" in seq for seq in app.needs_you.sent), app.needs_you.sent  # bell, OSC 9/777
        header = app.query_one("#header", HeaderBar)
        await until(lambda: "needs you:" in header.line.plain and "spend" in header.line.plain, 5, header.line.plain)
        what = [n["what"] for n in app.needs_you.attention.current if n["kind"] == "spend"]
        assert what == ["spend passed 50% of the daily ceiling ($0.62 of $1.00)"]

"""The app's needs-you alerts: one ``Attention`` (engine/attention.py) fed from the link, the bell and desktop
notification on each transition, a toast, the header badge, and the ``!`` key that goes to what needs you and
marks it seen.

The app computes this itself rather than reading the engine's: an attached app must still say that the bus is
lost when no engine can answer it. The same pure ``Attention`` runs in the engine for ``status`` and
``notify.command``, so both agree on what counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from swarm_tui.engine.attention.needs import Attention
from swarm_tui.engine.info import Need
from swarm_tui.textsafe import plain
from swarm_tui.tui.attention import sequences as alerts
from swarm_tui.tui.driver import write_raw

if TYPE_CHECKING:
    from swarm_tui.tui.app import SwarmApp

log = logging.getLogger(__name__)

# where ``!`` goes for each kind: the panel (a tab at 80 columns) that shows it
PLACE = {"approval": "decisions", "failed": "tasks", "ceiling": "guards", "credit": "guards", "bus": "guards"}


class NeedsYou:
    def __init__(self, app: SwarmApp) -> None:
        self.app = app
        self.cfg = app.cfg.notify
        self.attention = Attention(self.cfg.kinds(), bus_grace_s=self.cfg.bus_grace_s, clock=app.clock)
        self.sent: list[str] = []  # every sequence written, in order (the tests read it; it is tiny)
        self.tmux = alerts.in_tmux()
        self._badge: tuple[tuple[str, int], ...] = ()
        self._asking_tmux = False

    # ------------------------------------------------------------------ looking
    def check(self) -> None:
        """One look (on every state change, info poll and bus change): alert what just started to need you."""
        app = self.app
        if not app.ready:
            return  # before the engine's log is replayed nothing is known: the first look is the baseline
        if self.tmux and self.cfg.desktop and self.cfg.tmux_passthrough and not self._asking_tmux:
            self._asking_tmux = True  # ask tmux once, off the event loop (a subprocess, up to 1 s)
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().run_in_executor(None, alerts.tmux_passthrough_allowed)
        for need in self.attention.update(app.link.state, app.info, app.link.bus_state):
            self.alert(need)
        badge = tuple((n["kind"], n["count"]) for n in self.badge())
        if badge != self._badge:
            self._badge = badge
            app.room.show_header()

    def badge(self) -> list[Need]:
        """What the header's badge shows: the enabled kinds nobody has seen, newest first."""
        return sorted(self.attention.unseen(), key=lambda n: -n["latest"])

    # ------------------------------------------------------------------ telling
    def alert(self, need: Need) -> None:
        app = self.app
        allowed = self.tmux and alerts.tmux_passthrough_known()
        seq = alerts.alert_sequence(
            need,
            bell=self.cfg.bell,
            desktop=self.cfg.desktop,
            tmux=self.tmux,
            passthrough=self.cfg.tmux_passthrough and allowed,
        )
        if seq:
            self.sent.append(seq)
            write_raw(app, seq)
        key = app.shown_key("attention")
        app.notify(
            f"{plain(need['what'])[:200]} · {key} goes there",
            title="needs you",
            severity="warning",
            timeout=8,
            markup=False,
        )

    # ------------------------------------------------------------------ going there
    async def go(self) -> None:
        """``!``: to the newest thing that needs you, and everything shown in the badge marked seen."""
        app = self.app
        shown = self.badge() or sorted(self.attention.current, key=lambda n: -n["latest"])
        if not shown:
            app.notify("nothing needs you", timeout=3, markup=False)
            return
        newest = shown[0]
        app.room.show_tab(PLACE.get(newest["kind"], "decisions"))
        if newest["kind"] == "approval":
            app.room.select_newest_pending()
        elif newest["kind"] == "failed":
            app.room.select_newest_failed()
        kinds = [n["kind"] for n in shown]
        # at least as late as what was shown: a clock behind the engine's must not leave it unseen
        self.attention.mark_seen(kinds, max(self.attention.clock(), *(n["latest"] for n in shown)))
        self._badge = tuple((n["kind"], n["count"]) for n in self.badge())
        app.room.show_header()
        app.notify(plain(newest["what"])[:200], title=newest["kind"], timeout=6, markup=False)
        try:
            await app.link.control("seen", {"kinds": kinds})  # the log's mark: other viewers and status agree
        except Exception as exc:  # noqa: BLE001 - the bus may be the thing that is lost: the local mark holds
            log.info("could not record seen: %s", exc)

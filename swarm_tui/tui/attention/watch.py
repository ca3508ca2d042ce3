"""The app's needs-you alerts: one ``Attention`` (engine/attention/needs.py) fed from the link, the bell and
desktop notification on each transition, a toast, the header badge, and the ``!`` key that goes to what needs
you and marks it seen.

The app computes this itself rather than reading the engine's: an attached app must still say that the bus is
lost when no engine can answer it. The same pure ``Attention`` runs in the engine for ``status`` and
``notify.command``, so both agree on what counts.

The watch is handed what it does, as callbacks (write to the terminal, a toast, the header's redraw, a control
request), and what it looks at; it knows neither the App nor the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

from textual.notifications import SeverityLevel

from swarm_tui.engine.attention.needs import DEFAULT_ALERTS, Attention
from swarm_tui.engine.info import EngineInfo, Need
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import NeedKind
from swarm_tui.textsafe import plain
from swarm_tui.tui.attention import sequences as alerts

log = logging.getLogger(__name__)

# where ``!`` goes for each kind: the panel (a tab at 80 columns) that shows it
PLACE: Final[dict[NeedKind, str]] = {
    "approval": "decisions",
    "failed": "tasks",
    "spend": "guards",
    "ceiling": "guards",
    "credit": "guards",
    "key": "guards",
    "bus": "guards",
}
_PLACE_BY_NAME: Final[dict[str, str]] = {kind: place for kind, place in PLACE.items()}


class AlertSettings(Protocol):
    """The config's ``[notify]`` as the watch reads it."""

    @property
    def bell(self) -> bool: ...
    @property
    def desktop(self) -> bool: ...
    @property
    def tmux_passthrough(self) -> bool: ...
    @property
    def bus_grace_s(self) -> float: ...
    def kinds(self) -> frozenset[NeedKind]: ...


class Notify(Protocol):
    """A toast (the App's ``notify``)."""

    def __call__(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None: ...


class Places(Protocol):
    """Where ``!`` goes: the control room's tabs and selections."""

    def show_tab(self, name: str) -> None: ...
    def select_newest_pending(self) -> None: ...
    def select_newest_failed(self) -> None: ...


# What the watch looks at: the state, the engine's info and the bus's state; None until the engine's log is
# replayed (before that nothing is known, and the first look is the baseline).
Look = Callable[[], tuple[SwarmState, EngineInfo, str] | None]


class AttentionWatch:
    def __init__(
        self,
        cfg: AlertSettings,
        clock: Callable[[], float],
        *,
        look: Look,
        write: Callable[[str], object],
        notify: Notify,
        shown_key: Callable[[], str],
        on_badge: Callable[[], None],
        send_control: Callable[[str, dict[str, Any]], object],
        levels: tuple[float, ...] = DEFAULT_ALERTS,
    ) -> None:
        self.cfg = cfg
        self.attention = Attention(cfg.kinds(), bus_grace_s=cfg.bus_grace_s, clock=clock, levels=levels)
        self.look = look
        self.write = write  # bytes to the terminal as they are (driver.write_raw)
        self.notify = notify
        self.shown_key = shown_key  # the key ``!`` is remapped to
        self.on_badge = on_badge  # the badge changed: redraw the header
        self.send_control = send_control
        self.sent: list[str] = []  # every sequence written, in order (the tests read it; it is tiny)
        self.tmux = alerts.in_tmux()
        self.tmux_probe: asyncio.Future[bool] | None = None  # tmux asked whether it passes notifications on
        self._badge: tuple[tuple[str, int], ...] = ()

    # ------------------------------------------------------------------ looking
    def check(self) -> None:
        """One look (on every state change, info poll and bus change): alert what just started to need you."""
        seen = self.look()
        if seen is None:
            return  # before the engine's log is replayed nothing is known: the first look is the baseline
        if self.tmux and self.cfg.desktop and self.cfg.tmux_passthrough and self.tmux_probe is None:
            self._ask_tmux()
        for need in self.attention.update(*seen):
            self.alert(need)
        badge = tuple((n["kind"], n["count"]) for n in self.badge())
        if badge != self._badge:
            self._badge = badge
            self.on_badge()

    def _ask_tmux(self) -> None:
        """Ask tmux once, off the event loop (a subprocess, up to 1 s); its answer is cached in ``alerts``."""
        with contextlib.suppress(RuntimeError):  # no running loop: the alert goes out unwrapped
            self.tmux_probe = asyncio.get_running_loop().run_in_executor(None, alerts.tmux_passthrough_allowed)
            self.tmux_probe.add_done_callback(_log_failure)

    def badge(self) -> list[Need]:
        """What the header's badge shows: the enabled kinds nobody has seen, newest first."""
        return sorted(self.attention.unseen(), key=lambda n: -n["latest"])

    # ------------------------------------------------------------------ telling
    def alert(self, need: Need) -> None:
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
            self.write(seq)
        self.notify(
            f"{plain(need['what'])[:200]} · {self.shown_key()} goes there",
            title="needs you",
            severity="warning",
            timeout=8,
            markup=False,
        )

    # ------------------------------------------------------------------ going there
    def go(self, places: Places) -> None:
        """``!``: to the newest thing that needs you, and everything shown in the badge marked seen."""
        shown = self.badge() or sorted(self.attention.current, key=lambda n: -n["latest"])
        if not shown:
            self.notify("nothing needs you", timeout=3, markup=False)
            return
        newest = shown[0]
        places.show_tab(_PLACE_BY_NAME.get(newest["kind"], "decisions"))
        if newest["kind"] == "approval":
            places.select_newest_pending()
        elif newest["kind"] == "failed":
            places.select_newest_failed()
        kinds = [n["kind"] for n in shown]
        # at least as late as what was shown: a clock behind the engine's must not leave it unseen
        self.attention.mark_seen(kinds, max(self.attention.clock(), *(n["latest"] for n in shown)))
        self._badge = tuple((n["kind"], n["count"]) for n in self.badge())
        self.on_badge()
        self.notify(plain(newest["what"])[:200], title=newest["kind"], timeout=6, markup=False)
        self.send_control("seen", {"kinds": kinds})  # the log's mark, in a worker: other viewers and status agree


def _log_failure(probe: asyncio.Future[bool]) -> None:
    """The tmux question's outcome is kept by ``alerts``; a failure of the thread itself is logged here."""
    if not probe.cancelled() and (exc := probe.exception()) is not None:
        log.warning("asking tmux about passthrough failed: %s", exc)

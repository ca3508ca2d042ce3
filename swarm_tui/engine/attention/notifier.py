"""The engine's side of the needs-you alerts: it keeps ``Attention`` up to date from the log and the guards,
reports it in ``Engine.info()["attention"]`` (so ``status`` and an attached app read it), and runs
``notify.command`` once per transition with the need as JSON on standard input.

The command runs without a shell (``shlex.split``), one at a time, at most ``COMMAND_TIMEOUT_S`` each (then it is
killed with every process it started: its own process group), its output discarded; a command that fails is
counted and logged by its program name only (its arguments may hold a token). Its environment is the app's without
the variable of any secret option (``secret_free_env``: the OpenRouter keys, the NATS token and password, the leaf
URL, ``SWARM_NOTIFY_COMMAND`` itself); everything else (``PATH``, ``HOME``, the locale, ...) is kept.
The headless engine (``swarm-tui run --headless``) runs this too: that is how a phone hears from a daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import time
from collections.abc import Callable
from typing import Protocol

from swarm_tui.engine.attention.needs import DEFAULT_ALERTS, Attention
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import ControlEvent, Decision, Event, Result
from swarm_tui.engine.config.options import OPTIONS
from swarm_tui.engine.config.sections import NotifySection
from swarm_tui.engine.info import AttentionInfo, EngineInfo, Need, SpendInfo
from swarm_tui.engine.lifecycle import within
from swarm_tui.engine.projection.state import SwarmState

log = logging.getLogger(__name__)

# How often the guards' side (ceiling, credit, bus) is looked at: every TICK_S while something moves (an event in
# the last ACTIVE_S, the bus not connected), every IDLE_TICK_S at rest (idle CPU). Log events that need someone
# (a decision, a failure, a control event), any event at rest, and a change of the bus state look at once.
TICK_S = 1.0
IDLE_TICK_S = 10.0
ACTIVE_S = 30.0
COMMAND_TIMEOUT_S = 10.0
QUEUE_MAX = 20  # needs waiting for the command; more are dropped (and counted)


class SpendInfoP(Protocol):
    """What the notifier reads of the spend guard: its info (the ceiling and the credit kinds come from it)."""

    def info(self) -> SpendInfo: ...


class Notifier:
    name = "attention"

    def __init__(
        self,
        notify: NotifySection,
        bus: Bus,
        state: SwarmState,
        *,
        spend: SpendInfoP | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        demo: bool = False,
        levels: tuple[float, ...] = DEFAULT_ALERTS,
    ) -> None:
        self.bus = bus
        self.state = state
        self.spend = spend
        self.clock = clock
        self.demo = demo
        self.attention = Attention(notify.kinds(), bus_grace_s=notify.bus_grace_s, clock=clock, levels=levels)
        self.argv = shlex.split(notify.command) if notify.command else []
        self.commands_run = 0
        self.command_errors = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._last_event = float("-inf")  # monotonic time of the last log event
        self._resting = False  # waiting IDLE_TICK_S now
        self._queue: asyncio.Queue[Need] = asyncio.Queue(QUEUE_MAX)
        self._tasks: list[asyncio.Task[None]] = []
        self.host = socket.gethostname() if host is None else host

    async def start(self) -> None:
        self.bus.on_state(self._on_bus_state)
        self._tasks = [asyncio.create_task(self._watch(), name="attention")]
        if self.argv:
            self._tasks.append(asyncio.create_task(self._run_commands(), name="notify-command"))

    async def stop(self) -> None:
        from swarm_tui.engine.lifecycle import cancel_and_wait

        await cancel_and_wait(self._tasks)
        self._tasks = []

    def on_event(self, ev: Event) -> None:
        if self._tasks:  # not the log's replay before start
            self._last_event = time.monotonic()
        needs_look = isinstance(ev, Decision | ControlEvent) or (isinstance(ev, Result) and ev.state == "failed")
        if needs_look or self._resting:
            self._wake.set()  # a decision to approve, a failure, a seen mark (or the first event at rest): look now

    def _on_bus_state(self, state: str) -> None:
        self._wake.set()  # lost or back: look now (and every TICK_S while it is not connected: the grace)

    def _tick(self) -> float:
        if self.bus.state != "connected" or time.monotonic() - self._last_event < ACTIVE_S:
            return TICK_S
        return IDLE_TICK_S

    def _info(self) -> EngineInfo:
        out: EngineInfo = {}
        if self.spend is not None:
            with contextlib.suppress(Exception):  # a failing guard leaves its kinds as they were, not the watch dead
                out["spend"] = self.spend.info()
        return out

    def check(self) -> list[Need]:
        """One look: the needs that just started to need someone (each queued for the command)."""
        rang = self.attention.update(self.state, self._info(), self.bus.state)
        for need in rang:
            log.info("needs you: %s", need["what"])
            if self.argv:
                try:
                    self._queue.put_nowait(need)
                except asyncio.QueueFull:
                    self.dropped += 1
        return rang

    async def _watch(self) -> None:
        while True:
            self.check()
            tick = self._tick()
            self._resting = tick > TICK_S
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), tick)
            self._resting = False
            self._wake.clear()

    def payload(self, need: Need) -> bytes:
        """What the command reads on standard input: the need, and which engine saw it."""
        event = {**need, "host": self.host, "demo": self.demo, "at": round(self.clock(), 3), "app": "swarm-tui"}
        return json.dumps(event).encode() + b"\n"

    async def _run_commands(self) -> None:
        while True:
            need = await self._queue.get()
            await self.run_command(need)

    async def run_command(self, need: Need) -> bool:
        program = self.argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                # its own session and process group (its id is the command's pid): a ^C in the app's terminal is
                # not the command's, and a kill reaches whatever the command started too
                start_new_session=True,
                env=secret_free_env(),
            )
        except OSError as exc:
            self.command_errors += 1
            log.warning("notify.command %s could not start: %s", program, exc.strerror or type(exc).__name__)
            return False
        try:
            await within(proc.communicate(self.payload(need)), COMMAND_TIMEOUT_S)
        except TimeoutError:
            kill_group(proc.pid)
            await proc.wait()
            self.command_errors += 1
            log.warning("notify.command %s took over %.0f s: killed", program, COMMAND_TIMEOUT_S)
            return False
        except asyncio.CancelledError:
            kill_group(proc.pid)
            raise
        self.commands_run += 1
        if proc.returncode != 0:
            self.command_errors += 1
            log.warning("notify.command %s exited with %s", program, proc.returncode)
            return False
        return True

    def info(self) -> AttentionInfo:
        return {
            "needs": list(self.attention.current),
            "alerts": self.attention.alerts,
            "command": self.argv[0].rsplit("/", 1)[-1] if self.argv else "",
            "commands_run": self.commands_run,
            "command_errors": self.command_errors + self.dropped,
        }


def kill_group(pgid: int) -> None:
    """SIGKILL the command's whole process group: a script that started a child (``curl`` under ``sh``, a
    backgrounded helper) would otherwise leave it running after the script itself was killed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def secret_free_env() -> dict[str, str]:
    """The app's environment less every secret option's variable: a notification hook needs the need (on its
    standard input), never the keys that spend or make keys."""
    secret = {o.env for o in OPTIONS if o.secret and o.env}
    return {k: v for k, v in os.environ.items() if k not in secret}

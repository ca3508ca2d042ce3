"""Requests to the engine from the keys: each in a Textual worker, one at a time, in the order asked.

A key (or the palette, or a dialog's answer) starts a request and returns at once, so no key waits behind a
bus round trip (up to the request's timeout when no engine answers). The workers belong to the App: a request
outlives a dialog closed while it is on its way. One lock sends them one after the other, in the order they
were asked for (asyncio's lock wakes its waiters first come, first served): approve then reject reach the
engine as pressed. A toast says what came of each: done, refused (the engine's reason), no engine, the bus down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from textual.app import App
from textual.worker import Worker

from swarm_tui.textsafe import plain
from swarm_tui.tui.link import Link

log = logging.getLogger(__name__)


class ControlClient:
    """The one way the screens ask the engine for something. ``accepted`` runs after each accepted request (the
    state views are stale until the engine's event for it arrives)."""

    def __init__(self, app: App[Any], link: Link, *, accepted: Callable[[], None]) -> None:
        self.app = app
        self.link = link
        self.accepted = accepted
        self._turn = asyncio.Lock()

    # ------------------------------------------------------------------ starting one (returns at once)
    def send(
        self, verb: str, args: dict[str, Any], done: str, *, then: Callable[[], None] | None = None
    ) -> Worker[bool]:
        """Ask for ``verb``; ``done`` is the toast when the engine accepts ("": none, the screen shows the change),
        ``then`` runs after that."""
        return self._start(self._send(verb, args, done, then), f"{verb} request")

    def send_quietly(self, verb: str, args: dict[str, Any]) -> Worker[bool]:
        """Ask for ``verb`` without a toast either way (a mark in the log that only helps other viewers)."""
        return self._start(self._send_quietly(verb, args), f"{verb} request")

    def submit_task(self, text: str) -> Worker[bool]:
        """Publish a new task (an event, not a request: in the same queue, so it keeps its place)."""
        return self._start(self._submit(text), "publishing a task")

    def _start(self, work: Coroutine[Any, Any, bool], description: str) -> Worker[bool]:
        return self.app.run_worker(work, group="control", exit_on_error=False, description=description)

    # ------------------------------------------------------------------ the requests (one at a time)
    async def _send(self, verb: str, args: dict[str, Any], done: str, then: Callable[[], None] | None) -> bool:
        async with self._turn:
            ok = await self._request(verb, args, done)
        if ok and then is not None:
            then()
        return ok

    async def _request(self, verb: str, args: dict[str, Any], done: str) -> bool:
        """One request and its toast; True when the engine accepted it. The caller holds the turn."""
        notify = self.app.notify
        try:
            reply = await self.link.control(verb, args)
        except Exception as exc:  # noqa: BLE001 - the bus may be down: say so, stay up
            log.warning("control %s failed: %s", verb, exc)
            notify(f"{verb} failed: {plain(str(exc))[:200]}", severity="error", markup=False)
            return False
        if reply is None:
            notify(f"{verb}: no engine answers on the bus", severity="error", markup=False)
            return False
        if not reply.ok:
            notify(plain(reply.error)[:300], title=verb, severity="warning", markup=False)
            return False
        if done:
            notify(done, timeout=3, markup=False)
        self.accepted()
        return True

    async def _send_quietly(self, verb: str, args: dict[str, Any]) -> bool:
        async with self._turn:
            try:
                reply = await self.link.control(verb, args)
            except Exception as exc:  # noqa: BLE001 - the bus may be the thing that is lost: the local mark holds
                log.info("could not record %s: %s", verb, exc)
                return False
        return reply is not None and reply.ok

    async def _submit(self, text: str) -> bool:
        notify = self.app.notify
        async with self._turn:
            try:
                task_id = await self.link.submit_task(text)
            except Exception as exc:  # noqa: BLE001 - the bus may be down or the text refused: say so, stay up
                notify(f"could not publish the task: {plain(str(exc))[:200]}", severity="error", markup=False)
                return False
        notify(f"task {task_id} published", timeout=3, markup=False)
        return True

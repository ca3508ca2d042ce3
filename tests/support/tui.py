"""What the TUI tests share: hostile model text, the screen size, an app around an in-process engine."""

from __future__ import annotations

from typing import Any

from textual.app import App

from swarm_tui.engine.engine import Engine
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import LocalLink
from tests.support.polling import until

# Model text that tries to drive the terminal: markup, a screen clear, OSC 52 (clipboard), a title, a C1 CSI,
# bidi overrides and a link. Every view must show it inert.
HOSTILE = (
    "[bold red]ALERT[/] \x1b[2J\x1b[H \x1b]52;c;cm0gLXJmIH4=\x07 \x1b]0;pwned\x07 \x9b31m "
    "\u202eevil\u202c [link=http://x]y[/link]"
)
SIZE = (160, 48)


def make_app(engine: Engine) -> SwarmApp:
    return SwarmApp(LocalLink(engine, connect=False), refresh_ms=20)


async def started(app: SwarmApp, pilot: Any) -> None:
    await until(lambda: app.ready, 15)  # the engine starts after the first frame; a loaded machine is slow
    await pilot.pause()


def screen_lines(app: App[Any]) -> list[str]:
    """The terminal as the person sees it, one string a line."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()


async def live_app_with_tasks(app: Any, pilot: Any, engine: Any, observer: Any, n: int = 1) -> None:
    """The live app started and tasks ``t-1``..``t-n`` published through ``observer``, in the engine's state."""
    import time

    from swarm_tui.engine.bus.wire import Task

    await started(app, pilot)
    for k in range(1, n + 1):
        task = Task(id=f"t-{k}", text=f"task {k}", created_at=time.time())
        await observer.publish_event(task, msg_id=task.id)
    await until(lambda: len(engine.state.tasks) >= n)


async def live_timeline(app: Any, pilot: Any) -> Any:
    """``t`` in the live app: the timeline's room."""
    from swarm_tui.tui.replay_room import ReplayRoom

    await pilot.press("t")
    await until(lambda: isinstance(app.screen, ReplayRoom))
    room = app.screen
    assert isinstance(room, ReplayRoom)
    return room


async def live_timeline_with_tasks(app: Any, pilot: Any, engine: Any, observer: Any, n: int = 2) -> Any:
    """The live app with ``n`` tasks, then ``t``: the timeline's room at the live end, the last task in its table."""
    await live_app_with_tasks(app, pilot, engine, observer, n)
    room = await live_timeline(app, pilot)
    await until(lambda: f"t-{n}" in room.task_table.rows)
    return room

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


async def live_timeline_with_two_tasks(app: Any, pilot: Any, engine: Any, observer: Any) -> Any:
    """The live app started, two tasks published through ``observer``, then ``t``: the timeline's room, live end."""
    import time

    from swarm_tui.engine.bus.wire import Task
    from swarm_tui.tui.replay_room import ReplayRoom

    await started(app, pilot)
    for n in (1, 2):
        task = Task(id=f"t-{n}", text=f"task {n}", created_at=time.time())
        await observer.publish_event(task, msg_id=task.id)
    await until(lambda: len(engine.state.tasks) == 2)
    await pilot.press("t")
    await until(lambda: isinstance(app.screen, ReplayRoom))
    room = app.screen
    assert isinstance(room, ReplayRoom)
    await until(lambda: "t-2" in room.task_table.rows)
    return room

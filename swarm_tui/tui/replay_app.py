"""The app on the log's past (``swarm-tui replay``): the control room replaced by the replay's, the clock the
log's time at the position, no needs-you alerts (a past approval rings no bell now)."""

from __future__ import annotations

import os
import time
from typing import Any

from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import ReplayLink
from swarm_tui.tui.messages import LinkReady
from swarm_tui.tui.replay_room import ReplayRoom


class ReplayApp(SwarmApp):
    ROOM = ReplayRoom

    link: ReplayLink

    def __init__(self, link: ReplayLink, **kw: Any) -> None:
        super().__init__(link, clock=link.timeline.clock, **kw)
        self.needs_you.look = lambda: None  # nothing of the past needs anyone now

    def on_unmount(self) -> None:
        """However the app ends (q, a signal, a test's pilot), nothing it froze stays frozen."""
        self.link.end()

    def on_link_ready(self, _: LinkReady) -> None:
        """After SwarmApp's own (Textual calls each class's handler in turn)."""
        self.room.refresh_bindings()  # the moves wait for the opening (ReplayRoom.check_action): now they work
        shown = os.environ.get("SWARM_BENCH_READY_FILE", "")  # bench only: when the position is first on screen
        if shown:
            self.call_after_refresh(lambda: _note_time(shown))


def _note_time(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(time.time()) + "\n")

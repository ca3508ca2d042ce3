"""The command palette offers every key's action."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, action string) — the same actions as the key bindings
PALETTE: list[tuple[str, str, str]] = [
    ("Approve the selected decision", "a", "approve"),
    ("Reject the selected decision", "r", "reject"),
    ("Edit the worker count of the selected decision", "e", "edit_workers"),
    ("Scale up (one more concurrent worker)", "+", "scale(1)"),
    ("Scale down (one fewer concurrent worker)", "-", "scale(-1)"),
    ("Cancel the selected worker", "c", "cancel_worker"),
    ("Cancel all workers", "C", "cancel_all"),
    ("Pause or resume the heartbeat", "p", "pause"),
    ("New task", "n", "new_task"),
    ("Expand the selection", "enter", "expand"),
    ("Filter", "/", "filter"),
    ("Help: keys", "?", "help"),
    ("Quit", "q", "quit"),
]


class SwarmCommands(Provider):
    async def _run(self, action: str) -> None:
        await self.app.run_action(action)

    def _hit_help(self, key: str) -> str:
        return f"key {key}"

    async def discover(self) -> Hits:
        for title, key, action in PALETTE:
            yield DiscoveryHit(title, partial(self._run, action), help=self._hit_help(key))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, key, action in PALETTE:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=self._hit_help(key))


def palette_actions() -> list[dict[str, Any]]:
    return [{"title": t, "key": k, "action": a} for t, k, a in PALETTE]

"""The app's keys and the command palette: the same actions, declared side by side.

Every binding has an ``id``: the config file's ``[keys]`` table remaps a key by that id (``approve = "y"``), and
the key bar, the help screen, the palette's hints and the decision detail's hint line show the remapped key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

# The control room's keys, its screen's bindings. Help and quit are the App's actions (``app.``) but bound here
# with the rest: Textual appends a key remapped by [keys] to its namespace's bindings, and the key bar shows them
# in that order, so one namespace keeps a remapped key last, after quit. (The App's bindings would be of no use
# elsewhere: every other screen is a dialog, and a dialog ends the binding chain.)
ROOM_BINDINGS: list[BindingType] = [
    Binding("a", "approve", "Approve", id="approve", tooltip="approve the selected (or newest pending) decision"),
    Binding("r", "reject", "Reject", id="reject", tooltip="reject the selected (or newest pending) decision"),
    Binding("e", "edit_workers", "Edit", id="edit", tooltip="edit the worker count of the selected decision"),
    Binding("plus", "scale(1)", "Scale+", id="scale_up", key_display="+", tooltip="one more concurrent worker"),
    Binding("minus", "scale(-1)", "Scale-", id="scale_down", key_display="-", tooltip="one fewer concurrent worker"),
    Binding("c", "cancel_worker", "Cancel", id="cancel", tooltip="cancel the selected worker"),
    Binding(
        "C", "cancel_all", "Cancel all", id="cancel_all", key_display="C", tooltip="cancel every worker (asks first)"
    ),
    Binding("p", "pause", "Pause", id="pause", tooltip="pause or resume the heartbeat"),
    Binding("n", "new_task", "New task", id="new_task", tooltip="publish a new task"),
    Binding(
        "enter", "expand", "Expand", id="expand", tooltip="details: raw model answer, whole worker output, task results"
    ),
    Binding(
        "exclamation_mark",
        "attention",
        "Needs you",
        id="attention",
        key_display="!",
        show=False,
        tooltip="go to what needs you (the header's badge) and mark it seen",
    ),
    Binding(
        "t",
        "app.timeline",
        "Timeline",
        id="timeline",
        show=False,
        tooltip="the log's past, read-only: a replay (t or escape: back to live)",
    ),
    Binding("slash", "filter", "Filter", id="filter", key_display="/", tooltip="filter tasks, decisions and workers"),
    Binding("h", "history", "History", id="history", tooltip="past tasks: search them, open their results"),
    Binding(
        "dollar_sign",
        "spend",
        "Spend",
        id="spend",
        key_display="$",
        show=False,
        tooltip="where the money went: by model, role, task and day",
    ),
    Binding("question_mark", "app.help", "Help", id="help", key_display="?", tooltip="this screen"),
    Binding("q", "app.quit", "Quit", id="quit", tooltip="quit (asks while workers run here)"),
    Binding("1", "show_tab('decisions')", "Decisions", id="tab_decisions", show=False),
    Binding("2", "show_tab('workers')", "Workers", id="tab_workers", show=False),
    Binding("3", "show_tab('tasks')", "Tasks", id="tab_tasks", show=False),
    Binding("4", "show_tab('guards')", "RAM/Spend", id="tab_guards", show=False),
]
HELP_ACTION = "app.help"  # the key that stays on a narrow key bar: the way to the rest

# the results screen's own keys (enter on a task); remappable by id like the others
RESULTS_BINDINGS: list[BindingType] = [
    Binding("y", "copy_answer", "Copy", id="copy_answer", tooltip="results: copy the selected answer (OSC 52)"),
    Binding("s", "save_results", "Save", id="save_results", tooltip="results: save the task's results as Markdown"),
    Binding("d", "compare", "Compare", id="compare", tooltip="results: compare two answers side by side with a diff"),
    Binding(
        "p", "promote", "Promote", id="promote", tooltip="results/compare: make the selected answer the task's answer"
    ),
]
# Every key in the order the help screen lists them.
ALL_BINDINGS: list[BindingType] = ROOM_BINDINGS + RESULTS_BINDINGS


def shown_key(binding_id: str, keymap: Mapping[str, str]) -> str:
    """The key a binding answers to now, as shown: the config's remap (``[keys]``), else its default."""
    for b in ALL_BINDINGS:
        assert isinstance(b, Binding)
        if b.id == binding_id:
            return keymap.get(binding_id, b.key_display or b.key)
    raise KeyError(binding_id)


def help_rows(keymap: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(key as shown, what it does, binding id) for the help screen, with the config's remapped keys."""
    rows = []
    for b in ALL_BINDINGS:
        assert isinstance(b, Binding)
        rows.append((shown_key(b.id or "", keymap), b.tooltip or f"show {b.description}", b.id or ""))
    return rows


def help_notes(refresh_ms: int) -> list[str]:
    """The help screen's lines under the keys."""
    return [
        'Remap any key in the config file\'s [keys] table, e.g.  approve = "y"  (ids on the right).',
        "ctrl+p opens the command palette with the same actions. tab moves between panels;",
        "focusing a worker card expands it; enter shows its whole on-screen output.",
        "Model output is shown as plain text (answers as Markdown, without links): escape sequences are made inert.",
        "Saved results go to the data dir's exports/ folder (the path is shown).",
        f"Screen refresh of streaming output: every {refresh_ms} ms "
        "(--refresh-ms or ui.refresh_ms; raise it on slow ssh links). NO_COLOR is honoured.",
    ]


# (title, binding id, action string) — the same actions as the key bindings
PALETTE: list[tuple[str, str, str]] = [
    ("Approve the selected decision", "approve", "approve"),
    ("Reject the selected decision", "reject", "reject"),
    ("Edit the worker count of the selected decision", "edit", "edit_workers"),
    ("Scale up (one more concurrent worker)", "scale_up", "scale(1)"),
    ("Scale down (one fewer concurrent worker)", "scale_down", "scale(-1)"),
    ("Cancel the selected worker", "cancel", "cancel_worker"),
    ("Cancel all workers", "cancel_all", "cancel_all"),
    ("Pause or resume the heartbeat", "pause", "pause"),
    ("New task", "new_task", "new_task"),
    ("Expand the selection", "expand", "expand"),
    ("Filter", "filter", "filter"),
    ("History: past tasks, searchable", "history", "history"),
    ("Spend: where the money went, by model, role, task and day", "spend", "spend"),
    ("Timeline: the log's past, read-only (replay)", "timeline", "timeline"),
    ("Go to what needs you (the badge) and mark it seen", "attention", "attention"),
    ("Copy the selected answer to the clipboard", "copy_answer", "copy_answer"),
    ("Save the selected task's results as Markdown", "save_results", "save_results"),
    ("Compare two answers of the selected task side by side", "compare", "compare"),
    ("Promote the selected answer as the task's answer", "promote", "promote"),
    ("Help: keys", "help", "help"),
    ("Quit", "quit", "quit"),
]


class SwarmCommands(Provider):
    async def _run(self, action: str) -> None:
        """Run in the namespace of the screen the palette was opened on (the results screen's copy copies its
        answer). An action that screen does not have runs on the nearest control room under it (approve over the
        results screen approves there, as the key would with the dialog closed; over a dialog opened from the
        live app's timeline that room is the timeline's, which publishes nothing), else on the App (help,
        quit)."""
        app = self.app
        for namespace in dict.fromkeys((self.screen, nearest_room(app.screen_stack), app)):
            if await app.run_action(action, namespace):
                return

    def _hit_help(self, binding_id: str) -> str:
        return f"key {shown_key(binding_id, keymap_of(self.app))}"

    async def discover(self) -> Hits:
        for title, binding_id, action in PALETTE:
            yield DiscoveryHit(title, partial(self._run, action), help=self._hit_help(binding_id))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, binding_id, action in PALETTE:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=self._hit_help(binding_id))


def nearest_room(stack: Sequence[Screen[Any]]) -> Screen[Any]:
    """The control room a dialog on top of ``stack`` was opened from: the topmost room (the live app's timeline is
    a room pushed over the live one), else the bottom screen. A room says so (``palette_home``): its module
    imports this one."""
    return next((s for s in reversed(stack) if getattr(s, "palette_home", False)), stack[0])


@runtime_checkable
class Remapped(Protocol):
    """An App that holds the config's [keys] (binding id -> key), as it gave them to ``set_keymap``."""

    keymap: dict[str, str]


def keymap_of(app: object) -> dict[str, str]:
    """The config's [keys] (binding id -> key) of an App that has them, else none."""
    return dict(app.keymap) if isinstance(app, Remapped) else {}


def palette_actions(keymap: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    return [{"title": t, "key": shown_key(b, keymap or {}), "action": a} for t, b, a in PALETTE]

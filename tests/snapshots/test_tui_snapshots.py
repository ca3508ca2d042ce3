"""Snapshots of the main screens, from fixed scenes (no bus, a fixed clock, fixed RAM readings, no timers).

Regenerate after an intended change with ``pytest tests/snapshots/test_tui_snapshots.py --snapshot-update``; the same
scenes make ``screenshots/`` (``scripts/screenshots.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm_tui.engine.config.load import load_config
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.scenes import NOW, SCENES, SIZES, build, make_app, scene_actions

WIDE = (160, 48)


@pytest.mark.parametrize("scene", [s for s in SCENES if s != "results"])  # results: test_results_as_markdown
def test_scene(snap_compare: Any, scene: str) -> None:
    assert snap_compare(make_app(scene), press=scene_actions(scene), terminal_size=SIZES.get(scene, WIDE))


# ------------------------------------------------------------------------------------------- the control room
def _scene_app(scene: str, config: Path | None = None) -> SwarmApp:
    """A scene's app as ``make_app`` builds it, with the configuration read from ``config`` when given."""
    link, rings, hist = build(scene)
    if config is not None:
        cfg = load_config(config, {"XDG_CONFIG_HOME": "/nonexistent/xdg", "SWARM_DATA_DIR": "/nonexistent/data"})
        link = StaticLink(cfg, link.state, link.info(), demo=True)
    return SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


def test_control_room_at_80x24(snap_compare: Any) -> None:
    """A narrow terminal: one panel (the decisions, where a pending one waits) under the tabs, compact footer."""
    assert snap_compare(_scene_app("pending"), terminal_size=(80, 24))


def test_control_room_no_color(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR=1 (read when the App is made): the same control room in black, white and grey only."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(_scene_app("workers"), terminal_size=WIDE)


def test_control_room_with_a_remapped_key(snap_compare: Any, tmp_path: Path) -> None:
    """``[keys] approve = "y"`` in the config file: the footer shows y for Approve (and no a)."""
    conf = tmp_path / "config.toml"
    conf.write_text('[keys]\napprove = "y"\n')
    assert snap_compare(_scene_app("pending", conf), terminal_size=WIDE)


def test_help_with_a_remapped_key(snap_compare: Any, tmp_path: Path) -> None:
    """The help screen lists the remapped key against its id."""
    conf = tmp_path / "config.toml"
    conf.write_text('[keys]\napprove = "y"\n')
    assert snap_compare(_scene_app("pending", conf), press=["question_mark"], terminal_size=WIDE)


# ------------------------------------------------------------------------------------------- answers as documents
async def _open_results(pilot: Any) -> None:
    from swarm_tui.tui.screens.results import ResultsScreen

    for _ in range(20):  # the room focuses its decisions table once ready: take the focus after that
        await pilot.pause()
        if pilot.app.ready and pilot.app.focused is pilot.app.room.decision_table:
            break
    pilot.app.room.task_table.focus()
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ResultsScreen)


def test_results_as_markdown(snap_compare: Any) -> None:
    """enter on a task: its answers rendered as Markdown (a heading, a numbered list, a code block with
    highlighting, a bulleted list); the link stays text; the newest answer is the selected one."""
    link, rings, hist = build("results")
    app = SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)
    assert snap_compare(app, run_before=_open_results, terminal_size=WIDE)

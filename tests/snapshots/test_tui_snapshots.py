"""Snapshots of the main screens, from fixed scenes (no bus, a fixed clock, fixed RAM readings, no timers).

Regenerate after an intended change with ``pytest tests/snapshots/test_tui_snapshots.py --snapshot-update``; the same
scenes make ``screenshots/`` (``scripts/screenshots.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from swarm_tui.tui.scenes import SIZES, make_app, scene_actions

WIDE = (160, 48)


@pytest.mark.parametrize("scene", ["empty", "pending", "workers", "lowram", "budget", "help", "small"])
def test_scene(snap_compare: Any, scene: str) -> None:
    assert snap_compare(make_app(scene), press=scene_actions(scene), terminal_size=SIZES.get(scene, WIDE))

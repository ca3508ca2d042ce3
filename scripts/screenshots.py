"""Regenerate screenshots/*.svg from the fixed scenes in swarm_tui/tui/scenes.py (the same as the snapshots).

    .venv/bin/python scripts/screenshots.py            # every scene
    .venv/bin/python scripts/screenshots.py workers    # one scene
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from swarm_tui.tui.scenes import SCENES, SIZES, make_app, scene_actions

OUT = Path(__file__).resolve().parent.parent / "screenshots"
DEFAULT_SIZE = (160, 48)


async def shoot(name: str) -> Path:
    app = make_app(name)
    size = SIZES.get(name, DEFAULT_SIZE)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for key in scene_actions(name):
            await pilot.press(key)
        await pilot.pause()
        svg = app.export_screenshot(title=f"swarm-tui: {name}")
    path = OUT / f"{name}.svg"
    path.write_text(svg, encoding="utf-8")
    return path


async def main(names: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    for name in names or SCENES:
        print(await shoot(name))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

"""Regenerate screenshots/*.svg from the fixed scenes in swarm_tui/tui/scenes.py (the same as the snapshots),
and the replay and history views from a demo run's exported log (screenshots/replay-demo.jsonl).

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


REPLAYED = {"replay": 32, "history": 35}  # the demo log's position each is taken at (32: one worker still runs)


async def shoot_replay(name: str) -> Path:
    """``swarm-tui replay --file screenshots/replay-demo.jsonl --from N``; ``history``: then ``h``."""
    from swarm_tui.engine.history.filelog import read_log_file
    from swarm_tui.engine.history.timeline import Timeline
    from swarm_tui.engine.history.when import Point
    from swarm_tui.tui.link import ReplayLink
    from swarm_tui.tui.replay_app import ReplayApp
    from swarm_tui.tui.scenes import scene_config

    log = read_log_file(OUT / "replay-demo.jsonl")
    cfg = scene_config()
    link = ReplayLink(
        cfg, Timeline(log, max_scale=50), start_at=Point("seq", REPLAYED[name]), where="file replay-demo.jsonl"
    )
    app = ReplayApp(link)
    async with app.run_test(size=DEFAULT_SIZE) as pilot:
        for _ in range(100):  # the link opens the log after the first frame
            await pilot.pause(0.05)
            if link.timeline.seq == REPLAYED[name]:
                break
        await pilot.pause(0.3)
        if name == "history":
            await pilot.press("h")
            await pilot.pause(0.3)
        svg = app.export_screenshot(title=f"swarm-tui: {name}")
    path = OUT / f"{name}.svg"
    path.write_text(svg, encoding="utf-8")
    return path


async def main(names: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    for name in names or [*SCENES, *REPLAYED]:
        print(await (shoot_replay(name) if name in REPLAYED else shoot(name)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

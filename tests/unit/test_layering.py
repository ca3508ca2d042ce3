"""The engine never imports Textual or litellm at import time: checked in a fresh interpreter, every module of
every engine sub-package (the import-linter contracts in pyproject.toml check the static imports too)."""

from __future__ import annotations

import subprocess
import sys

OUTSIDE_ENGINE = ["swarm_tui.cli.commands", "swarm_tui.cli.status", "swarm_tui.cli.main"]


def loaded_after(imports: str, absent: tuple[str, ...], at_least: int = 0) -> None:
    """Run ``imports`` (code that fills ``mods``, the modules it imported) in a fresh interpreter; none of
    ``absent`` may be loaded afterwards."""
    code = f"import importlib, pkgutil, sys\nmods = []\n{imports}\nbad = [m for m in {absent!r} if m in sys.modules]\n"
    code += f"print(len(mods), bad)\nsys.exit(1 if bad or len(mods) < {at_least} else 0)\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_engine_imports_without_textual_or_litellm() -> None:
    every = (
        "import swarm_tui.engine as e\n"
        "mods = [m.name for m in pkgutil.walk_packages(e.__path__, 'swarm_tui.engine.')]\n"
        f"mods += {OUTSIDE_ENGINE!r}\n"
        "for m in mods: importlib.import_module(m)"
    )
    loaded_after(every, ("textual", "litellm"), at_least=30)


def test_the_screens_path_to_its_first_frame_imports_neither_pydantic_nor_nats() -> None:
    """What `swarm-tui` imports before its first frame (docs/performance.md, figure 1): the wire models (pydantic,
    ~70 ms here) and nats-py come with the engine, after the frame."""
    screen = (
        "mods = ['swarm_tui.cli.main', 'swarm_tui.cli.runner', 'swarm_tui.tui.app']\n"
        "for m in mods: importlib.import_module(m)\n"
        "from swarm_tui.engine.projection.state import SwarmState\n"
        "SwarmState()"
    )
    loaded_after(screen, ("pydantic", "nats", "aiohttp", "litellm"), at_least=3)

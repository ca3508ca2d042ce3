"""The engine never imports Textual: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = [
    "swarm_tui.engine", "swarm_tui.engine.bus", "swarm_tui.engine.config", "swarm_tui.engine.messages",
    "swarm_tui.engine.state", "swarm_tui.engine.engine", "swarm_tui.engine.assemble", "swarm_tui.engine.control",
    "swarm_tui.engine.doctor", "swarm_tui.cmds", "swarm_tui.cli",
]


def test_engine_imports_without_textual_or_litellm() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import swarm_tui.engine as e\n"
        "mods = [m.name for m in pkgutil.iter_modules(e.__path__, 'swarm_tui.engine.')]\n"
        f"mods += {ENGINE_MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "bad = [m for m in ('textual', 'litellm') if m in sys.modules]\n"
        "print(len(mods), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr

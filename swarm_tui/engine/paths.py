"""XDG paths. Everything the app writes lives under the data, state or cache dir (or SWARM_DATA_DIR)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    v = env.get(var)
    return Path(v) if v else Path.home() / fallback


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "swarm-tui" / "config.toml"


def data_dir(configured: str = "", env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if configured:
        return Path(configured).expanduser()
    return _xdg(env, "XDG_DATA_HOME", ".local/share") / "swarm-tui"


def log_path(data: Path) -> Path:
    return data / "swarm-tui.log"

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


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def ensure_private_dir(path: Path) -> int | None:
    """Create ``path`` (and missing parents) readable by this user alone, or tighten it if it is wider.

    Tasks, answers and the log are the user's business only: the data dir is 0700 whatever the umask. Returns
    the mode an existing directory had when it was tightened (for one log line), else None."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it meanwhile: tightened below like any
            pass
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    # the directory alone: nobody else can reach what is inside it then, and the files in it keep their modes
    # (a data dir configured where other things live must not lose their executable bits)
    path.chmod(PRIVATE_DIR)
    return None if path in missing else mode


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor of ``path`` opened with mode 0600 (an existing wider file is tightened)."""
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return fd

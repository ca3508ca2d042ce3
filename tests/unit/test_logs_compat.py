"""logs.py is the standard library's adapter: it overrides ``FileHandler._open`` (private) so the log file and each
file it rotates to are created 0600. These fail when a Python release stops calling it that way."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from swarm_tui.engine.logs import PrivateRotatingFileHandler


def test_the_handler_still_opens_its_files_through_the_private_method() -> None:
    assert callable(getattr(logging.FileHandler, "_open", None))
    assert "_open" in PrivateRotatingFileHandler.__dict__


def test_the_log_and_every_rotated_file_are_private(tmp_path: Path) -> None:
    path = tmp_path / "swarm-tui.log"
    h = PrivateRotatingFileHandler(path, maxBytes=200, backupCount=2, encoding="utf-8")
    try:
        rec = logging.LogRecord("t", logging.INFO, __file__, 1, "x" * 150, None, None)
        for _ in range(4):  # past maxBytes twice: two rotations
            h.emit(rec)
    finally:
        h.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["swarm-tui.log", "swarm-tui.log.1", "swarm-tui.log.2"]
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}

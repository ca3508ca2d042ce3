"""The exit codes are one table (``EXIT_CODES``): the README lists exactly it, and every error takes its code
from it."""

from __future__ import annotations

import re

from swarm_tui.engine.errors import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_PIPE,
    EXIT_USAGE,
    BusError,
    ConfigError,
    SwarmError,
    UsageError,
)
from tests.support.env import ROOT


def test_the_readme_lists_the_exit_codes_of_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| exit | when |")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", readme[start:].split("\n\n", 1)[0], flags=re.M)
    assert {int(code): text.replace("\\|", "|") for code, text in rows} == EXIT_CODES


def test_every_error_takes_its_code_from_the_table() -> None:
    assert (SwarmError.code, BusError.code) == (EXIT_FAILED, EXIT_FAILED)
    assert (UsageError.code, ConfigError.code) == (EXIT_USAGE, EXIT_USAGE)
    assert EXIT_PIPE == 128 + 13  # SIGPIPE, as a shell reports a reader that left
    assert set(EXIT_CODES) >= {EXIT_FAILED, EXIT_USAGE, EXIT_PIPE}

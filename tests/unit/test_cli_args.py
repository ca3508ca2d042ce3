"""An id's suffix as a card shows it (``-w2``) is an id where a command takes one, in its place; elsewhere a word
that starts with '-' is an option as usual, and one ``submit`` does not have is refused in one line that says how
to send such a task (after ``--``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_tui.cli.main import _ids_as_ids, _unmark, build_parser
from tests.support.env import base_env, run_cli


def _parse(argv: list[str]) -> dict[str, object]:
    return vars(_unmark(build_parser().parse_args(_ids_as_ids(argv))))


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["edit", "-w2", "3"], {"id": "-w2", "workers": 3}),
        (["approve", "-j1", "--workers", "2"], {"id": "-j1", "workers": 2}),
        (["cancel", "-w3"], {"worker": "-w3"}),
        (["--config", "c.toml", "promote", "-j12"], {"job": "-j12"}),
        (["submit", "--", "-w2"], {"text": "-w2"}),
        (["submit", "-5 degrees"], {"text": "-5 degrees"}),
    ],
)
def test_an_id_suffix_stays_in_its_place(argv: list[str], want: dict[str, object]) -> None:
    got = _parse(argv)
    assert {k: got[k] for k in want} == want


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["submit", "-w2"], "a task that starts with '-' goes after --: swarm-tui submit -- -w2"),
        (["submit", "hello", "-x"], "no option -x"),
        (["submit", "\x1b[2J", "-\x1b]0;t\x07"], "no option"),
        (["edit", "-w2", "3"], "-w2 is the end of a worker's or an answer's id, not a decision's"),
        (["reject", "-j1"], "not a decision's"),
        (["edit", "3", "-w2"], "expected a whole number, got '-w2'"),
    ],
)
def test_a_word_that_is_no_option_is_one_clear_line(tmp_path: Path, argv: list[str], says: str) -> None:
    res = run_cli(argv, base_env(tmp_path, SWARM_NATS_URL="nats://127.0.0.1:9"))
    assert res.returncode == 2 and res.stdout == "", res.stdout + res.stderr
    assert says in res.stderr and "\x1b" not in res.stderr and "\x07" not in res.stderr, res.stderr
    if argv[0] != "edit" or argv[1] != "3":  # argparse's own errors come with its usage line
        assert res.stderr.count("\n") == 1, res.stderr


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["export-log", "--since", "-15m", "--out", "f"], {"since": "-15m", "out": "f"}),
        (["export-log", "--out", "f", "--since", "-1h30m", "--force"], {"since": "-1h30m", "force": True}),
        (["export-log", "--since", "12", "--out", "f"], {"since": "12"}),
        (["submit", "--", "--since", "-1h"], {"text": "--since"}),
    ],
)
def test_a_point_before_now_is_the_value_of_its_option(argv: list[str], want: dict[str, object]) -> None:
    from swarm_tui.cli.main import _points_joined

    got = vars(build_parser().parse_known_args(_points_joined(argv))[0])
    assert {k: got[k] for k in want} == want

"""What a person may write for a point of the log (``--at``, ``--from``, ``--since``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from swarm_tui.engine.errors import UsageError
from swarm_tui.engine.history.when import parse_point

NOW = 1_900_000_000.0


def test_a_number_is_a_sequence() -> None:
    p = parse_point("12345", now=NOW)
    assert (p.kind, p.seq) == ("seq", 12345)


@pytest.mark.parametrize(
    ("text", "back"), [("-15m", 900), ("-2h", 7200), ("-1d", 86400), ("-1h30m", 5400), ("-90s", 90), ("-1w", 604800)]
)
def test_a_relative_time_counts_back_from_now(text: str, back: int) -> None:
    p = parse_point(text, now=NOW)
    assert (p.kind, p.value) == ("time", NOW - back)


def test_iso_times_with_and_without_an_offset() -> None:
    assert (
        parse_point("2026-12-04T18:30:00Z", now=NOW).value
        == datetime.fromisoformat("2026-12-04T18:30:00+00:00").timestamp()
    )
    assert parse_point("2026-12-04 18:30", now=NOW).value == datetime(2026, 12, 4, 18, 30).timestamp()
    assert parse_point("2026-12-04", now=NOW).value == datetime(2026, 12, 4).timestamp()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("0", "start at 1"),
        ("-15", "give a unit"),
        ("yesterday", "not understood"),
        ("15m", "not understood"),
        ("2026-13-45", "not understood"),
        ("9" * 40, "start at 1"),
        ("\x1b[31m", "not understood"),
    ],
)
def test_anything_else_is_one_line_naming_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_point(text, now=NOW)
    msg = str(err.value)
    assert says in msg and "\n" not in msg and "\x1b" not in msg


def test_a_time_typed_to_the_second_lasts_that_second() -> None:
    """What status --at prints (to the second) typed back covers that whole second; a fraction typed is exact."""
    assert parse_point("2026-12-04 18:30:05", now=NOW).span == 1.0
    assert parse_point("2026-12-04 18:30:05.250", now=NOW).span == 0.0
    assert parse_point("-15m", now=NOW).span == 0.0 and parse_point("12", now=NOW).span == 0.0

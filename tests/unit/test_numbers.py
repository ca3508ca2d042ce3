"""Numbers from outside (engine/bus/numbers.py): a JSON integer too large for a float is unknown, as NaN and
Infinity are, in every reader of money and token counts (before, ``math.isfinite(10**400)`` raised
OverflowError in the stream's token counts, the reconciler's records and the key answer)."""

from __future__ import annotations

import json
import math

import pytest

from swarm_tui.engine.bus.numbers import finite, nonnegative
from swarm_tui.engine.guards.price_parts import per_unit
from swarm_tui.engine.swarm.progress import count, finite_cost

HUGE = json.loads("1" + "0" * 400)  # what Python's json makes of a 401-digit number: an int


@pytest.mark.parametrize("v", [HUGE, -HUGE, math.nan, math.inf, -math.inf, True, False, None, "1", [1], {"a": 1}])
def test_what_is_not_a_number_is_unknown(v: object) -> None:
    assert finite(v) is None and nonnegative(v) is None and finite_cost(v) is None and count(v) == 0


def test_numbers_are_read_as_they_are() -> None:
    assert finite(-2) == -2.0 and nonnegative(-2) is None and nonnegative(0) == 0.0 and nonnegative(1.5) == 1.5
    assert count(3.7) == 3 and count(10**15) == 0 and finite(10**299) == float(10**299)


def test_a_price_that_is_a_huge_integer_is_no_price() -> None:
    assert per_unit(HUGE) is None and per_unit("0.000001") == 1e-6

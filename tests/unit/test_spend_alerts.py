"""Spend alerts (``budget.alerts``): each level below the ceiling is the "spend" need, rung once when passed; a
higher level rings again, the ceiling takes over at 100%, and midnight (UTC) or a raised ceiling re-arm them."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from swarm_tui.engine.attention.needs import Attention, alert_level
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.guards.spend_status import offline_spend_summary
from swarm_tui.engine.info import EngineInfo
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import make_config
from tests.unit.test_attention import Clock, kinds, seen, spend
from tests.unit.test_projection import spend as entry

MIDNIGHT = float(calendar.timegm((2026, 12, 6, 0, 0, 0)))  # 2026-12-06 00:00:00 UTC


def test_each_level_rings_once_and_the_ceiling_takes_over() -> None:
    clock = Clock()
    att = Attention(clock=clock, ring_on_start=True)
    assert att.update(SwarmState(), spend(0.49), "connected") == []
    rang = att.update(SwarmState(), spend(0.5), "connected")
    assert kinds(rang) == ["spend"] and "passed 50% of the daily ceiling ($0.50 of $1.00)" in rang[0]["what"]
    clock.t += 1
    assert att.update(SwarmState(), spend(0.6), "connected") == []  # the same level, looked at again
    clock.t += 1
    rang = att.update(SwarmState(), spend(0.8), "connected")  # 50% still unseen: 80% is news all the same
    assert kinds(rang) == ["spend"] and "80%" in rang[0]["what"]
    assert [n["kind"] for n in att.unseen()] == ["spend"]
    clock.t += 1
    assert kinds(att.update(SwarmState(), spend(1.0), "connected")) == ["ceiling"]
    assert [n["kind"] for n in att.current] == ["ceiling"]  # not both: at the wall the ceiling is the news


def test_levels_come_from_the_config_and_a_kind_switched_off_stays_quiet() -> None:
    assert alert_level(spend(0.7)["spend"], (0.25, 0.75, 1.0)) == 0.25  # type: ignore[arg-type]
    att = Attention(kinds=("approval",), clock=Clock(), ring_on_start=True, levels=(0.25,))
    assert att.update(SwarmState(), spend(0.3), "connected") == [] and att.unseen() == []
    assert [n["kind"] for n in att.current] == ["spend"]  # still shown where the money is, only not rung


def test_midnight_utc_rearms_them(tmp_path: Path) -> None:
    """23:59:59 -> 00:00:00: the day's spend starts at 0, the need clears; the next day's 50% rings again."""
    cfg = make_config(tmp_path)  # a $1.00 ceiling
    clock = Clock(MIDNIGHT - 1)
    st = SwarmState(session_start=MIDNIGHT - 3600, clock=clock)
    att = Attention(clock=clock, ring_on_start=True, levels=cfg.budget.alerts)

    def look() -> list[str]:
        info: EngineInfo = {"spend": offline_spend_summary(cfg, st)}  # type: ignore[typeddict-item]
        return kinds(att.update(st, info, "connected"))

    st.apply(entry("d-a", 0, 0.6, at=MIDNIGHT - 30), 1)
    assert look() == ["spend"]
    clock.t = MIDNIGHT
    assert look() == [] and att.current == []  # a new UTC day: nothing spent today
    st.apply(entry("d-b", 0, 0.55, at=MIDNIGHT + 1), 2)
    clock.t = MIDNIGHT + 2
    rang = look()
    assert rang == ["spend"] and "$0.55 of $1.00" in att.current[0]["what"]


def test_a_raised_ceiling_rearms_the_higher_level_without_ringing_the_lower() -> None:
    clock = Clock()
    st = SwarmState()
    att = Attention(clock=clock, ring_on_start=True)
    assert kinds(att.update(st, spend(0.85), "connected")) == ["spend"]
    clock.t += 1
    st.apply(seen("spend", clock.t), 1)
    clock.t += 1
    assert att.update(st, spend(0.85, ceiling=1.5), "connected") == []  # now 57%: lower, no news
    assert att.unseen() == [] and "50%" in att.current[0]["what"]
    clock.t += 1
    assert kinds(att.update(st, spend(1.25, ceiling=1.5), "connected")) == ["spend"]  # 83%: 80% again
    clock.t += 1
    assert att.update(st, spend(1.25, ceiling=5.0), "connected") == [] and att.current == []  # below all: clear
    clock.t += 1
    assert kinds(att.update(st, spend(2.5, ceiling=5.0), "connected")) == ["spend"]


@pytest.mark.parametrize("bad", ["0.5,0.5", "0", "1.5", "x", "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"])
def test_bad_levels_are_one_line(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"SWARM_BUDGET_ALERTS": bad})
    assert "\n" not in str(err.value) and "budget.alerts" in str(err.value)


def test_levels_from_toml_are_sorted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[budget]\nalerts = [0.9, 0.6]\n")
    assert load_config(path, env={}).budget.alerts == (0.6, 0.9)
    path.write_text("[budget]\nalerts = [true]\n")
    with pytest.raises(ConfigError):
        load_config(path, env={})

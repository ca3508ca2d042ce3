"""Spend alerts against a real nats-server: ``notify.command`` hears each level once (50%, then 80%) with the need
as JSON, the engine's ``info()`` and ``status --json``'s ``needs_attention`` carry it, and with no engine running
``status`` reads the level from the log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from swarm_tui.cli.status import status_data
from swarm_tui.engine.attention.notifier import Notifier
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import SpendEntry
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.info import SpendInfo
from tests.integration.test_attention import SCRIPT, _lines
from tests.support.polling import until


class Spend:
    """The spend guard as the notifier reads it: today's spend under a $1.00 ceiling."""

    def __init__(self) -> None:
        self.today = 0.0

    def info(self) -> SpendInfo:
        s: Any = {"today_usd": self.today, "ceiling_usd": 1.0, "out_of_credit": False, "blocked_reason": ""}
        return s  # type: ignore[no-any-return]


async def test_notify_command_hears_each_level_once(cfg: Config, tmp_path: Path) -> None:
    out = tmp_path / "pings.jsonl"
    cfg = cfg.replace(notify__command=f"{sys.executable} -c {json.dumps(SCRIPT)} {out}")
    bus = Bus(cfg)
    await bus.connect()
    engine = Engine(cfg, bus)
    spend = Spend()
    notifier = engine.add(Notifier(cfg.notify, bus, engine.state, spend=spend, levels=cfg.budget.alerts))
    await engine.start()
    try:
        await until(lambda: notifier.attention._started, 5, "the baseline look")
        spend.today = 0.52
        notifier.check()
        notifier.check()  # looked at twice: one ping
        await until(lambda: len(_lines(out)) == 1, 10, "the 50% ping")
        assert (
            _lines(out)[0]["kind"] == "spend" and "50% of the daily ceiling ($0.52 of $1.00)" in _lines(out)[0]["what"]
        )
        spend.today = 0.81
        notifier.check()
        await until(lambda: len(_lines(out)) == 2, 10, "the 80% ping")
        assert "80%" in _lines(out)[1]["what"]
        needs = engine.info()["attention"]["needs"]  # type: ignore[typeddict-item]
        assert [n["kind"] for n in needs] == ["spend"]
    finally:
        await engine.stop()


async def test_status_json_names_the_level_with_no_engine_running(cfg: Config, bus: Bus) -> None:
    now = time.time()
    entry = SpendEntry(
        id="d-s-j0", model="openrouter/m/a", worker_id="d-s-w0", decision_id="d-s", task_id="t-s", cost_usd=0.83, at=now
    )
    await bus.publish_event(entry, msg_id=entry.id)
    data = await status_data(cfg)
    found = {n["kind"]: n for n in data["needs_attention"]}
    assert set(found) == {"spend"} and "80%" in found["spend"]["what"], data["needs_attention"]

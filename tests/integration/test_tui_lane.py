"""Issue 28: the Workers panel says which model holds the local lane (the heart's or an ant's) and who waits; with
no key a queued local worker is not said to wait for the key (only a cloud one is)."""

from __future__ import annotations

import time
from typing import Any, cast

from swarm_tui.engine.bus.wire import WorkerEvent
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.info import EngineInfo
from swarm_tui.engine.swarm.gates import MISSING_KEY
from swarm_tui.tui.widgets.workers_panel import PoolFacts, lane_words
from tests.support.tui import make_app, started


def queued(model: str) -> WorkerEvent:
    return WorkerEvent(
        worker_id="d-1-w0",
        job_id="d-1-j0",
        decision_id="d-1",
        task_id="t-1",
        model=model,
        role="research",
        state="queued",
        at=time.time(),
    )


async def test_the_workers_title_names_the_model_holding_the_lane_and_who_waits(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(120, 36)) as pilot:
        await started(app, pilot)
        panel = app.room.workers_panel
        lane: dict[str, Any] = {"holder": "conductor", "model": "gemma2:2b", "since": 1.0, "turns": 3}
        app.room.info = cast(EngineInfo, {**app.info, "lane": {**lane, "waiting": ["d-1-w0", "d-1-w1"]}})
        app.room.show_titles()
        await pilot.pause()
        assert "lane: gemma2:2b (the heart), 2 waiting" in str(panel.border_title), panel.border_title
        ant = {**lane, "holder": "d-1-w0", "model": "qwen2.5:0.5b", "waiting": ["conductor"]}
        app.room.info = cast(EngineInfo, {**app.info, "lane": ant})
        app.room.show_titles()
        await pilot.pause()
        assert "lane: qwen2.5:0.5b (d-1-w0), 1 waiting" in str(panel.border_title), panel.border_title
        app.room.info = cast(EngineInfo, {**app.info, "lane": {**lane, "holder": "", "model": "", "waiting": []}})
        app.room.show_titles()
        await pilot.pause()
        assert "lane" not in str(panel.border_title)


def test_with_no_key_only_a_queued_cloud_card_waits_for_the_key() -> None:
    info = cast(EngineInfo, {"pool": {"blocked": MISSING_KEY, "local_only": True, "scale": 2}})
    facts = PoolFacts.of(info, 30.0)
    assert facts.note(queued("ollama_chat/qwen2.5:0.5b")) == ""
    assert facts.note(queued("openrouter/google/gemini-2.5-flash-lite")) == f"waits: {MISSING_KEY}"
    assert lane_words(cast(EngineInfo, {"lane": "forged"})) == ""

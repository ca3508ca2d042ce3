"""Where the money went (engine/guards/spend_view.py): the log's spend entries by model, role, task and day, billed
(reconciled included) and estimated apart, the days' sparkline, the price gaps; today's figure is the Spend panel's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from swarm_tui.engine.bus.wire import WorkerEvent, job_id, worker_id
from swarm_tui.engine.guards.price_parts import ModelPrice
from swarm_tui.engine.guards.spend_status import log_totals
from swarm_tui.engine.guards.spend_view import book_problem, info_problem, spend_lines, spend_view
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import make_config
from tests.unit.test_projection import NOW, fold, spend, task

DAY = 86400.0
CHEAP, DEAR = "openrouter/acme/cheap", "openrouter/acme/dear:online"


def _state() -> SwarmState:
    role = WorkerEvent(
        worker_id=worker_id("d-b", 0), job_id=job_id("d-b", 0), decision_id="d-b", task_id="t-b", model=DEAR,
        role="code", state="running", at=NOW,
    )  # fmt: skip
    # the last d-b entry: an attempt whose cost the generation endpoint told later (reconciled)
    return fold(
        [
            task(),
            task("t-b"),
            role,
            spend("d-a", 0, 0.10, model=CHEAP),  # billed at the call's end
            spend("d-a", 1, 0.02, model=CHEAP, estimated=True),  # no cost came: estimated
            spend("d-b", 0, 0.30, tid="t-b", model=DEAR, at=NOW - 2 * DAY),
            spend("d-b", 0, 0.05, tid="t-b", model=DEAR).model_copy(update={"id": f"{job_id('d-b', 0)}-a0f12ab"}),
            spend("d-c", 0, 9.0, tid="t-c", model=CHEAP, at=NOW - 9 * DAY),  # before the window
        ]
    )


class Book:
    def __init__(self) -> None:
        self.prices = {"acme/cheap": ModelPrice(1e-6, 2e-6), "acme/dear": ModelPrice(1e-6, 2e-6, search_problem="-1")}

    def known(self, model: str) -> bool:
        return model.removeprefix("openrouter/").removesuffix(":online") in self.prices

    def model_price(self, model: str) -> ModelPrice:
        return self.prices[model.removeprefix("openrouter/").removesuffix(":online")]


def test_the_money_by_model_role_task_and_day() -> None:
    st = _state()
    view = spend_view(st, NOW + 60, 7, pending=(2, 0.4))
    assert [d["usd"] for d in view["days"]] == [0, 0, 0, 0, 0.3, 0, 0.17]
    assert view["days"][-1]["usd"] == log_totals(st, NOW + 60)["today_usd"]  # the Spend panel's today
    assert view["sparkline"] == "▁▁▁▁█▁▅"
    assert (view["total_usd"], view["billed_usd"], view["estimated_usd"]) == (0.47, 0.45, 0.02)
    assert view["reconciled_usd"] == 0.05 and (view["pending"], view["pending_usd"]) == (2, 0.4)
    assert [(r["name"], r["usd"], r["estimated_usd"]) for r in view["by_model"]] == [
        (DEAR, 0.35, 0),
        (CHEAP, 0.12, 0.02),
    ]
    assert [(r["name"], r["usd"]) for r in view["by_role"]] == [("code", 0.35), ("?", 0.12)]
    assert [r["name"] for r in view["by_task"]] == ["t-b do t-b", "t-a do t-a"]
    assert spend_view(st, NOW + 60, 1)["total_usd"] == 0.17  # the window is today alone
    text = "\n".join(spend_lines(view))
    assert "billed by OpenRouter $0.4500 (of which reconciled later $0.0500) · estimated $0.0200" in text
    assert "pending: 2 attempts wait for their cost ($0.4000 held)" in text


def test_models_with_unknown_or_partial_prices_are_named() -> None:
    st = fold([task(), spend("d-a", 0, 0.1, model="openrouter/acme/gone"), spend("d-a", 1, 0.1, model=DEAR)])
    gaps = spend_view(st, NOW + 60, problem=book_problem(Book()))["prices"]
    assert [(g["model"], g["price"]) for g in gaps] == [(DEAR, "partial"), ("openrouter/acme/gone", "unknown")]
    assert "pricing.web_search = -1" in gaps[0]["why"]
    info: Any = {"fallback_models": ["openrouter/acme/gone"], "unpriced_models": {DEAR: "cannot bound"}}
    again = spend_view(st, NOW + 60, problem=info_problem(info))["prices"]
    assert [(g["model"], g["price"]) for g in again] == [(DEAR, "partial"), ("openrouter/acme/gone", "unknown")]
    assert "price unknown: openrouter/acme/gone" in "\n".join(
        spend_lines(spend_view(st, NOW, problem=info_problem(info)))
    )


async def test_doctor_names_the_roles_models_with_unknown_or_partial_prices(tmp_path: Path) -> None:
    from swarm_tui.cli.doctor import check_prices
    from swarm_tui.engine.guards.prices import CACHE_VERSION, PriceBook, list_id

    cfg = make_config(tmp_path)
    first = await check_prices(cfg)
    assert not first.ok and not first.required and "no price list cached yet" in first.detail
    models = sorted({r.model for r in cfg.roles.values()})
    prices = {list_id(m): ModelPrice(1e-6, 2e-6) for m in models[1:]}  # the first one is not listed
    prices[list_id(models[-1])] = ModelPrice(1e-6, 2e-6, problems=(("completion", "-1"),))
    path = PriceBook(cfg.openrouter, cfg.paths, fetch=False).path  # the cache as PriceBook writes it
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"v": CACHE_VERSION, "fetched_at": time.time(), "models": {k: v.to_json() for k, v in prices.items()}}
    path.write_text(json.dumps(doc))
    check = await check_prices(cfg)
    assert not check.ok and f"{models[0]} unknown" in check.detail and f"{models[-1]} partial" in check.detail
    assert check.line().startswith("warn prices")


def test_the_screen_makes_its_view_again_only_when_the_state_moved() -> None:
    from swarm_tui.tui.screens.spend import view_of

    st = fold([task(at=NOW - 600), spend("d-a", 0, 0.25, at=NOW - 60)])
    first = view_of(st, None, NOW)
    assert view_of(st, None, NOW + 1) is first  # nothing moved: the same view, not a new pass over the log
    st.apply(spend("d-a", 1, 0.5, at=NOW - 30))
    assert view_of(st, None, NOW + 2)["total_usd"] == 0.75
    assert view_of(st, None, NOW + DAY)["days"][-1]["usd"] == 0.0  # a new day: the window moved

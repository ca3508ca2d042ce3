"""Where the money went: the log's spend entries over the last days, by model, role, task and day, with billed
and estimated amounts apart, and the models whose price is unknown or partial.

Pure functions over the projection (``SwarmState.spend_entries``, folded once for ``status``, the Spend panel and
this), so ``swarm-tui spend``, its ``--json`` and the app's Spend screen show the same figures: today's column is
``SwarmState.today_spend``, the figure the Spend panel shows when no engine runs (``log_totals``).

An entry is *billed* when its cost is OpenRouter's (``usage.cost``, or ``total_cost`` from the generation
endpoint: a *reconciled* attempt, id ``<job>-a<hex>``), *estimated* when no cost came (``SpendEntry.estimated``:
charged its worst case, or priced from the tokens seen). Attempts still waiting for their cost (the reconcile
records) are not spend yet: their worst case is held in the ledger, shown apart as "pending".
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypedDict

from swarm_tui.engine.bus.wire import SpendEntry
from swarm_tui.engine.guards.price_parts import ModelPrice
from swarm_tui.engine.models import is_local
from swarm_tui.engine.projection.state import SwarmState

DEFAULT_DAYS = 7
MAX_DAYS = 366
SPARK = "▁▂▃▄▅▆▇█"
ATTEMPT = re.compile(r"-a[0-9a-f]{6}$")  # a reconciled attempt's entry (engine/guards/reconcile.py: attempt_id)
TOP = 8  # rows per breakdown in the text; --json has them all


class Row(TypedDict):
    name: str
    usd: float
    estimated_usd: float
    entries: int


class Day(TypedDict):
    day: str  # YYYY-MM-DD, UTC
    usd: float


class PriceGap(TypedDict):
    model: str
    price: str  # "unknown" (not in the price list: priced at the configured fallback) or "partial"
    why: str


class SpendView(TypedDict):
    days: list[Day]  # oldest first, every day of the window (0 where nothing was spent)
    sparkline: str
    total_usd: float
    billed_usd: float
    reconciled_usd: float  # part of billed: costs the generation endpoint told after the call
    estimated_usd: float
    pending: int  # attempts waiting for their cost (-1: not read)
    pending_usd: float  # their worst case, held
    by_model: list[Row]
    by_role: list[Row]
    by_task: list[Row]
    prices: list[PriceGap]


def days_back(now: float, days: int) -> list[str]:
    """The UTC days of the window, oldest first, today last."""
    today = datetime.fromtimestamp(now, UTC).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def window_bounds(window: list[str]) -> tuple[float, float]:
    """The window's first midnight and the one after its last day (UTC): an entry counts where a day holds it."""
    lo = datetime.fromisoformat(window[0]).replace(tzinfo=UTC)
    hi = datetime.fromisoformat(window[-1]).replace(tzinfo=UTC) + timedelta(days=1)
    return lo.timestamp(), hi.timestamp()


def sparkline(values: list[float]) -> str:
    """One block per day, scaled to the highest (nothing spent: the lowest block)."""
    hi = max(values, default=0.0)
    if hi <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / hi * (len(SPARK) - 1)))] for v in values)


def _role(state: SwarmState, e: SpendEntry) -> str:
    w = state.workers.get(e.worker_id)
    if w is not None and w.role:
        return w.role
    r = state.results.get(e.id)
    return r.role if r is not None and r.role else "?"


def _task(state: SwarmState, task_id: str) -> str:
    tv = state.tasks.get(task_id)
    text = " ".join(tv.task.text.split())[:40] if tv is not None else ""
    return f"{task_id} {text}".strip()


def _rows(groups: dict[str, list[SpendEntry]]) -> list[Row]:
    rows: list[Row] = [
        {
            "name": name,
            "usd": round(sum(e.cost_usd for e in es), 6),
            "estimated_usd": round(sum(e.cost_usd for e in es if e.estimated), 6),
            "entries": len(es),
        }
        for name, es in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r["usd"], r["name"]))


def price_gaps(models: Iterable[str], problem: Callable[[str], tuple[str, str] | None]) -> list[PriceGap]:
    """The models whose price is unknown or partial; ``problem(model)`` is (price, why) or None when known."""
    out: list[PriceGap] = []
    for m in sorted(set(models)):
        got = None if is_local(m) else problem(m)
        if got is not None:
            out.append({"model": m, "price": got[0], "why": got[1][:200]})
    return out


class PriceList(Protocol):
    """What is read of the price list (``PriceBook``)."""

    prices: dict[str, ModelPrice]

    def known(self, model: str) -> bool: ...
    def model_price(self, model: str) -> ModelPrice: ...


def book_problem(book: PriceList) -> Callable[[str], tuple[str, str] | None]:
    """A model's price gap as the price list (cached on disk or the engine's) tells it."""
    from swarm_tui.engine.guards.prices import searches  # aiohttp with it: only where a list is read

    def problem(model: str) -> tuple[str, str] | None:
        if not book.prices:
            return "unknown", "no price list yet: priced at openrouter.fallback_*_usd_per_mtok"
        if not book.known(model):
            return "unknown", "not in OpenRouter's price list: priced at openrouter.fallback_*_usd_per_mtok"
        why = book.model_price(model).problem(searches(model))
        return ("partial", f"OpenRouter's list has {why}") if why is not None else None

    return problem


def info_problem(info: Mapping[str, object] | None) -> Callable[[str], tuple[str, str] | None]:
    """The same from a running engine's spend info (its price list's ``fallback_models``, ``unpriced_models``)."""
    fallback = info.get("fallback_models") if info else None
    unpriced = info.get("unpriced_models") if info else None
    fallback = fallback if isinstance(fallback, list) else []
    unpriced = unpriced if isinstance(unpriced, dict) else {}

    def problem(model: str) -> tuple[str, str] | None:
        if model in unpriced:
            return "partial", str(unpriced[model])
        if model in fallback:
            return "unknown", "not in OpenRouter's price list: priced at openrouter.fallback_*_usd_per_mtok"
        return None

    return problem


def spend_view(
    state: SwarmState,
    now: float,
    days: int = DEFAULT_DAYS,
    *,
    pending: tuple[int, float] = (-1, 0.0),
    problem: Callable[[str], tuple[str, str] | None] | None = None,
) -> SpendView:
    window = days_back(now, days)
    # both ends: an entry stamped past today's midnight (a clock ahead, within the bus's skew) is in no day of the
    # window, so it is in no total either, or the total would not be the sum of the days
    lo, hi = window_bounds(window)
    entries = [e for e in state.spend_entries.values() if lo <= e.at < hi]
    by_model: dict[str, list[SpendEntry]] = defaultdict(list)
    by_role: dict[str, list[SpendEntry]] = defaultdict(list)
    by_task: dict[str, list[SpendEntry]] = defaultdict(list)
    names: dict[str, str] = {}  # task id -> its row's name, made once per task
    for e in entries:
        by_model[e.model].append(e)
        by_role[_role(state, e)].append(e)
        name = names.get(e.task_id)
        if name is None:
            name = names[e.task_id] = _task(state, e.task_id)
        by_task[name].append(e)
    per_day = [round(state.spend_days.get(d, 0.0), 6) for d in window]  # the fold's own sums: the panel's today
    billed = [e for e in entries if not e.estimated]
    return {
        "days": [{"day": d, "usd": v} for d, v in zip(window, per_day, strict=True)],
        "sparkline": sparkline(per_day),
        "total_usd": round(sum(e.cost_usd for e in entries), 6),
        "billed_usd": round(sum(e.cost_usd for e in billed), 6),
        "reconciled_usd": round(sum(e.cost_usd for e in billed if ATTEMPT.search(e.id)), 6),
        "estimated_usd": round(sum(e.cost_usd for e in entries if e.estimated), 6),
        "pending": pending[0],
        "pending_usd": round(pending[1], 6),
        "by_model": _rows(by_model),
        "by_role": _rows(by_role),
        "by_task": _rows(by_task),
        "prices": price_gaps(by_model, problem) if problem is not None else [],
    }


def usd(v: float) -> str:
    return f"${v:.4f}" if 0 < v < 1 else f"${v:.2f}"  # a cheap model's day is cents: its digits are the story


def spend_lines(view: SpendView) -> list[str]:
    """The view as text: ``swarm-tui spend`` prints it, the Spend screen shows it."""
    days = view["days"]
    out = [
        f"spend, last {len(days)} days (UTC): {usd(view['total_usd'])}  {view['sparkline']}  "
        f"{days[0]['day']} .. {days[-1]['day']} (today {usd(days[-1]['usd'])})",
        f"  billed by OpenRouter {usd(view['billed_usd'])} (of which reconciled later {usd(view['reconciled_usd'])})"
        f" · estimated {usd(view['estimated_usd'])}",
    ]
    if view["pending"] > 0:
        out.append(f"  pending: {view['pending']} attempts wait for their cost ({usd(view['pending_usd'])} held)")
    for title, key in (("by model", "by_model"), ("by role", "by_role"), ("by task", "by_task")):
        rows: list[Row] = view[key]  # type: ignore[literal-required]
        out.append(f"{title}:" + ("" if rows else " nothing spent"))
        for r in rows[:TOP]:
            est = f" (estimated {usd(r['estimated_usd'])})" if r["estimated_usd"] else ""
            out.append(f"  {usd(r['usd']):>9}  {r['name'][:60]}{est}")
        if len(rows) > TOP:
            out.append(f"  ... and {len(rows) - TOP} more (--json has them all)")
    out.append("by day:")
    out.extend(f"  {d['day']}  {usd(d['usd']):>9}" for d in days)
    for g in view["prices"]:
        out.append(f"price {g['price']}: {g['model']} ({g['why']})")
    return out

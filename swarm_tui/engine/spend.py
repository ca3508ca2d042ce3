"""Spend: totals derived from the event log, and the ceiling."""

from __future__ import annotations

from typing import Any

from .config import Config
from .state import SwarmState


def offline_spend_summary(cfg: Config, state: SwarmState) -> dict[str, Any]:
    """Spend as the log alone tells it (no engine running: nothing is reserved)."""
    ceiling = state.ceiling_usd if state.ceiling_usd is not None else cfg["budget.daily_usd"]
    today = state.today_spend()
    return {
        "today_usd": round(today, 6), "session_usd": round(state.spend.session, 6),
        "ceiling_usd": ceiling, "reserved_usd": 0.0, "remaining_usd": round(max(0.0, ceiling - today), 6),
        "estimated_usd": round(state.spend.estimated, 6),
        "by_model": {k: round(v, 6) for k, v in state.spend.by_model.items()},
        "price_source": "unknown (no engine running)", "credits_left_usd": None,
    }

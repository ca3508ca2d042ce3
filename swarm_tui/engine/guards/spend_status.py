"""Spend as `status` and the Spend panel show it when the totals come from the event log.

The totals (today, session, per model, per decision) are the ``SpendEntry`` events in the log (``SwarmState``),
so they survive any restart; the ledger adds only what is held right now. ``offline_spend_summary`` is the
view with no engine running (``status`` from a shell, the app before its engine is up): it must stay cheap to
import, so it needs no bus.
"""

from __future__ import annotations

from swarm_tui.engine.config.load import Config
from swarm_tui.engine.guards.ledger_doc import Doc, empty_doc
from swarm_tui.engine.info import OfflineSpend, SpendTotals
from swarm_tui.engine.projection.state import SwarmState


def log_totals(state: SwarmState, now: float) -> SpendTotals:
    return {
        "today_usd": round(state.today_spend(now), 6),
        "session_usd": round(state.spend.session, 6),
        "estimated_usd": round(state.spend.estimated, 6),
        "by_model": {k: round(v, 6) for k, v in sorted(state.spend.by_model.items())},
        "by_decision": {k: round(v, 6) for k, v in sorted(state.spend.by_decision.items())},
    }


def offline_spend_summary(
    cfg: Config, state: SwarmState, ledger: Doc | None = None, base: float | None = None
) -> OfflineSpend:
    """Spend as the log tells it, with the ledger's reservations when given (no engine running). The ceiling: the
    log's override, else ``base`` (the one the last engine published: what workers spend under), else this
    configuration's."""
    if state.ceiling_usd is not None:
        ceiling = state.ceiling_usd
    else:
        ceiling = base if base is not None else cfg.budget.daily_usd
    led = ledger or empty_doc()
    reserved = sum(r["usd"] for r in led["reserved"].values())
    totals = log_totals(state, state.clock())
    used = max(totals["today_usd"], float(led["spent"])) + reserved
    out: OfflineSpend = {
        "ceiling_usd": ceiling,
        "reserved_usd": round(reserved, 6),
        "reservations": len(led["reserved"]),
        "today_usd": totals["today_usd"],
        "session_usd": totals["session_usd"],
        "estimated_usd": totals["estimated_usd"],
        "by_model": totals["by_model"],
        "by_decision": totals["by_decision"],
        "remaining_usd": round(max(0.0, ceiling - used), 6),
        "price_source": "unknown (no engine running)",
        "price_age_s": None,
        "credits_left_usd": None,
        "out_of_credit": False,
        "blocked_reason": "",
    }
    if ledger is not None:  # only when the ledger could be read
        out["ledger_spent_usd"] = round(float(led["spent"]), 6)
    return out

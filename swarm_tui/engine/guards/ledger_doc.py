"""The budget ledger's document and every change made to it, as pure functions.

One ledger key (``day-YYYY-MM-DD``, ``dec-<decision>``) holds
``{"spent": usd, "reserved": {id: {"usd", "at"[, "rc": 1]}}, "settled": [ids], "at": last write}``.
``BudgetLedger.cas`` (engine/guards/ledger.py) applies a change to the newest document under a key and writes it
back on the key's revision, calling the change again on a fresh read when another writer won: so a change must
decide from the document it is given alone (never from what an earlier try saw) and return
``(result, changed)``; ``changed`` False writes nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

from swarm_tui.engine.guards.estimate import usd
from swarm_tui.engine.guards.protocols import Reservation

log = logging.getLogger(__name__)

SETTLED_KEEP = 1000  # ids remembered per ledger key, so a settle is counted once
EPS = 1e-12

Doc = dict[str, Any]
R = TypeVar("R")
Change = Callable[[Doc], tuple[R, bool]]  # a change returns (its result, whether it changed the doc)


def empty_doc() -> Doc:
    return {"spent": 0.0, "reserved": {}, "settled": [], "at": 0.0}


def parse_doc(raw: bytes | None) -> Doc:
    """The document stored under a key; an unreadable one starts over (``reconcile`` restores its spend)."""
    try:
        doc = json.loads(raw or b"")
        spent = float(doc.get("spent", 0.0))
        reserved = {
            str(k): {"usd": float(v["usd"]), "at": float(v["at"])} | ({"rc": 1} if v.get("rc") else {})
            for k, v in dict(doc.get("reserved", {})).items()
        }
        settled = [str(x) for x in list(doc.get("settled", []))][-SETTLED_KEEP:]
        at = float(doc.get("at", 0.0))
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("a budget ledger entry is unreadable; starting it over from the event log")
        return empty_doc()
    return {
        "spent": spent if math.isfinite(spent) and spent >= 0 else 0.0,
        "reserved": reserved,
        "settled": settled,
        "at": at,
    }


def reserved_usd(doc: Doc) -> float:
    # no float(): an empty ledger gives int 0, shown as 0 (not 0.0) in `status --json` as it always was
    return cast(float, sum(r["usd"] for r in doc["reserved"].values()))


def used_usd(doc: Doc) -> float:
    """Spent plus held: what a new reservation has to fit beside."""
    return float(doc["spent"]) + reserved_usd(doc)


def clean_cost(cost_usd: float) -> float:
    """A reported cost as it is counted: a missing, negative or non-finite one counts as 0."""
    return float(cost_usd) if math.isfinite(cost_usd) and cost_usd > 0 else 0.0


def reserve_change(
    job_id: str, amount: float, ceiling: float, label: str, clock: Callable[[], float]
) -> Change[Reservation]:
    """Hold ``amount`` for the job if spent + held + amount fits under ``ceiling``; a job that holds a
    reservation already (redelivered) keeps it, one already settled is refused (it ran: never pay twice)."""

    def change(doc: Doc) -> tuple[Reservation, bool]:
        now = clock()
        mine = doc["reserved"].get(job_id)
        if mine is not None:  # a redelivered job keeps its reservation (its clock restarts)
            mine["at"] = now
            return Reservation(ok=True, amount_usd=mine["usd"]), True
        if job_id in doc["settled"]:
            return Reservation(ok=False, reason=f"already settled: job {job_id} ran and its spend is recorded"), False
        used = used_usd(doc)
        if used + amount > ceiling + EPS:
            left = max(0.0, ceiling - used)
            return Reservation(
                ok=False,
                reason=f"over budget: needs {usd(amount)} (worst case), {usd(left)} left of the {usd(ceiling)} {label}",
            ), False
        doc["reserved"][job_id] = {"usd": amount, "at": now}
        return Reservation(ok=True, amount_usd=amount), True

    return change


def release_change(job_id: str) -> Change[bool]:
    """Drop the job's reservation (nothing was spent). The result is always True."""

    def change(doc: Doc) -> tuple[bool, bool]:
        return True, doc["reserved"].pop(job_id, None) is not None

    return change


def settle_change(entry_id: str, cost: float, reserved_seen: list[float] | None = None) -> Change[bool]:
    """Replace the reservation of ``entry_id`` (a job or an attempt) by ``cost`` in one write, once per id: the
    result is True when this write counted it. The first reservation found is appended to ``reserved_seen``."""

    def change(doc: Doc) -> tuple[bool, bool]:
        mine = doc["reserved"].pop(entry_id, None)
        if mine is not None and reserved_seen is not None and not reserved_seen:
            reserved_seen.append(mine["usd"])
        if entry_id in doc["settled"]:
            return False, mine is not None
        doc["spent"] = float(doc["spent"]) + cost
        doc["settled"] = (doc["settled"] + [entry_id])[-SETTLED_KEEP:]
        return True, True

    return change


def begin_attempt_change(job_id: str, attempt_id: str, clock: Callable[[], float]) -> Change[float]:
    """Move the job's reservation to the attempt, marked ``rc`` (settled by the reconciler). Result: the USD
    moved, 0.0 when the job held nothing under this key."""

    def change(doc: Doc) -> tuple[float, bool]:
        mine = doc["reserved"].pop(job_id, None)
        if mine is None:
            return 0.0, False
        doc["reserved"][attempt_id] = {"usd": mine["usd"], "at": clock(), "rc": 1}
        return float(mine["usd"]), True

    return change


def raise_spent_change(logged: float) -> Change[float]:
    """Raise ``spent`` to ``logged`` if it knows less (never lowers it). Result: the amount added."""

    def change(doc: Doc) -> tuple[float, bool]:
        gap = logged - float(doc["spent"])
        if gap <= 1e-9:
            return 0.0, False
        doc["spent"] = logged
        return gap, True

    return change


def drop_stale(doc: Doc, limit: float, rc_limit: float) -> list[str]:
    """Remove reservations made before ``limit`` (before ``rc_limit`` for an attempt's); returns their ids."""
    stale = [j for j, r in doc["reserved"].items() if r["at"] < (rc_limit if r.get("rc") else limit)]
    for j in stale:
        del doc["reserved"][j]
    return stale

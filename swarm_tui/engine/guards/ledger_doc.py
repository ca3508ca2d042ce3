"""The budget ledger's document and every change made to it, as pure functions.

Two kinds of key hold a document (engine/guards/ledger.py):

- the daily ledger (``daily``, ``demo-daily`` in demo mode), one key for every day, so that a reservation is
  checked against the spend of the current UTC day and every open reservation, whatever day it was made, in ONE
  compare-and-set::

      {"day": "YYYY-MM-DD" (the newest UTC day a writer has seen), "spent": usd spent on "day",
       "days": {"YYYY-MM-DD": usd spent on that earlier day}, "reserved": {...}, "settled": [...], "at": ...}

- a decision's ledger (``dec-<decision>``): ``{"spent", "reserved", "settled", "at"}``, its whole spend.

``reserved`` is ``{hold or attempt id: {"usd", "at", "by", "n"[, "rc": 1]}}``: ``at`` is the holder's clock when it
reserved or refreshed it, ``by`` the holder process, ``n`` how many times it refreshed it. Those three only say
whether a reservation changed (engine/guards/stale_watch.py); no reader compares ``at`` with its own clock.

A job's hold belongs to the process that made it (``by``): it is stored under the job's id, or under
``<job>@<holder>`` when another process holds the job's id already (JetStream redelivered the job while its
first run still lived: two runs, two holds, each under the ceiling). Only its holder refreshes, moves or releases
it (``hold_of``), so a second run never takes the first run's money for its own and leaves that run calling
with nothing held. A process runs a job once at a time (the pool's ``runs`` by job id).

``BudgetLedger._cas`` applies a change to the newest document under a key and writes it back on the key's
revision, calling the change again on a fresh read when another writer won: so a change must decide from the
document it is given alone (never from what an earlier try saw) and return ``(result, changed)``; ``changed``
False writes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from swarm_tui.engine.guards.estimate import usd
from swarm_tui.engine.guards.protocols import Reservation

log = logging.getLogger(__name__)

SETTLED_KEEP = 1000  # ids remembered per ledger key, so a settle is counted once
KEEP_DAYS = 7  # earlier days kept in the daily ledger's "days" (the event log keeps the history)
EPS = 1e-12

Doc = dict[str, Any]
R = TypeVar("R")
Change = Callable[[Doc], tuple[R, bool]]  # a change returns (its result, whether it changed the doc)
Clock = Callable[[], float]


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def empty_doc(daily: bool = False) -> Doc:
    doc: Doc = {"spent": 0.0, "reserved": {}, "settled": [], "at": 0.0}
    if daily:
        doc.update({"day": "", "days": {}})
    return doc


def _usd(v: Any) -> float:
    f = float(v)
    return f if math.isfinite(f) and f >= 0 else 0.0


def _reservation(v: Any) -> dict[str, Any] | None:
    """One reservation as stored, or None when it is not one (its amount not a finite number >= 0: a NaN held
    would make every ceiling check pass, so it is left out, with a warning, and the rest is kept)."""
    try:
        r: dict[str, Any] = {"usd": float(v["usd"]), "at": float(v["at"])}
        r["by"] = str(v.get("by", ""))[:64]
        r["n"] = int(v.get("n", 0))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None
    if not (math.isfinite(r["usd"]) and r["usd"] >= 0):
        return None
    if v.get("rc"):
        r["rc"] = 1
    return r


def _reservations(raw: Any) -> dict[str, dict[str, Any]]:
    out = {str(k): _reservation(v) for k, v in dict(raw).items()}
    bad = [k for k, r in out.items() if r is None]
    if bad:
        log.warning("%d unreadable reservation(s) in the budget ledger left out", len(bad))
    return {k: r for k, r in out.items() if r is not None}


def parse_doc(raw: bytes | None, daily: bool = False) -> Doc:
    """The document stored under a key; an unreadable one starts over (``reconcile`` restores its spend). A
    daily document without ``day`` (a day key of an earlier version) reads as the spend of an unknown day."""
    try:
        doc = json.loads(raw or b"")
        spent = _usd(doc.get("spent", 0.0))
        reserved = _reservations(doc.get("reserved", {}))
        settled = [str(x) for x in list(doc.get("settled", []))][-SETTLED_KEEP:]
        at = float(doc.get("at", 0.0))
        days = {str(k): _usd(v) for k, v in dict(doc.get("days", {})).items()}
        day = str(doc.get("day", ""))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
        log.warning("a budget ledger entry is unreadable; starting it over from the event log")
        return empty_doc(daily)
    out: Doc = {"spent": spent, "reserved": reserved, "settled": settled, "at": at}
    if daily:
        out.update({"day": day, "days": days})
    return out


# ------------------------------------------------------------------ days (the daily ledger)
def _roll(doc: Doc, day: str) -> None:
    """Make ``day`` the document's day if it is newer: the spend of the day it held moves into ``days``."""
    if "day" not in doc or day <= doc["day"]:
        return
    days: dict[str, float] = doc["days"]
    if doc["day"] and doc["spent"] > 0:
        days[doc["day"]] = days.get(doc["day"], 0.0) + float(doc["spent"])
    doc["day"], doc["spent"] = day, days.pop(day, 0.0)
    for old in sorted(days)[:-KEEP_DAYS]:  # the newest days only: a far-off clock cannot push today's out
        del days[old]


def spent_on(doc: Doc, day: str | None) -> float:
    """What was spent on ``day`` (a daily ledger), or in all (a decision's ledger, ``day`` None)."""
    if day is None or "day" not in doc or day == doc["day"]:
        return float(doc["spent"])
    if day > doc["day"]:
        return 0.0
    return float(doc["days"].get(day, 0.0))


def _add_spent(doc: Doc, day: str | None, cost: float) -> None:
    if day is None or "day" not in doc:
        doc["spent"] = float(doc["spent"]) + cost
        return
    _roll(doc, day)
    if day == doc["day"]:
        doc["spent"] = float(doc["spent"]) + cost
    else:  # a writer whose clock is behind the newest day seen: its own day
        doc["days"][day] = doc["days"].get(day, 0.0) + cost


def _day_of(doc: Doc, clock: Clock) -> str | None:
    return utc_day(clock()) if "day" in doc else None


def day_view(doc: Doc, day: str) -> Doc:
    """The ledger as the panels and ``status`` show it: the spend of ``day`` and every open reservation."""
    return {"spent": spent_on(doc, day), "reserved": doc["reserved"], "settled": doc["settled"], "at": doc["at"]}


def reserved_usd(doc: Doc) -> float:
    # no float(): an empty ledger gives int 0, shown as 0 (not 0.0) in `status --json` as it always was
    return cast(float, sum(r["usd"] for r in doc["reserved"].values()))


def used_usd(doc: Doc, day: str | None = None) -> float:
    """Spent (on ``day`` for a daily ledger) plus every open reservation: what a new one has to fit beside."""
    return spent_on(doc, day) + reserved_usd(doc)


def clean_cost(cost_usd: float) -> float:
    """A reported cost as it is counted: a missing, negative or non-finite one counts as 0."""
    return float(cost_usd) if math.isfinite(cost_usd) and cost_usd > 0 else 0.0


# ------------------------------------------------------------------ holds
def hold_of(doc: Doc, job_id: str, holder: str) -> str | None:
    """The id under which ``holder`` holds the job's reservation, None when it holds none."""
    r = doc["reserved"].get(job_id)
    if r is not None and r.get("by", "") == holder:
        return job_id
    own = f"{job_id}@{holder}"
    return own if own in doc["reserved"] else None


def _new_hold(doc: Doc, job_id: str, holder: str) -> str:
    return job_id if job_id not in doc["reserved"] else f"{job_id}@{holder}"


# ------------------------------------------------------------------ changes
def reserve_change(
    job_id: str, amount: float, ceiling: float, label: str, clock: Clock, *, holder: str = ""
) -> Change[Reservation]:
    """Hold ``amount`` for the job if spent (today's, for the daily ledger) + every open reservation + amount fits
    under ``ceiling``. A job that ``holder`` holds already keeps its reservation and refreshes it (the job runner
    calls this again before each call: a reservation refreshed by its holder is never taken for a dead one); a
    hold of the same job by another process is that run's, never refreshed here: this run needs a hold of its
    own, under the ceiling. A job already settled is refused (it ran: never pay twice)."""

    def change(doc: Doc) -> tuple[Reservation, bool]:
        now = clock()
        hid = hold_of(doc, job_id, holder)
        if hid is not None:
            mine = doc["reserved"][hid]
            mine.update({"at": now, "n": int(mine.get("n", 0)) + 1})
            return Reservation(ok=True, amount_usd=mine["usd"]), True
        if job_id in doc["settled"]:
            return Reservation(ok=False, reason=f"already settled: job {job_id} ran and its spend is recorded"), False
        used = used_usd(doc, _day_of(doc, clock))
        if not (used + amount <= ceiling + EPS):  # written so that a NaN anywhere refuses
            left = max(0.0, ceiling - used) if math.isfinite(ceiling - used) else 0.0
            return Reservation(
                ok=False,
                reason=f"over budget: needs {usd(amount)} (worst case), {usd(left)} left of the {usd(ceiling)} {label}",
            ), False
        doc["reserved"][_new_hold(doc, job_id, holder)] = {"usd": amount, "at": now, "by": holder, "n": 0}
        return Reservation(ok=True, amount_usd=amount), True

    return change


def release_change(job_id: str, *, holder: str | None = "") -> Change[bool]:
    """Drop the reservation ``holder`` holds for the job (nothing was spent); with ``holder`` None, the one under
    the id ``job_id`` itself (an attempt's). The result is always True."""

    def change(doc: Doc) -> tuple[bool, bool]:
        hid = job_id if holder is None else hold_of(doc, job_id, holder)
        return True, hid is not None and doc["reserved"].pop(hid, None) is not None

    return change


def settle_change(
    entry_id: str,
    cost: float,
    reserved_seen: list[float] | None = None,
    *,
    clock: Clock = time.time,
    holder: str | None = None,
) -> Change[bool]:
    """Replace a reservation by ``cost`` in one write, once per ``entry_id``: the result is True when this write
    counted it. ``entry_id`` is a job (its hold by ``holder`` is replaced) or, with ``holder`` None, an attempt
    (whoever settles it: the reconciler that adopted it, too). In the daily ledger the cost counts on the UTC day
    it is settled (when OpenRouter bills it). The first reservation found is appended to ``reserved_seen``."""

    def change(doc: Doc) -> tuple[bool, bool]:
        hid = entry_id if holder is None else hold_of(doc, entry_id, holder)
        mine = doc["reserved"].pop(hid, None) if hid is not None else None
        if mine is not None and reserved_seen is not None and not reserved_seen:
            reserved_seen.append(mine["usd"])
        if entry_id in doc["settled"]:
            return False, mine is not None
        _add_spent(doc, _day_of(doc, clock), cost)
        doc["settled"] = (doc["settled"] + [entry_id])[-SETTLED_KEEP:]
        return True, True

    return change


def begin_attempt_change(job_id: str, attempt_id: str, clock: Clock, *, holder: str = "") -> Change[float | None]:
    """Move the reservation ``holder`` holds for the job to the attempt, marked ``rc`` (settled by the reconciler).
    Result: the USD moved; None when ``holder`` holds nothing for the job under this key (its hold was dropped,
    or never made): then no call may start."""

    def change(doc: Doc) -> tuple[float | None, bool]:
        hid = hold_of(doc, job_id, holder)
        if hid is None:
            return None, False
        mine = doc["reserved"].pop(hid)
        doc["reserved"][attempt_id] = {"usd": mine["usd"], "at": clock(), "by": holder, "n": 0, "rc": 1}
        return float(mine["usd"]), True

    return change


def raise_spent_change(logged: float, clock: Clock = time.time) -> Change[float]:
    """Raise the spend (today's, for the daily ledger) to ``logged`` if it knows less (never lowers it). Result:
    the amount added."""

    def change(doc: Doc) -> tuple[float, bool]:
        day = _day_of(doc, clock)
        gap = logged - spent_on(doc, day)
        if not gap > 1e-9:
            return 0.0, False
        _add_spent(doc, day, gap)
        return gap, True

    return change


def merge_legacy(doc: Doc, day: str, legacy: Doc) -> None:
    """Fold a day key of an earlier version (``day-YYYY-MM-DD``: that day's spend and the reservations and
    settled ids it held) into a new daily ledger."""
    _add_spent(doc, day, float(legacy["spent"]))
    for rid, r in legacy["reserved"].items():
        doc["reserved"].setdefault(rid, r)
    doc["settled"] = (doc["settled"] + [s for s in legacy["settled"] if s not in doc["settled"]])[-SETTLED_KEEP:]


def drop(doc: Doc, ids: list[str]) -> list[str]:
    """Remove these reservations (judged dead by engine/guards/stale_watch.py); returns the ones removed."""
    return [rid for rid in ids if doc["reserved"].pop(rid, None) is not None]

"""The budget ledger in the KV bucket ``swarm_budget``: reservations, settling, release, day rollover.

It is the running authority every process (this engine's pool, ``swarm-tui worker`` processes on other
machines) consults before a call. Key ``day-YYYY-MM-DD`` (UTC; ``demo-day-...`` in demo mode) and, with
``budget.per_decision_usd`` > 0, ``dec-<decision>`` hold the document of engine/guards/ledger_doc.py. Every
change is a compare-and-set on the key's revision, retried on conflict, so no interleaving of workers in any
number of processes can reserve past a ceiling. Settling removes the reservation and adds the real cost in the
same write, once per job. Reservations older than the longest a call can take are dropped on the next write
(a killed worker does not hold budget forever); an attempt's (``rc``, see engine/guards/reconcile.py) are
kept until well after its reconciliation deadline.

This class moves money only: whether a job may be reserved at all (local model, provider out of credit) and
which ceiling applies are the spend guard's decisions (engine/guards/spend.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus, retrying
from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.config import Config
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.guards import ledger_doc as D
from swarm_tui.engine.guards.estimate import usd
from swarm_tui.engine.guards.protocols import Reservation
from swarm_tui.engine.projection import utc_day

log = logging.getLogger(__name__)

R = TypeVar("R")

KEEP_DAYS = 7  # day ledgers older than this are purged (the log keeps the history)
IDLE_DECISION_S = 2 * 86400.0  # a decision ledger with nothing reserved and untouched this long is purged
MAX_CAS = 200
RC_MARGIN_S = 6 * 3600.0  # an attempt's reservation outlives its reconciliation deadline by this much at most


class BudgetLedger:
    """Compare-and-set writes to the ledger keys, with a cache of the newest document seen per key."""

    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        *,
        clock: Callable[[], float],
        prefix: str,
        stale_s: float,
        counts: collections.Counter[str],
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.prefix = prefix  # "demo-" in demo mode: demo spend has its own ledger
        self.stale_s = stale_s
        self.counts = counts  # shared with the spend guard, shown in its info()
        self.session_usd = 0.0  # settled by this process (a standalone worker has no log state)
        self.last_housekeep = 0.0
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._docs: dict[str, D.Doc] = {}  # newest doc seen per key
        self._held: dict[str, tuple[str, ...]] = {}  # job id -> ledger keys holding its reservation

    # ------------------------------------------------------------------ keys and documents
    def day_key(self, ts: float | None = None) -> str:
        return f"{self.prefix}day-{utc_day(self.clock() if ts is None else ts)}"

    def dec_key(self, decision_id: str) -> str:
        return f"{self.prefix}dec-{decision_id}"

    def today(self) -> D.Doc:
        """Today's document as last seen (written, or read by ``refresh``); empty when not seen yet."""
        return self._docs.get(self.day_key()) or D.empty_doc()

    async def refresh(self) -> None:
        """Re-read today's document (other processes write it too)."""
        key = self.day_key()
        doc, _ = await self._fetch(key)
        self._docs[key] = doc

    async def _fetch(self, key: str) -> tuple[D.Doc, int]:
        kv = await self.bus.kv(S.KV_BUDGET)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return D.empty_doc(), 0
        return D.parse_doc(entry.value), entry.revision or 0

    async def _cas(self, key: str, change: D.Change[R]) -> R:
        """Apply ``change(doc) -> (result, changed)`` to the newest doc under ``key`` until the write wins."""
        kv = await self.bus.kv(S.KV_BUDGET)
        async with self._locks[key]:  # in-process writers take turns; other processes are caught by the CAS
            for _ in range(MAX_CAS):
                doc, rev = await self._fetch(key)
                dropped = self._drop_stale(doc)
                result, changed = change(doc)
                if not (changed or dropped):
                    self._docs[key] = doc
                    return result
                doc["at"] = self.clock()
                data = json.dumps(doc).encode()
                try:
                    if rev == 0:
                        await kv.create(key, data)
                    else:
                        await kv.update(key, data, last=rev)
                except KeyWrongLastSequenceError:
                    self.counts["cas_retries"] += 1
                    await asyncio.sleep(0)
                    continue
                self._docs[key] = doc
                return result
        raise SwarmError(f"the budget ledger {key} is too busy to update; try again")

    async def _retrying(self, op: Callable[[], Awaitable[Any]], deadline_s: float = 30.0) -> Any:
        """Run a ledger operation, retrying through a bus outage (settling twice is harmless: once per job)."""
        return await retrying(op, deadline_s, passthrough=(SwarmError,), on_error=self._count_ledger_error)

    def _count_ledger_error(self) -> None:
        self.counts["ledger_errors"] += 1

    def _drop_stale(self, doc: D.Doc) -> bool:
        limit = self.clock() - self.stale_s
        # an attempt's reservation ("rc") is settled by the reconciler (engine/guards/reconcile.py): kept far longer
        rc_limit = limit - self.cfg.openrouter.reconcile_max_s - RC_MARGIN_S
        stale = D.drop_stale(doc, limit, rc_limit)
        for j in stale:
            self._held.pop(j, None)
        if stale:
            self.counts["stale_dropped"] += len(stale)
            log.warning("dropped %d stale reservation(s) (older than %.0f s)", len(stale), self.stale_s)
        return bool(stale)

    # ------------------------------------------------------------------ jobs
    async def reserve(self, job: Job, amount: float, ceiling: float) -> Reservation:
        """Hold ``amount`` for the job under the daily ``ceiling`` and, when set, its decision's ceiling. The
        day's reservation is taken back when the decision's refuses (a refused job holds nothing)."""
        held = self._held.get(job.id)
        day = held[0] if held else self.day_key()
        res = await self._cas(day, D.reserve_change(job.id, amount, ceiling, "daily ceiling", self.clock))
        if not res.ok:
            self.counts["over_budget" if res.reason.startswith("over budget") else "refused"] += 1
            return res
        keys: tuple[str, ...] = (day,)
        per_dec = self.cfg.budget.per_decision_usd
        if per_dec > 0:
            dk = self.dec_key(job.decision_id)
            dres = await self._cas(
                dk,
                D.reserve_change(job.id, res.amount_usd, per_dec, f"ceiling of decision {job.decision_id}", self.clock),
            )
            if not dres.ok:
                await self._cas(day, D.release_change(job.id))
                self.counts["over_budget" if dres.reason.startswith("over budget") else "refused"] += 1
                return dres
            keys = (day, dk)
        self._held[job.id] = keys
        self.counts["reserved"] += 1
        return res

    async def _keys_of(self, job: Job) -> tuple[str, ...]:
        held = self._held.get(job.id)
        if held:
            return held
        # reserved by another process (a redelivered job) or before midnight: find the day that holds it
        today = self.day_key()
        day = today
        for k in (today, self.day_key(self.clock() - 86400)):
            doc, _ = await self._fetch(k)
            if job.id in doc["reserved"] or job.id in doc["settled"]:
                day = k
                break
        per_dec = self.cfg.budget.per_decision_usd
        return (day, self.dec_key(job.decision_id)) if per_dec > 0 else (day,)

    async def keys_of(self, job: Job) -> tuple[str, ...]:
        """The ledger keys that hold (or would hold) the job's reservation, retried through an outage."""
        return tuple(await self._retrying(lambda: self._keys_of(job)))

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        """Replace the job's reservation by its real cost, in one write per ledger key, once per job."""
        cost = D.clean_cost(cost_usd)
        keys = await self._retrying(lambda: self._keys_of(job))
        reserved_seen: list[float] = []
        change = D.settle_change(job.id, cost, reserved_seen)
        counted = False
        for k in keys:
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
        self._held.pop(job.id, None)
        if not counted:
            self.counts["settle_duplicates"] += 1
            return
        self.counts["settled"] += 1
        self.session_usd += cost
        if estimated:
            self.counts["settled_estimated"] += 1
        reserved_amount = reserved_seen[0] if reserved_seen else None
        if reserved_amount is not None and cost > reserved_amount + D.EPS:
            self.counts["over_reservation"] += 1
            log.warning(
                "job %s cost %s, more than its reservation of %s (prompt estimate too low?)",
                job.id,
                usd(cost),
                usd(reserved_amount),
            )

    async def release(self, job: Job) -> None:
        for k in await self._retrying(lambda: self._keys_of(job)):
            await self._retrying(functools.partial(self._cas, k, D.release_change(job.id)))
        self._held.pop(job.id, None)
        self.counts["released"] += 1

    # ------------------------------------------------------------------ attempts (see engine/guards/reconcile.py)
    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float:
        """Move the job's reservation to the attempt under each key; returns the amount held."""
        change = D.begin_attempt_change(job.id, attempt_id, self.clock)
        held = 0.0
        for k in keys:
            held = max(held, float(await self._retrying(functools.partial(self._cas, k, change))))
        self._held.pop(job.id, None)
        return held

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        """Replace an attempt's reservation by what it cost, once per attempt id. True when it was counted."""
        cost = D.clean_cost(cost_usd)
        change = D.settle_change(attempt_id, cost)
        counted = False
        for k in keys:
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
        if counted:
            self.counts["settled_attempts"] += 1
            self.session_usd += cost
            if estimated:
                self.counts["settled_estimated"] += 1
        return counted

    # ------------------------------------------------------------------ upkeep
    async def raise_spent(self, logged: float) -> float:
        """Raise today's ``spent`` to ``logged`` if it knows less. Returns the amount added."""
        added = float(await self._cas(self.day_key(), D.raise_spent_change(logged)))
        if added:
            log.info("budget ledger raised by %s to match the event log", usd(added))
        return added

    async def housekeep(self) -> int:
        """Purge day ledgers older than KEEP_DAYS and idle decision ledgers. Returns how many were purged."""
        kv = await self.bus.kv(S.KV_BUDGET)
        try:
            keys = await kv.keys()
        except Exception as exc:  # noqa: BLE001 - nats raises NoKeysError for an empty bucket
            if isinstance(exc, NoKeysError):  # nothing to purge: not again at every refresh (idle CPU)
                self.last_housekeep = self.clock()
            return 0
        now = self.clock()
        oldest = utc_day(now - KEEP_DAYS * 86400)
        purged = 0
        for k in keys:
            if k.startswith(f"{self.prefix}day-"):
                drop = k[len(f"{self.prefix}day-") :] < oldest
            elif k.startswith(f"{self.prefix}dec-"):
                doc, _ = await self._fetch(k)
                drop = not doc["reserved"] and doc["at"] < now - IDLE_DECISION_S
            else:
                continue
            if drop:
                with contextlib.suppress(Exception):
                    await kv.purge(k)
                    purged += 1
        self.last_housekeep = now
        return purged


async def read_ledger(bus: Bus, cfg: Config, now: float, *, demo: bool = False) -> D.Doc | None:
    """Today's ledger doc (reservations of standalone workers included), or None when it cannot be read."""
    try:
        kv = await bus.kv(S.KV_BUDGET)
        entry = await kv.get(f"{'demo-' if demo else ''}day-{utc_day(now)}")
    except KeyNotFoundError:
        return D.empty_doc()
    except Exception:  # noqa: BLE001 - an old server without the bucket, a timeout: the log alone then
        return None
    return D.parse_doc(entry.value)

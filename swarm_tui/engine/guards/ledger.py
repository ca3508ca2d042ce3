"""The budget ledger in the KV bucket ``swarm_budget``: reservations, settling, release, the day's rollover.

It is the running authority every process (this engine's pool, ``swarm-tui worker`` processes on other
machines) consults before a call. The key ``daily`` (``demo-daily`` in demo mode) holds the spend of each UTC
day and every open reservation and settled id; with ``budget.per_decision_usd`` > 0, ``dec-<decision>`` holds a
decision's. Documents: engine/guards/ledger_doc.py. Every change is a compare-and-set on the key's revision,
retried on conflict, so no interleaving of workers in any number of processes can reserve past a ceiling; and
since one key holds every open reservation with each day's spend, a reservation made at 23:59:50 still counts
against the day that starts ten seconds later, in the same compare-and-set as the new one. Settling removes the
reservation and adds the real cost, on the UTC day it is settled, in the same write, once per id.

A job's reservation belongs to the process that made it (``holder``): a redelivered job running in another
process meanwhile holds its own, under the ceiling, and never takes the first run's (engine/guards/ledger_doc.py).

A reservation whose holder died is dropped once this process has seen it unchanged for the longest a call can
take (engine/guards/stale_watch.py): never by comparing another host's clock with ours. An attempt's (``rc``,
see engine/guards/reconcile.py) is kept until well after its reconciliation deadline.

Day keys of earlier versions (``day-YYYY-MM-DD``) are folded into the daily ledger when it is first written,
and read by ``read_ledger`` while it does not exist. Processes of an earlier version still write day keys:
a cluster mixing versions has two ledgers and is not supported (docs/reliability.md).

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
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus, retrying
from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.config.sections import BudgetSection, OpenRouterSection
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.guards import ledger_doc as D
from swarm_tui.engine.guards.estimate import usd
from swarm_tui.engine.guards.protocols import Reservation
from swarm_tui.engine.guards.stale_watch import StaleWatch

log = logging.getLogger(__name__)

R = TypeVar("R")

IDLE_DECISION_S = 2 * 86400.0  # a decision ledger with nothing reserved and untouched this long is purged
MAX_CAS = 200
RC_MARGIN_S = 6 * 3600.0  # an attempt's reservation outlives its reconciliation deadline by this much at most
DAILY = "daily"


class BudgetLedger:
    """Compare-and-set writes to the ledger keys, with a cache of the newest document seen per key."""

    def __init__(
        self,
        budget: BudgetSection,
        openrouter: OpenRouterSection,
        bus: Bus,
        *,
        clock: Callable[[], float],
        prefix: str,
        stale_s: float,
        counts: collections.Counter[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.openrouter = openrouter
        self.bus = bus
        self.clock = clock
        self.prefix = prefix  # "demo-" in demo mode: demo spend has its own ledger
        self.stale_s = stale_s
        self.counts = counts  # shared with the spend guard, shown in its info()
        self.holder = secrets.token_hex(4)  # this process, as the "by" of its reservations
        self.session_usd = 0.0  # settled by this process (a standalone worker has no log state)
        self.last_housekeep = 0.0
        rc_stale_s = stale_s + openrouter.reconcile_max_s + RC_MARGIN_S
        self.watch = StaleWatch(stale_s, rc_stale_s, monotonic)
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._docs: dict[str, D.Doc] = {}  # newest doc seen per key

    # ------------------------------------------------------------------ keys and documents
    @property
    def daily_key(self) -> str:
        return f"{self.prefix}{DAILY}"

    def legacy_day_key(self, ts: float) -> str:
        return f"{self.prefix}day-{D.utc_day(ts)}"

    def dec_key(self, decision_id: str) -> str:
        return f"{self.prefix}dec-{decision_id}"

    def _key(self, key: str) -> str:
        """A ledger key as stored in an attempt's record: a day key of an earlier version means the daily one."""
        return self.daily_key if key.startswith(f"{self.prefix}day-") else key

    def today(self) -> D.Doc:
        """Today's spend and every open reservation, as last seen (written, or read by ``refresh``)."""
        doc = self._docs.get(self.daily_key) or D.empty_doc(daily=True)
        return D.day_view(doc, D.utc_day(self.clock()))

    async def refresh(self) -> None:
        """Re-read the daily ledger (other processes write it too)."""
        doc, _ = await self._fetch(self.daily_key)
        self._docs[self.daily_key] = doc

    async def _fetch(self, key: str, *, observe: bool = True) -> tuple[D.Doc, int]:
        kv = await self.bus.kv(S.KV_BUDGET)
        daily = key == self.daily_key
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return D.empty_doc(daily), 0
        doc = D.parse_doc(entry.value, daily)
        if observe:  # every read counts as a sighting of the reservations it holds
            self.watch.observe(key, doc["reserved"])
        return doc, entry.revision or 0

    async def _legacy_seed(self) -> D.Doc:
        """A new daily ledger holding what the day keys of an earlier version hold for today and yesterday."""
        doc = D.empty_doc(daily=True)
        kv = await self.bus.kv(S.KV_BUDGET)
        now = self.clock()
        for ts in (now - 86400, now):
            with contextlib.suppress(KeyNotFoundError):
                entry = await kv.get(self.legacy_day_key(ts))
                D.merge_legacy(doc, D.utc_day(ts), D.parse_doc(entry.value))
        return doc

    async def _cas(self, key: str, change: D.Change[R]) -> R:
        """Apply ``change(doc) -> (result, changed)`` to the newest doc under ``key`` until the write wins."""
        kv = await self.bus.kv(S.KV_BUDGET)
        async with self._locks[key]:  # in-process writers take turns; other processes are caught by the CAS
            for _ in range(MAX_CAS):
                doc, rev = await self._fetch(key, observe=False)  # _drop_dead observes it
                if rev == 0 and key == self.daily_key:
                    doc = await self._legacy_seed()
                dropped = self._drop_dead(key, doc)
                result, changed = change(doc)
                if not (changed or dropped or (rev == 0 and doc["reserved"])):
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
        """Run a ledger operation, retrying through a bus outage (settling twice is harmless: once per id)."""
        return await retrying(op, deadline_s, passthrough=(SwarmError,), on_error=self._count_ledger_error)

    def _count_ledger_error(self) -> None:
        self.counts["ledger_errors"] += 1

    def _drop_dead(self, key: str, doc: D.Doc) -> bool:
        """Drop what this process has seen unchanged for its whole limit (engine/guards/stale_watch.py)."""
        dead = D.drop(doc, self.watch.observe(key, doc["reserved"]))
        if dead:
            self.watch.forget(key, dead)
            self.counts["stale_dropped"] += len(dead)
            log.warning(
                "dropped %d reservation(s) seen unchanged for %.0f s (their holder is gone)", len(dead), self.stale_s
            )
        return bool(dead)

    # ------------------------------------------------------------------ jobs
    async def reserve(self, job: Job, amount: float, ceiling: float) -> Reservation:
        """Hold ``amount`` for the job under the daily ``ceiling`` and, when set, its decision's ceiling (a job that
        this process holds already refreshes its hold). The day's reservation is taken back when the decision's
        refuses (a refused job holds nothing)."""
        day = self.daily_key
        res = await self._cas(
            day, D.reserve_change(job.id, amount, ceiling, "daily ceiling", self.clock, holder=self.holder)
        )
        if not res.ok:
            self.counts["over_budget" if res.reason.startswith("over budget") else "refused"] += 1
            return res
        per_dec = self.budget.per_decision_usd
        if per_dec > 0:
            dk = self.dec_key(job.decision_id)
            label = f"ceiling of decision {job.decision_id}"
            dres = await self._cas(
                dk, D.reserve_change(job.id, res.amount_usd, per_dec, label, self.clock, holder=self.holder)
            )
            if not dres.ok:
                await self._cas(day, D.release_change(job.id, holder=self.holder))
                self.counts["over_budget" if dres.reason.startswith("over budget") else "refused"] += 1
                return dres
        self.counts["reserved"] += 1
        return res

    def keys_of(self, job: Job) -> tuple[str, ...]:
        """The ledger keys that hold (or would hold) the job's reservation."""
        per_dec = self.budget.per_decision_usd
        return (self.daily_key, self.dec_key(job.decision_id)) if per_dec > 0 else (self.daily_key,)

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        """Replace the job's reservation by its real cost, in one write per ledger key, once per job."""
        cost = D.clean_cost(cost_usd)
        reserved_seen: list[float] = []
        change = D.settle_change(job.id, cost, reserved_seen, clock=self.clock, holder=self.holder)
        counted = False
        for k in self.keys_of(job):
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
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
        for k in self.keys_of(job):
            await self._retrying(functools.partial(self._cas, k, D.release_change(job.id, holder=self.holder)))
        self.counts["released"] += 1

    # ------------------------------------------------------------------ attempts (see engine/guards/reconcile.py)
    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        """Move this process's hold of the job to the attempt under each key; returns the amount held, or None
        when a key had none (dropped as stale, or never made): what moved under the other keys is released then,
        and the call may not start."""
        change = D.begin_attempt_change(job.id, attempt_id, self.clock, holder=self.holder)
        moved: list[str] = []
        held = 0.0
        for k in dict.fromkeys(self._key(k) for k in keys):
            got = await self._retrying(functools.partial(self._cas, k, change))
            if got is None:
                self.counts["not_held"] += 1
                for m in moved:
                    await self._retrying(functools.partial(self._cas, m, D.release_change(attempt_id, holder=None)))
                return None
            moved.append(k)
            held = max(held, float(got))
        return held

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        """Replace an attempt's reservation by what it cost, once per attempt id. True when it was counted."""
        cost = D.clean_cost(cost_usd)
        change = D.settle_change(attempt_id, cost, clock=self.clock, holder=None)
        counted = False
        for k in dict.fromkeys(self._key(k) for k in keys):
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
        if counted:
            self.counts["settled_attempts"] += 1
            self.session_usd += cost
            if estimated:
                self.counts["settled_estimated"] += 1
        return counted

    # ------------------------------------------------------------------ upkeep
    async def raise_spent(self, logged: float) -> float:
        """Raise today's spend to ``logged`` if it knows less. Returns the amount added."""
        added = float(await self._cas(self.daily_key, D.raise_spent_change(logged, self.clock)))
        if added:
            log.info("budget ledger raised by %s to match the event log", usd(added))
        return added

    async def housekeep(self) -> int:
        """Purge day keys of earlier versions older than ledger_doc.KEEP_DAYS and idle decision ledgers (the
        daily ledger keeps its last KEEP_DAYS days itself). Returns how many keys were purged."""
        kv = await self.bus.kv(S.KV_BUDGET)
        try:
            keys = await kv.keys()
        except Exception as exc:  # noqa: BLE001 - nats raises NoKeysError for an empty bucket
            if isinstance(exc, NoKeysError):  # nothing to purge: not again at every refresh (idle CPU)
                self.last_housekeep = self.clock()
            return 0
        now = self.clock()
        oldest = D.utc_day(now - D.KEEP_DAYS * 86400)
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
                with contextlib.suppress(Exception):  # housekeeping: a key left is purged at the next pass
                    await kv.purge(k)
                    purged += 1
        self.last_housekeep = now
        return purged


async def read_ledger(bus: Bus, cfg: Config, now: float, *, demo: bool = False) -> D.Doc | None:
    """Today's spend and every open reservation (standalone workers' included), or None when it cannot be read.
    A bus where only an earlier version wrote reads its day key."""
    prefix = "demo-" if demo else ""
    try:
        kv = await bus.kv(S.KV_BUDGET)
        try:
            entry = await kv.get(f"{prefix}{DAILY}")
        except KeyNotFoundError:
            entry = await kv.get(f"{prefix}day-{D.utc_day(now)}")
            return D.parse_doc(entry.value)
    except KeyNotFoundError:
        return D.empty_doc()
    except Exception:  # noqa: BLE001 - an old server without the bucket, a timeout: the log alone then
        return None
    return D.day_view(D.parse_doc(entry.value, daily=True), D.utc_day(now))

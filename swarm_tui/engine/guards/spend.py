"""Spend: reservations under hard ceilings, settled by real cost, and provider credit.

Two records, two jobs:

- The **ledger** in the KV bucket ``swarm_budget`` is the running authority that every process (this engine's
  pool, ``swarm-tui worker`` processes on other machines) consults before a call. Key ``day-YYYY-MM-DD``
  (UTC; ``demo-day-...`` in demo mode) and, with ``budget.per_decision_usd`` > 0, ``dec-<decision>`` hold
  ``{"spent": usd, "reserved": {job_id: {"usd", "at"}}, "settled": [job ids]}``. Every change is a
  compare-and-set on the key's revision, retried on conflict, so no interleaving of workers in any number of
  processes can reserve past a ceiling: a job is dispatched only when ``spent + reserved + its worst case``
  fits. Settling removes the reservation and adds the real cost in the same write, once per job.
  Reservations older than the longest a call can take are dropped on the next write (a killed worker does not
  hold budget forever).
- The **totals** shown (today, session, per model, per decision) come from the ``SpendEntry`` events in the
  log (``SwarmState``), so they survive any restart. On start the guard raises the ledger's ``spent`` to the
  log's total for the day if the ledger knows less (a lost or reset bucket never forgets spend).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus, retrying
from swarm_tui.engine.bus.wire import ControlEvent, Job
from swarm_tui.engine.config import Config
from swarm_tui.engine.errors import SwarmError
from swarm_tui.engine.guards.prices import PriceBook, is_local
from swarm_tui.engine.guards.protocols import Reservation
from swarm_tui.engine.projection import SwarmState, utc_day

log = logging.getLogger(__name__)

PROMPT_MARGIN_TOKENS = 32  # plus 4 a message: chat template overhead
SETTLED_KEEP = 1000  # job ids remembered per ledger key, so a settle is counted once
KEEP_DAYS = 7  # day ledgers older than this are purged (the log keeps the history)
IDLE_DECISION_S = 2 * 86400.0  # a decision ledger with nothing reserved and untouched this long is purged
HOUSEKEEP_S = 3600.0
REFRESH_S = 2.0
STALE_MARGIN_S = 60.0
MAX_CAS = 200
EPS = 1e-12
RC_MARGIN_S = 6 * 3600.0  # an attempt's reservation outlives its reconciliation deadline by this much at most
CEILING_KEY = "ceiling"  # in swarm_state: {"usd", "at"}, the live override of budget.daily_usd


def prompt_tokens_estimate(chars: int, messages: int = 1) -> int:
    """A generous estimate: 3 characters a token (English is ~4), plus template overhead."""
    return math.ceil(max(0, chars) / 3) + PROMPT_MARGIN_TOKENS + 4 * max(1, messages)


def usd(v: float) -> str:
    return f"${v:.4f}" if abs(v) < 10 else f"${v:.2f}"


def _empty() -> dict[str, Any]:
    return {"spent": 0.0, "reserved": {}, "settled": [], "at": 0.0}


def _parse(raw: bytes | None) -> dict[str, Any]:
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
        return _empty()
    return {
        "spent": spent if math.isfinite(spent) and spent >= 0 else 0.0,
        "reserved": reserved,
        "settled": settled,
        "at": at,
    }


def _used(doc: dict[str, Any]) -> float:
    return float(doc["spent"]) + sum(r["usd"] for r in doc["reserved"].values())


class SpendGuard:
    name = "spend"

    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        state: SwarmState | None,
        prices: PriceBook,
        *,
        clock: Callable[[], float] = time.time,
        demo: bool | None = None,
        credit_cooldown_s: float | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.state = state
        self.prices = prices
        self.clock = clock
        self.demo = prices.demo if demo is None else demo
        self.prefix = "demo-" if self.demo else ""
        self.refresh_s = refresh_s
        self.stale_s = cfg["swarm.request_timeout_s"] * (cfg["swarm.max_retries"] + 1) + STALE_MARGIN_S
        self.credit_cooldown_s = 5 * cfg["openrouter.key_poll_s"] if credit_cooldown_s is None else credit_cooldown_s
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._docs: dict[str, dict[str, Any]] = {}  # newest doc seen per key
        self._held: dict[str, tuple[str, ...]] = {}  # job id -> ledger keys holding its reservation
        self._kv_ceiling: tuple[float, float] | None = None  # (usd, at) from swarm_state
        self._ev_ceiling: tuple[float, float] | None = None  # (usd, at) from the newest ControlEvent
        self._session_usd = 0.0  # settled by this process (a standalone worker has no log state)
        self.counts: collections.Counter[str] = collections.Counter()
        # provider credit
        self.credits_left: float | None = None
        self.key_status = "no key" if not cfg["openrouter.api_key"] else "not checked yet"
        self._key_blocked = ""
        self._credit_reason = ""
        self._credit_at = 0.0
        self._last_poll = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciling: tuple[int, float] = (0, 0.0)  # attempts awaiting their cost, USD they hold (reconcile.py)
        self._last_housekeep = 0.0
        self._http: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ estimates
    def estimate(self, model: str, prompt_chars: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        """(likely, worst case) USD of one call."""
        p, c = self.prices.price(model)
        worst = prompt_tokens_estimate(prompt_chars, messages) * p + max_tokens * c
        likely = math.ceil(max(0, prompt_chars) / 4) * p + (max_tokens / 2) * c
        return likely, worst

    def worst_case(self, job: Job) -> float:
        chars = sum(len(m.content) for m in job.messages)
        return self.estimate(job.model, chars, job.max_tokens, len(job.messages))[1]

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.prices.cost(model, prompt_tokens, completion_tokens)

    # ------------------------------------------------------------------ ceilings
    def ceiling(self) -> float:
        """The daily ceiling: the newest live override (KV or control event), else the configuration."""
        newest = max(
            (c for c in (self._kv_ceiling, self._ev_ceiling) if c is not None), key=lambda c: c[1], default=None
        )
        if newest is not None:
            return newest[0]
        if self.state is not None and self.state.ceiling_usd is not None:
            return float(self.state.ceiling_usd)
        return float(self.cfg["budget.daily_usd"])

    async def read_ceiling(self) -> float:
        try:
            kv = await self.bus.kv(S.KV_STATE)
            entry = await kv.get(CEILING_KEY)
            doc = json.loads(entry.value or b"")
            v, at = float(doc["usd"]), float(doc.get("at", 0.0))
            if math.isfinite(v) and v >= 0:
                self._kv_ceiling = (v, at)
        except KeyNotFoundError:
            self._kv_ceiling = None
        except (ValueError, TypeError, KeyError):
            log.warning("the live ceiling in %s is unreadable; ignoring it", S.KV_STATE)
            self._kv_ceiling = None
        except Exception as exc:  # noqa: BLE001 - bus trouble: keep the last value seen
            log.debug("ceiling not read: %s", type(exc).__name__)
        return self.ceiling()

    def on_event(self, ev: Any) -> None:
        if isinstance(ev, ControlEvent) and ev.what == "ceiling" and ev.value is not None:
            if self._ev_ceiling is None or ev.at >= self._ev_ceiling[1]:
                self._ev_ceiling = (float(ev.value), ev.at)

    # ------------------------------------------------------------------ the ledger
    def day_key(self, ts: float | None = None) -> str:
        return f"{self.prefix}day-{utc_day(self.clock() if ts is None else ts)}"

    def dec_key(self, decision_id: str) -> str:
        return f"{self.prefix}dec-{decision_id}"

    async def _fetch(self, key: str) -> tuple[dict[str, Any], int]:
        kv = await self.bus.kv(S.KV_BUDGET)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return _empty(), 0
        return _parse(entry.value), entry.revision or 0

    async def _cas(self, key: str, change: Callable[[dict[str, Any]], tuple[Any, bool]]) -> Any:
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

    def _drop_stale(self, doc: dict[str, Any]) -> bool:
        limit = self.clock() - self.stale_s
        # an attempt's reservation ("rc") is settled by the reconciler (engine/guards/reconcile.py): kept far longer
        rc_limit = limit - float(self.cfg["openrouter.reconcile_max_s"]) - RC_MARGIN_S
        stale = [j for j, r in doc["reserved"].items() if r["at"] < (rc_limit if r.get("rc") else limit)]
        for j in stale:
            del doc["reserved"][j]
            self._held.pop(j, None)
        if stale:
            self.counts["stale_dropped"] += len(stale)
            log.warning("dropped %d stale reservation(s) (older than %.0f s)", len(stale), self.stale_s)
        return bool(stale)

    async def reserve(self, job: Job) -> Reservation:
        if is_local(job.model) and not self.demo:  # local inference costs no money
            return Reservation(ok=True, amount_usd=0.0)
        blocked = self.cloud_blocked()
        if blocked and not is_local(job.model):
            return Reservation(ok=False, reason=blocked)
        try:
            return await self._reserve(job)
        except Exception as exc:  # noqa: BLE001 - the bus is away: the job waits, nothing is dispatched
            log.debug("reservation of %s failed: %s", job.id, type(exc).__name__)
            self.counts["ledger_errors"] += 1
            return Reservation(
                ok=False, reason=f"over budget: the budget ledger cannot be reached ({type(exc).__name__}); waiting"
            )

    async def _reserve(self, job: Job) -> Reservation:
        amount = self.worst_case(job)
        ceiling = await self.read_ceiling()
        held = self._held.get(job.id)
        day = held[0] if held else self.day_key()
        res = await self._cas(day, self._reserve_change(job.id, amount, ceiling, "daily ceiling"))
        if not res.ok:
            self.counts["over_budget" if res.reason.startswith("over budget") else "refused"] += 1
            return res
        keys: tuple[str, ...] = (day,)
        per_dec = float(self.cfg["budget.per_decision_usd"])
        if per_dec > 0:
            dk = self.dec_key(job.decision_id)
            dres = await self._cas(
                dk, self._reserve_change(job.id, res.amount_usd, per_dec, f"ceiling of decision {job.decision_id}")
            )
            if not dres.ok:
                await self._cas(day, self._release_change(job.id))
                self.counts["over_budget" if dres.reason.startswith("over budget") else "refused"] += 1
                return dres
            keys = (day, dk)
        self._held[job.id] = keys
        self.counts["reserved"] += 1
        return res

    def _reserve_change(
        self, job_id: str, amount: float, ceiling: float, label: str
    ) -> Callable[..., tuple[Any, bool]]:
        def change(doc: dict[str, Any]) -> tuple[Reservation, bool]:
            now = self.clock()
            mine = doc["reserved"].get(job_id)
            if mine is not None:  # a redelivered job keeps its reservation (its clock restarts)
                mine["at"] = now
                return Reservation(ok=True, amount_usd=mine["usd"]), True
            if job_id in doc["settled"]:
                return Reservation(
                    ok=False, reason=f"already settled: job {job_id} ran and its spend is recorded"
                ), False
            used = _used(doc)
            if used + amount > ceiling + EPS:
                left = max(0.0, ceiling - used)
                return Reservation(
                    ok=False,
                    reason=f"over budget: needs {usd(amount)} (worst case), "
                    f"{usd(left)} left of the {usd(ceiling)} {label}",
                ), False
            doc["reserved"][job_id] = {"usd": amount, "at": now}
            return Reservation(ok=True, amount_usd=amount), True

        return change

    @staticmethod
    def _release_change(job_id: str) -> Callable[..., tuple[Any, bool]]:
        def change(doc: dict[str, Any]) -> tuple[bool, bool]:
            return True, doc["reserved"].pop(job_id, None) is not None

        return change

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
        per_dec = float(self.cfg["budget.per_decision_usd"])
        return (day, self.dec_key(job.decision_id)) if per_dec > 0 else (day,)

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        """Replace the job's reservation by its real cost, in one write per ledger key, once per job."""
        cost = float(cost_usd) if math.isfinite(cost_usd) and cost_usd > 0 else 0.0
        if is_local(job.model) and not self.demo and cost == 0:
            return  # nothing was reserved, nothing was spent
        keys = await self._retrying(lambda: self._keys_of(job))
        reserved_amount: float | None = None

        def change(doc: dict[str, Any]) -> tuple[bool, bool]:
            nonlocal reserved_amount
            mine = doc["reserved"].pop(job.id, None)
            if mine is not None and reserved_amount is None:
                reserved_amount = mine["usd"]
            if job.id in doc["settled"]:
                return False, mine is not None
            doc["spent"] = float(doc["spent"]) + cost
            doc["settled"] = (doc["settled"] + [job.id])[-SETTLED_KEEP:]
            return True, True

        counted = False
        for k in keys:
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
        self._held.pop(job.id, None)
        if not counted:
            self.counts["settle_duplicates"] += 1
            return
        self.counts["settled"] += 1
        self._session_usd += cost
        if estimated:
            self.counts["settled_estimated"] += 1
        if reserved_amount is not None and cost > reserved_amount + EPS:
            self.counts["over_reservation"] += 1
            log.warning(
                "job %s cost %s, more than its reservation of %s (prompt estimate too low?)",
                job.id,
                usd(cost),
                usd(reserved_amount),
            )

    async def release(self, job: Job) -> None:
        if is_local(job.model) and not self.demo:
            return
        for k in await self._retrying(lambda: self._keys_of(job)):
            await self._retrying(functools.partial(self._cas, k, self._release_change(job.id)))
        self._held.pop(job.id, None)
        self.counts["released"] += 1

    # ------------------------------------------------------------------ attempts (see engine/guards/reconcile.py)
    async def ledger_keys(self, job: Job) -> tuple[str, ...]:
        """The ledger keys that hold (or would hold) the job's reservation."""
        if is_local(job.model) and not self.demo:
            return ()
        return tuple(await self._retrying(lambda: self._keys_of(job)))

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float:
        """The job's reservation becomes the attempt's (``reserved[attempt_id]``, marked ``rc``) before its call:
        when the attempt ends without a cost, or its process dies, the money stays held until the attempt is
        reconciled, and a retry or a redelivery of the job has to reserve anew. Returns the amount held."""

        def change(doc: dict[str, Any]) -> tuple[float, bool]:
            mine = doc["reserved"].pop(job.id, None)
            if mine is None:
                return 0.0, False
            doc["reserved"][attempt_id] = {"usd": mine["usd"], "at": self.clock(), "rc": 1}
            return float(mine["usd"]), True

        held = 0.0
        for k in keys:
            held = max(held, float(await self._retrying(functools.partial(self._cas, k, change))))
        self._held.pop(job.id, None)
        return held

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        """Replace an attempt's reservation by what it cost, once per attempt id. True when it was counted."""
        cost = float(cost_usd) if math.isfinite(cost_usd) and cost_usd > 0 else 0.0

        def change(doc: dict[str, Any]) -> tuple[bool, bool]:
            mine = doc["reserved"].pop(attempt_id, None)
            if attempt_id in doc["settled"]:
                return False, mine is not None
            doc["spent"] = float(doc["spent"]) + cost
            doc["settled"] = (doc["settled"] + [attempt_id])[-SETTLED_KEEP:]
            return True, True

        counted = False
        for k in keys:
            counted = bool(await self._retrying(functools.partial(self._cas, k, change))) or counted
        if counted:
            self.counts["settled_attempts"] += 1
            self._session_usd += cost
            if estimated:
                self.counts["settled_estimated"] += 1
        return counted

    async def reconcile(self) -> float:
        """Raise today's ledger to the log's spend for today if it knows less. Returns the amount added."""
        if self.state is None:
            return 0.0
        today = utc_day(self.clock())
        logged = sum(
            s.cost_usd for s in self.state.spend_entries.values() if s.demo == self.demo and utc_day(s.at) == today
        )

        def change(doc: dict[str, Any]) -> tuple[float, bool]:
            gap = logged - float(doc["spent"])
            if gap <= 1e-9:
                return 0.0, False
            doc["spent"] = logged
            return gap, True

        added = float(await self._cas(self.day_key(), change))
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
                self._last_housekeep = self.clock()
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
        self._last_housekeep = now
        return purged

    async def refresh(self) -> None:
        """Re-read today's ledger and the live ceiling (remaining_usd() reads what was seen last)."""
        key = self.day_key()
        doc, _ = await self._fetch(key)
        self._docs[key] = doc
        await self.read_ceiling()

    def ledger(self) -> dict[str, Any]:
        return self._docs.get(self.day_key()) or _empty()

    def reserved_usd(self) -> float:
        return sum(r["usd"] for r in self.ledger()["reserved"].values())

    def remaining_usd(self) -> float:
        return max(0.0, self.ceiling() - _used(self.ledger()))

    # ------------------------------------------------------------------ provider credit
    def cloud_blocked(self) -> str:
        if self._key_blocked:
            return self._key_blocked
        if self._credit_reason and self.clock() - self._credit_at >= self.credit_cooldown_s:
            self._credit_reason = ""
        return self._credit_reason

    def credit_ok(self, since: float) -> None:
        """A call sent at ``since``, after the account ran out of credit, went through: dispatch resumes."""
        if self._credit_reason and since >= self._credit_at:
            log.info("a call went through again: cloud dispatch resumes")
            self._credit_reason = ""

    def mark_out_of_credit(self, reason: str) -> None:
        r = (reason or "the provider refused for lack of credit").strip()[:200]
        self._credit_reason = r if r.startswith("out of credit") else f"out of credit: {r}"
        self._credit_at = self.clock()
        self.counts["out_of_credit"] += 1
        log.warning("cloud dispatch stopped: %s", self._credit_reason)

    async def poll_key(self) -> None:
        """GET {api_base}/key once; reads data.limit_remaining (null: the key has no limit)."""
        key = self.cfg["openrouter.api_key"]
        if not key:
            return
        url = self.cfg["openrouter.api_base"].rstrip("/") + "/key"
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        polled_at = self.clock()
        try:
            async with self._http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.key_status = f"unreachable ({type(exc).__name__})"
            return
        self._last_poll = polled_at
        if status != 200:
            self.key_status = {401: "rejected (HTTP 401)", 403: "rejected (HTTP 403)", 404: "no key endpoint"}.get(
                status, f"HTTP {status}"
            )
            if status == 402:
                self.mark_out_of_credit("out of credit: the key endpoint answered 402")
            return
        data = body.get("data", body) if isinstance(body, dict) else None
        if not isinstance(data, dict):
            self.key_status = "unreadable answer"
            return
        lr = data.get("limit_remaining")
        self.key_status = "ok"
        if isinstance(lr, int | float) and not isinstance(lr, bool) and math.isfinite(lr):
            self.credits_left = float(lr)
            # limit_remaining is the key's own limit, not the account's credit ("key limit left")
            self._key_blocked = "key limit reached: the key's limit_remaining is 0" if lr <= 0 else ""
            if lr > 0 and self._credit_reason and polled_at > self._credit_at:
                # try again: a 402 for an empty account stops it again (a call that goes through clears it too)
                log.info("the key's limit allows (%s left): cloud dispatch resumes", usd(float(lr)))
                self._credit_reason = ""
        else:
            self.credits_left = None
            self._key_blocked = ""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if not self.prices.prices:
            await self.prices.load_cache()
        try:
            await self.reconcile()
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - the loop below retries
            log.warning("budget ledger not read at start: %s", type(exc).__name__)
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="spend-refresh"))
        if self.prices.fetch_enabled:
            self._tasks.append(asyncio.create_task(self._price_loop(), name="spend-prices"))
        if self.cfg["openrouter.api_key"] and not self.demo:
            self._tasks.append(asyncio.create_task(self._key_loop(), name="spend-key"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
                if self.clock() - self._last_housekeep > HOUSEKEEP_S:
                    await self.housekeep()
            except Exception as exc:  # noqa: BLE001 - a bus outage: try again next time
                log.debug("ledger refresh failed: %s", type(exc).__name__)

    async def _price_loop(self) -> None:
        while True:
            if self.prices.stale():
                await self.prices.refresh()
            await asyncio.sleep(600 if self.prices.prices else 120)

    async def _key_loop(self) -> None:
        while True:
            await self.poll_key()
            await asyncio.sleep(self.cfg["openrouter.key_poll_s"])

    def info(self) -> dict[str, Any]:
        led = self.ledger()
        reserved = sum(r["usd"] for r in led["reserved"].values())
        ceiling = self.ceiling()
        out: dict[str, Any] = {
            "ceiling_usd": ceiling,
            "reserved_usd": round(reserved, 6),
            "reservations": len(led["reserved"]),
            "ledger_spent_usd": round(led["spent"], 6),
            "remaining_usd": round(max(0.0, ceiling - led["spent"] - reserved), 6),
            "per_decision_usd": self.cfg["budget.per_decision_usd"] or None,
        }
        if self.state is not None:
            out.update(_log_totals(self.state, self.clock()))
        else:
            out.update(
                {
                    "today_usd": round(led["spent"], 6),
                    "session_usd": round(self._session_usd, 6),
                    "estimated_usd": None,
                    "by_model": {},
                    "by_decision": {},
                }
            )
        out.update(self.prices.info())
        blocked = self.cloud_blocked()
        n, held = self.reconciling
        out.update({"reconciling": n, "reconciling_usd": round(held, 6)})
        out.update(
            {
                "credits_left_usd": self.credits_left,
                "key_limit_left_usd": self.credits_left,
                "key_status": self.key_status,
                "out_of_credit": bool(blocked),
                "blocked_reason": blocked,
                "demo": self.demo,
                "counts": dict(self.counts),
            }
        )
        return out


def _log_totals(state: SwarmState, now: float) -> dict[str, Any]:
    return {
        "today_usd": round(state.today_spend(now), 6),
        "session_usd": round(state.spend.session, 6),
        "estimated_usd": round(state.spend.estimated, 6),
        "by_model": {k: round(v, 6) for k, v in sorted(state.spend.by_model.items())},
        "by_decision": {k: round(v, 6) for k, v in sorted(state.spend.by_decision.items())},
    }


async def read_ledger(bus: Bus, cfg: Config, now: float, *, demo: bool = False) -> dict[str, Any] | None:
    """Today's ledger doc (reservations of standalone workers included), or None when it cannot be read."""
    try:
        kv = await bus.kv(S.KV_BUDGET)
        entry = await kv.get(f"{'demo-' if demo else ''}day-{utc_day(now)}")
    except KeyNotFoundError:
        return _empty()
    except Exception:  # noqa: BLE001 - an old server without the bucket, a timeout: the log alone then
        return None
    return _parse(entry.value)


def offline_spend_summary(cfg: Config, state: SwarmState, ledger: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spend as the log tells it, with the ledger's reservations when given (no engine running)."""
    ceiling = state.ceiling_usd if state.ceiling_usd is not None else cfg["budget.daily_usd"]
    led = ledger or _empty()
    reserved = sum(r["usd"] for r in led["reserved"].values())
    out: dict[str, Any] = {
        "ceiling_usd": ceiling,
        "reserved_usd": round(reserved, 6),
        "reservations": len(led["reserved"]),
    }
    out.update(_log_totals(state, state.clock()))
    used = max(out["today_usd"], float(led["spent"])) + reserved
    out["remaining_usd"] = round(max(0.0, ceiling - used), 6)
    if ledger is not None:
        out["ledger_spent_usd"] = round(float(led["spent"]), 6)
    out.update(
        {
            "price_source": "unknown (no engine running)",
            "price_age_s": None,
            "credits_left_usd": None,
            "out_of_credit": False,
            "blocked_reason": "",
        }
    )
    return out

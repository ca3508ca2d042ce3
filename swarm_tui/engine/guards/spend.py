"""Spend: reservations under hard ceilings, settled by real cost, and provider credit.

``SpendGuard`` is what the pool, the conductor, the job runner and the reconciler talk to (``SpendGuardP`` in
engine/guards/protocols.py). It decides whether a job may be reserved at all and under which ceiling, and
hands the rest to one part per job:

- engine/guards/estimate.py: the worst case of a call, from the price list (the amount reserved);
- engine/guards/ledger.py: the compare-and-set ledger in the KV bucket ``swarm_budget`` that every process
  consults before a call, so no interleaving of workers in any number of processes reserves past a ceiling
  (one key holds each UTC day's spend and every open reservation: midnight frees nothing still held);
- engine/guards/credit.py: the key poller and the out-of-credit state (no cloud call at all while it holds);
- engine/guards/spend_status.py: the totals shown, from the ``SpendEntry`` events in the log (``SwarmState``),
  so they survive any restart. On start the guard raises the ledger's ``spent`` to the log's total for the day
  if the ledger knows less (a lost or reset bucket never forgets spend).

The daily ceiling is the newest live override (``swarm-tui budget``: written to ``swarm_state`` and announced by
a ``ControlEvent``), else the one the event log last recorded, else the configuration's ``budget.daily_usd``,
which the engine publishes in ``swarm_state`` when it starts (engine/guards/ceiling_kv.py). A process without
the log (a standalone worker, ``state`` None) spends only under the override or that published value, never
under its own configuration's; while the bus holds neither, its jobs wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.bus.wire import ControlEvent, Job
from swarm_tui.engine.config.load import Config, Role
from swarm_tui.engine.config.sections import BudgetSection, OpenRouterSection, SwarmSection
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.ceiling_kv import NO_CEILING, OVERRIDE_KEY, parse_ceiling, publish_base, read_base
from swarm_tui.engine.guards.credit import CreditWatch
from swarm_tui.engine.guards.estimate import CostEstimator
from swarm_tui.engine.guards.ledger import BudgetLedger, read_ledger
from swarm_tui.engine.guards.ledger_doc import Doc, clean_cost, reserved_usd, used_usd
from swarm_tui.engine.guards.protocols import PriceSourceP, Reservation
from swarm_tui.engine.guards.spend_status import log_totals, offline_spend_summary
from swarm_tui.engine.info import SpendInfo, SpendTotals
from swarm_tui.engine.lifecycle import cancel_and_wait, within
from swarm_tui.engine.models import is_local
from swarm_tui.engine.projection.state import SwarmState, utc_day

__all__ = ["SpendGuard", "offline_spend_summary", "read_ledger"]  # the last two: for `status` with no engine

log = logging.getLogger(__name__)

HOUSEKEEP_S = 3600.0
REFRESH_S = 2.0
# At rest (three refreshes in a row found the same ledger with nothing reserved) the ledger is re-read every
# IDLE_REFRESH_S, or at once when an event arrives: whatever moves the ledger in any process (a reservation, a
# settled cost, a new ceiling) comes with events in the log (jobs, worker events, spend entries, control events).
IDLE_REFRESH_S = 60.0
STALE_MARGIN_S = 60.0
CEILING_KEY = OVERRIDE_KEY  # in swarm_state: {"usd", "at"}, the live override of budget.daily_usd


@dataclass(frozen=True)
class SpendSettings:
    """The sections the spend guard reads: the ceilings, the key and its poll, the call timeouts (how long a
    reservation may live), and the roles (their fallback models)."""

    budget: BudgetSection
    openrouter: OpenRouterSection
    swarm: SwarmSection
    roles: Mapping[str, Role]

    @classmethod
    def of(cls, cfg: Config) -> SpendSettings:
        return cls(cfg.budget, cfg.openrouter, cfg.swarm, cfg.roles)


class SpendGuard:
    """The engine component (``name`` "spend"): the ceilings and the policy, over the estimator, the ledger and
    the credit watch. One per process; a standalone worker runs one without a log (``state`` None)."""

    name = "spend"

    def __init__(
        self,
        settings: SpendSettings,
        bus: Bus,
        state: SwarmState | None,
        prices: PriceSourceP,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        credit_cooldown_s: float | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.state = state
        self.prices = prices
        self.clock = clock
        self.demo = prices.demo
        self.prefix = "demo-" if self.demo else ""
        self.refresh_s = refresh_s
        # a reservation older than the longest a call can take (all its retries) belongs to a dead worker
        stale_s = settings.swarm.request_timeout_s * (settings.swarm.max_retries + 1) + STALE_MARGIN_S
        self.counts: collections.Counter[str] = collections.Counter()  # shared by the parts below
        self._costs = CostEstimator(prices)
        self._ledger = BudgetLedger(
            settings.budget,
            settings.openrouter,
            bus,
            clock=clock,
            monotonic=monotonic,
            prefix=self.prefix,
            stale_s=stale_s,
            counts=self.counts,
        )
        self._credit = CreditWatch(
            settings.openrouter, clock=clock, monotonic=monotonic, cooldown_s=credit_cooldown_s, counts=self.counts
        )
        self._kv_ceiling: tuple[float, float] | None = None  # (usd, at) from swarm_state
        self._ev_ceiling: tuple[float, float] | None = None  # (usd, at) from the newest ControlEvent
        self._kv_seen: dict[int, float] = {}  # KV revision of the ceiling -> when this process first read it
        self._base: float | None = None  # the engine's configured ceiling, from swarm_state (no log here)
        self._base_published = False  # this engine's own, once written
        self._tasks: list[asyncio.Task[None]] = []
        self._moved = asyncio.Event()  # an event arrived: a ledger at rest is re-read at once
        self.reconciling: tuple[int, float] = (0, 0.0)  # attempts awaiting their cost, USD they hold (reconcile.py)

    @property
    def stale_s(self) -> float:
        """A reservation this process has seen unchanged this long (an attempt's: far longer) is dropped on the
        ledger's next write (engine/guards/stale_watch.py)."""
        return self._ledger.stale_s

    @property
    def credit_cooldown_s(self) -> float:
        """How long a 402 stops cloud dispatch when no poll or call shows credit again."""
        return self._credit.cooldown_s

    def _free(self, job: Job) -> bool:
        """A call its price source says costs no money: nothing to reserve or settle."""
        return self.prices.free(job.model)

    # ------------------------------------------------------------------ estimates (engine/guards/estimate.py)
    def estimate(self, model: str, prompt_bytes: int, max_tokens: int, messages: int = 1) -> tuple[float, float]:
        """(likely, worst case) USD of one call with ``prompt_bytes`` UTF-8 bytes of messages (worst: a bound)."""
        return self._costs.estimate(model, prompt_bytes, max_tokens, messages)

    def _fallbacks(self, job: Job) -> tuple[str, ...]:
        """The role's fallback models: OpenRouter may bill the call at any of them."""
        role = self.settings.roles.get(job.role)
        return role.fallback_models if role is not None and job.model.startswith("openrouter/") else ()

    def worst_case(self, job: Job) -> float:
        """The most the job's call can be billed (infinite when a price part of its model cannot be read)."""
        return self._costs.worst_case(job, self._fallbacks(job))

    def refusal(self, job: Job) -> Refusal | None:
        """Why the job cannot be reserved under any ceiling (None when it can): its cost has no bound."""
        return None if self._free(job) else self._costs.refusal((job.model, *self._fallbacks(job)))

    def unpriced(self, model: str) -> Refusal | None:
        """The same for a model (the conductor leaves such roles out of a plan)."""
        return self._costs.refusal((model,))

    def cost_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self._costs.cost_of(model, prompt_tokens, completion_tokens)

    # ------------------------------------------------------------------ ceilings
    def _override(self) -> tuple[float, float] | None:
        return max((c for c in (self._kv_ceiling, self._ev_ceiling) if c is not None), key=lambda c: c[1], default=None)

    def ceiling(self) -> float:
        """The daily ceiling: the newest live override (KV or control event), else the log's, else the
        configuration; without a log, the engine's from the bus. A process without the log that has read none
        yet shows its configuration's, and spends nothing: ``reserve`` refuses until ``ceiling_known``."""
        newest = self._override()
        if newest is not None:
            return newest[0]
        if self.state is None and self._base is not None:
            return self._base
        if self.state is not None and self.state.ceiling_usd is not None:
            return float(self.state.ceiling_usd)
        return self.settings.budget.daily_usd

    def ceiling_known(self) -> bool:
        """False for a process without the log that has read no ceiling from the bus yet."""
        return self.state is not None or self._base is not None or self._override() is not None

    async def read_ceiling(self) -> float:
        try:
            kv = await self.bus.kv(S.KV_STATE)
            entry = await kv.get(CEILING_KEY)
            v, at = parse_ceiling(entry.value)
            # the writer's word for when it was set, but never later than when this process first saw it:
            # a date in the future must not outrank the ceilings set after it
            first = self._kv_seen.get(entry.revision or 0)
            if first is None:
                first = self._kv_seen[entry.revision or 0] = self.clock()
                while len(self._kv_seen) > 8:
                    del self._kv_seen[min(self._kv_seen)]
            self._kv_ceiling = (v, min(at, first))
        except KeyNotFoundError:
            self._kv_ceiling = None
        except ValueError as exc:  # unreadable, or out of the budget verb's range
            log.warning("the live ceiling in %s is %s; ignoring it", S.KV_STATE, exc)
            self._kv_ceiling = None
        except Exception as exc:  # noqa: BLE001 - bus trouble: keep the last value seen
            log.debug("ceiling not read: %s", type(exc).__name__)
        if self.state is None:
            try:
                self._base = await read_base(self.bus, demo=self.demo)
            except Exception as exc:  # noqa: BLE001 - bus trouble: keep the last value seen
                log.debug("the engine's ceiling not read: %s", type(exc).__name__)
        return self.ceiling()

    async def _publish_base(self) -> None:
        """The engine's configured ceiling, for the processes that spend without its log (once it is written)."""
        if self.state is None or self._base_published:
            return
        try:
            await publish_base(self.bus, self.settings.budget.daily_usd, self.clock(), demo=self.demo)
            self._base_published = True
        except Exception as exc:  # noqa: BLE001 - the refresh loop tries again
            log.debug("ceiling not published: %s", type(exc).__name__)

    def on_event(self, ev: Any) -> None:
        """A ceiling event replaces the one before it in log order (the reader of the log has refused any dated
        past when it was stored); its time, capped at now, only ranks it against the KV's."""
        self._moved.set()
        if isinstance(ev, ControlEvent) and ev.what == "ceiling" and ev.value is not None:
            v = float(ev.value)
            if math.isfinite(v) and 0 <= v < CEILING_LIMIT_USD:
                self._ev_ceiling = (v, min(ev.at, self.clock()))

    # ------------------------------------------------------------------ the ledger
    def day_key(self) -> str:
        """The key of the daily ledger: one key holds every day."""
        return self._ledger.daily_key

    def dec_key(self, decision_id: str) -> str:
        return self._ledger.dec_key(decision_id)

    async def reserve(self, job: Job) -> Reservation:
        """Reserve the job's worst case under the ceilings; a job that holds a reservation refreshes it (call it
        again before each call: a reservation nobody refreshes is taken for a dead holder's)."""
        if self._free(job):
            return Reservation(ok=True, amount_usd=0.0)
        blocked = self.cloud_blocked()
        if blocked and not is_local(job.model):
            return Reservation(ok=False, reason=blocked)
        if why := self.refusal(job):
            return Reservation(ok=False, reason=f"over budget: {why}")
        try:
            # the worst case is priced first, then the newest ceiling is read: it may have been raised just now
            amount = self.worst_case(job)
            ceiling = await self.read_ceiling()
            if not self.ceiling_known():
                self.counts["no_ceiling"] += 1
                return Reservation(ok=False, reason=NO_CEILING)
            return await self._ledger.reserve(job, amount, ceiling)
        except Exception as exc:  # noqa: BLE001 - the bus is away: the job waits, nothing is dispatched
            log.debug("reservation of %s failed: %s", job.id, type(exc).__name__)
            self.counts["ledger_errors"] += 1
            return Reservation(
                ok=False, reason=f"over budget: the budget ledger cannot be reached ({type(exc).__name__}); waiting"
            )

    async def settle(self, job: Job, cost_usd: float, *, estimated: bool) -> None:
        """Replace the job's reservation by its real cost, in one write per ledger key, once per job."""
        if self._free(job) and clean_cost(cost_usd) == 0:
            return  # nothing was reserved, nothing was spent
        await self._ledger.settle(job, cost_usd, estimated=estimated)

    async def release(self, job: Job) -> None:
        if self._free(job):
            return
        await self._ledger.release(job)

    # ------------------------------------------------------------------ attempts (see engine/guards/reconcile.py)
    def ledger_keys(self, job: Job) -> tuple[str, ...]:
        """The ledger keys that hold (or would hold) the job's reservation."""
        if self._free(job):
            return ()
        return self._ledger.keys_of(job)

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        """The job's reservation (this process's hold) becomes the attempt's (``reserved[attempt_id]``, marked
        ``rc``) before its call: when the attempt ends without a cost, or its process dies, the money stays held
        until the attempt is reconciled, and a retry or a redelivery of the job has to reserve anew. Returns the
        amount held; None when this process held nothing for the job: no call may start."""
        return await self._ledger.begin_attempt(job, attempt_id, keys)

    async def settle_attempt(
        self, attempt_id: str, keys: tuple[str, ...] | list[str], cost_usd: float, *, estimated: bool
    ) -> bool:
        """Replace an attempt's reservation by what it cost, once per attempt id. True when it was counted."""
        return await self._ledger.settle_attempt(attempt_id, keys, cost_usd, estimated=estimated)

    async def reconcile(self) -> float:
        """Raise today's ledger to the log's spend for today if it knows less. Returns the amount added."""
        if self.state is None:
            return 0.0
        today = utc_day(self.clock())
        logged = sum(
            s.cost_usd for s in self.state.spend_entries.values() if s.demo == self.demo and utc_day(s.at) == today
        )
        return await self._ledger.raise_spent(logged)

    async def housekeep(self) -> int:
        """Purge day ledgers older than a week and idle decision ledgers. Returns how many were purged."""
        return await self._ledger.housekeep()

    async def refresh(self) -> None:
        """Re-read the daily ledger and the live ceiling (remaining_usd() reads what was seen last)."""
        await self._publish_base()
        await self._ledger.refresh()
        await self.read_ceiling()

    def ledger(self) -> Doc:
        """Today's spend and every open reservation (whatever day it was made), as last seen."""
        return self._ledger.today()

    def reserved_usd(self) -> float:
        return reserved_usd(self.ledger())

    def remaining_usd(self) -> float:
        return max(0.0, self.ceiling() - used_usd(self.ledger()))

    # ------------------------------------------------------------------ provider credit
    @property
    def credits_left(self) -> float | None:
        """The key's own limit left (null: the key has no limit), from the last poll."""
        return self._credit.credits_left

    @property
    def key_status(self) -> str:
        return self._credit.key_status

    def cloud_blocked(self) -> Refusal | None:
        return self._credit.blocked()

    def credit_ok(self, since: float) -> None:  # since: wall time (engine/guards/credit.py)
        self._credit.credit_ok(since)

    def mark_out_of_credit(self, reason: str) -> None:
        self._credit.mark_out_of_credit(reason)

    def recheck_key(self, refused: bool = False) -> bool:
        return self._credit.recheck(refused=refused)

    def use_key(self, key: Callable[[], str], cap_line: Callable[[], str], on_refused: Callable[[], None]) -> None:
        self._credit.key, self._credit.cap_line, self._credit.on_refused = key, cap_line, on_refused  # the cap's

    async def poll_key(self) -> None:
        """GET {api_base}/key once; reads data.limit_remaining (null: the key has no limit)."""
        await self._credit.poll_key()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if not self.prices.prices:
            await self.prices.load_cache()
        await self._publish_base()
        try:
            await self.reconcile()
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - the loop below retries
            log.warning("budget ledger not read at start: %s", type(exc).__name__)
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="spend-refresh"))
        if self.prices.fetch_enabled:
            self._tasks.append(asyncio.create_task(self._price_loop(), name="spend-prices"))
        if (self.settings.openrouter.api_key or self.settings.openrouter.management_key) and not self.demo:
            self._tasks.append(asyncio.create_task(self._credit.run(), name="spend-key"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await self._credit.close()

    async def _refresh_loop(self) -> None:
        quiet = 0  # refreshes in a row that found the same ledger with nothing reserved
        while True:
            # at rest (nothing reserved, nothing moving) every IDLE_REFRESH_S or on the next event: a reservation is
            # a compare-and-set on the KV itself, so the cached ledger only feeds the panels and the conductor's
            # envelope. While things move, every refresh_s (events then only mark that they came).
            if quiet >= 3:
                with contextlib.suppress(TimeoutError):
                    await within(self._moved.wait(), IDLE_REFRESH_S)
                if self._moved.is_set():
                    quiet = 0
            else:
                await asyncio.sleep(self.refresh_s)
            self._moved.clear()
            before = self.ledger()
            try:
                await self.refresh()
                after = self.ledger()
                same = after == before and not after["reserved"]
                quiet = quiet + 1 if same else 0
                if self.clock() - self._ledger.last_housekeep > HOUSEKEEP_S:
                    await self.housekeep()
            except Exception as exc:  # noqa: BLE001 - a bus outage: try again next time
                log.debug("ledger refresh failed: %s", type(exc).__name__)

    async def _price_loop(self) -> None:
        while True:
            if self.prices.stale():
                await self.prices.refresh()
            await asyncio.sleep(600 if self.prices.prices else 120)

    def info(self) -> SpendInfo:
        led = self.ledger()
        reserved = reserved_usd(led)
        ceiling = self.ceiling()
        if self.state is not None:
            totals: SpendTotals = log_totals(self.state, self.clock())
        else:  # a standalone worker has no log: what the ledger and this process know
            totals = {
                "today_usd": round(led["spent"], 6),
                "session_usd": round(self._ledger.session_usd, 6),
                "estimated_usd": None,
                "by_model": {},
                "by_decision": {},
            }
        n, held = self.reconciling
        # the keys in this order (``status --json`` prints them as they are): the ledger, the totals, the price
        # list, what is being reconciled, the provider credit
        return {
            "ceiling_usd": ceiling,
            "reserved_usd": round(reserved, 6),
            "reservations": len(led["reserved"]),
            "ledger_spent_usd": round(led["spent"], 6),
            "remaining_usd": round(max(0.0, ceiling - led["spent"] - reserved), 6),
            "per_decision_usd": self.settings.budget.per_decision_usd or None,
            **totals,
            **self.prices.info(),
            "reconciling": n,
            "reconciling_usd": round(held, 6),
            **self._credit.info(),
            "demo": self.demo,
            "counts": dict(self.counts),
        }

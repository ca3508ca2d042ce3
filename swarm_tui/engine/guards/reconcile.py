"""Attempts whose cost is not known yet, reconciled with OpenRouter's ``GET /api/v1/generation?id=``.

A call that ends without ``usage.cost`` (cancelled, stalled, dropped, an error mid-stream, its process killed)
may still be billed: Google, Groq, Mistral and Bedrock bill a cancelled stream in full (OpenRouter's streaming
doc, "Stream Cancellation"). So every OpenRouter call is an *attempt* with a record on the bus, written before
the call starts, and its own reservation in the budget ledger (``SpendGuard.begin_attempt`` moves this
process's hold of the job to the attempt's id; when it holds none, no call starts: ``NotHeld``):

- the call ends with ``usage.cost``: the attempt is settled at that cost, the record deleted;
- it ends with an HTTP error before any stream (nothing generated, nothing billed): settled at 0;
- it ends with a generation id (every chunk's ``id``) but no cost: the record turns ``pending`` and keeps the
  worst-case reservation until the generation endpoint gives ``total_cost`` (it answers 404 for a few seconds
  after the end: asked again with backoff); after ``openrouter.reconcile_max_s`` without an answer the attempt
  is charged its worst case, marked estimated;
- it ends with no generation id after the provider accepted it (nothing to ask about): the worst case at once.

A reconciled attempt has its own SpendEntry (id ``<job>-a<hex>``), so recorded spend is what OpenRouter billed.
Records live in the KV bucket ``swarm_reconcile``: ``a.<attempt>`` = {"job", "keys" (ledger keys), "worst",
"owner", "state" ("calling" | "pending" | "charging"), "gen", "started_at", "ended_at", "tries", "next_at"[,
"cost", "estimated", "tokens"]}, and ``o.<owner>`` = {"at"}, the heartbeat of the process that owns them. A
record whose owner stopped (its heartbeat is deleted on stop) or died (its heartbeat seen unchanged for
``ORPHAN_S`` by the adopter itself: engine/guards/owner_watch.py), or whose run this process lost, is adopted
by compare-and-set by any running reconciler: an engine killed mid-call is reconciled when one comes back.

One attempt is recorded once, at one cost: every change of a record is a compare-and-set on its revision, and
whoever charges it first writes the cost into it (state "charging") by compare-and-set, then publishes its
SpendEntry (id = the attempt: deduplicated), settles the ledger (once per attempt id) and deletes the record;
anyone finishing a "charging" record later charges that same cost. An owner that finds its record adopted (it
looked dead) leaves it to the adopter. GET /generation is read by engine/guards/generation.py: a redirect or
a number that is not finite is refused, never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from swarm_tui.engine.bus.client import Bus, retrying
from swarm_tui.engine.bus.numbers import nonnegative
from swarm_tui.engine.bus.wire import Job, SpendEntry
from swarm_tui.engine.config.sections import OpenRouterSection
from swarm_tui.engine.guards.generation import GenerationReader, count, figure
from swarm_tui.engine.guards.late_ends import LateEnds
from swarm_tui.engine.guards.owner_watch import FORGET_S, HEARTBEAT_S, ORPHAN_S, OwnerWatch
from swarm_tui.engine.guards.protocols import AttemptLedgerP, NotHeld
from swarm_tui.engine.guards.reconcile_store import RecordStore
from swarm_tui.engine.info import ReconcileInfo
from swarm_tui.engine.lifecycle import cancel_and_wait, within

log = logging.getLogger(__name__)

IDLE_SCAN_S = 10.0
BUSY_SCAN_S = 0.5
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 20.0


def attempt_id(job_id: str) -> str:
    return f"{job_id[:52]}-a{secrets.token_hex(3)}"


class Reconciler:
    name = "reconcile"

    def __init__(
        self,
        openrouter: OpenRouterSection,
        bus: Bus,
        *,
        spend: AttemptLedgerP | None = None,
        api_base: Callable[[], str],
        api_key: Callable[[], str],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.openrouter = openrouter
        self.bus = bus
        self.spend = spend
        self.api_base = api_base
        self.api_key = api_key
        self.clock = clock
        self.monotonic = monotonic
        self.owners = OwnerWatch(lambda: self.monotonic())  # this process's own clock, never another host's
        self.store = RecordStore(bus)
        self.owner = secrets.token_hex(6)
        self.live: set[str] = set()  # attempts of this process's calls in flight
        self.counts: Counter[str] = Counter()
        self.pending_n = 0
        self.pending_usd = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # ends the bus did not take (end_later), written when it is back
        self.late = LateEnds(
            lambda aid, keys, **end: self.end(aid, keys, **end),  # looked up at each try: end may be wrapped
            live=self.live,
            counts=self.counts,
            monotonic=self.monotonic,
            max_s=openrouter.reconcile_max_s,
        )
        self._unsettled: set[str] = set()  # not billed, record deleted, ledger settle (at 0) not written yet
        self.generations = GenerationReader(api_base, api_key, self.counts)
        self._beat_at: float | None = None  # monotonic time of this process's last heartbeat
        self._stopping = False
        self._owned = 0  # records this process owned at the last scan (its heartbeat keeps them its own)

    # ------------------------------------------------------------------ the pool's side
    async def begin(self, job: Job, *, worst: float, max_tokens: int) -> tuple[str, tuple[str, ...], float]:
        """Before a call: the record (state "calling"), then the job's reservation moved to the attempt.
        Returns the attempt's id, its ledger keys and its worst case (what it holds). ``NotHeld`` when this
        process held nothing for the job (its hold was dropped meanwhile): the record goes, and no call starts."""
        aid = attempt_id(job.id)
        keys = tuple(self.spend.ledger_keys(job)) if self.spend is not None else ()
        self.live.add(aid)
        now = self.clock()
        doc: dict[str, Any] = {
            "job": {
                "id": job.id,
                "worker_id": job.worker_id,
                "decision_id": job.decision_id,
                "task_id": job.task_id,
                "model": job.model,
                "max_tokens": max_tokens,
            },
            "keys": list(keys),
            "worst": worst,
            "owner": self.owner,
            "state": "calling",
            "gen": "",
            "started_at": now,
            "ended_at": 0.0,
            "tries": 0,
            "next_at": 0.0,
        }
        try:
            await retrying(self._beat)
            # through a bus outage: no call without a record
            rev = await retrying(lambda: self.store.put(f"a.{aid}", doc))
            if self.spend is not None and keys:
                held = await self.spend.begin_attempt(job, aid, keys)
                if held is None:  # no call: nothing to record (a scan would charge a "calling" one its worst case)
                    self.counts["not_held"] += 1
                    await retrying(lambda: self.store.delete(f"a.{aid}", last=rev))
                    raise NotHeld(f"the reservation of {job.id} was gone when its call was to start")
                if held > 0 and abs(held - worst) > 1e-12:
                    doc["worst"] = held
                    await self.store.put(f"a.{aid}", doc, last=rev)
        except BaseException:  # a cancel too: the attempt is not live, whatever ended its start; re-raised
            self.live.discard(aid)  # no call: the record, if any, is taken by the scan
            raise
        return aid, keys, float(doc["worst"])

    async def note_generation(self, aid: str, gen: str) -> None:
        """The generation id is known (first chunk): a kill from now on can still be reconciled. Written through
        a bus outage (a cluster's leader election): a record without it could only be charged its worst case."""

        async def note() -> None:
            doc, rev = await self.store.get(f"a.{aid}")
            if doc is not None and doc.get("owner") == self.owner and not doc.get("gen"):
                doc["gen"] = gen
                await self.store.put(f"a.{aid}", doc, last=rev)

        await retrying(note)

    def abandon(self, aid: str) -> None:
        """The call was cut off without an end (the pool is stopping): the scan (here or elsewhere) takes it."""
        self.live.discard(aid)

    def end_later(self, aid: str, keys: tuple[str, ...], **end: Any) -> None:
        """``end`` could not be written (the bus away longer than a retry). This process still knows what the
        record may not (the cost, the generation id), so the attempt stays live (no scan charges it as cut off,
        at its worst case) and the loop writes its end when the bus is back."""
        self.late.keep(aid, keys, end)
        self.live.add(aid)
        self._wake.set()

    async def end(
        self,
        aid: str,
        keys: tuple[str, ...],
        *,
        job: Job,
        cost: float | None,
        gen: str,
        billed: bool,
        worst: float,
        tokens: tuple[int, int] = (0, 0),
    ) -> tuple[float, bool] | None:
        """After a call: the attempt is recorded here, under its own id (its SpendEntry and ledger settle), never
        in the job's SpendEntry. Returns (cost, estimated) for the job's Result, or None while it is pending (or
        recorded by another process that adopted it).

        Recording by attempt id makes every path idempotent: a record this process failed to delete (a bus
        outage, a cluster's leader election) and then charged again by a scan is the same SpendEntry id and the
        same ledger entry, counted once; and every write here is a compare-and-set on the record as this process
        owns it, so a record adopted meanwhile is left to its adopter."""
        key = f"a.{aid}"
        if cost is not None and nonnegative(cost) is None:
            cost = None  # not a cost: asked of GET /generation like a call that ended without one
        try:
            if aid in self._unsettled:  # its record went (not billed), its ledger settle did not: that settle only
                await self._settle_ledger(aid, keys, 0.0, estimated=False)
                self._unsettled.discard(aid)
                return 0.0, False
            cur, rev = await self.store.get(key)
            if cur is None or cur.get("owner") != self.owner:  # it looked dead to another process, which took it
                self.counts["adopted_away"] += 1
                return None
            if not billed and cost is None:  # the provider never took the request: nothing to record
                if not await self.store.delete(key, last=rev):  # the record first: no one can charge it after
                    self.counts["adopted_away"] += 1
                    return None
                self._unsettled.add(aid)  # no record says it any more: a retried end must still settle it
                await self._settle_ledger(aid, keys, 0.0, estimated=False)
                self._unsettled.discard(aid)
                return 0.0, False
            if cost is not None:
                c = float(cost)
                return (c, False) if await self._charge(key, aid, cur, rev, c, estimated=False, tokens=tokens) else None
            if not gen:  # the provider took the request but no chunk came: nothing to ask about
                self.counts["worst_no_id"] += 1
                ok = await self._charge(key, aid, cur, rev, worst, estimated=True, tokens=tokens)
                return (worst, True) if ok else None
            cur.update({"state": "pending", "gen": gen, "ended_at": self.clock(), "next_at": self.clock()})
            if not await self.store.put(key, cur, last=rev):
                self.counts["adopted_away"] += 1
                return None
            self.counts["pending"] += 1
            self._wake.set()
            return None
        finally:
            self.live.discard(aid)

    async def _settle_ledger(
        self, aid: str, keys: tuple[str, ...] | list[str], cost: float, *, estimated: bool
    ) -> None:
        if self.spend is not None and keys:
            await self.spend.settle_attempt(aid, tuple(keys), cost, estimated=estimated)

    # ------------------------------------------------------------------ the loop
    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="reconcile")

    async def stop(self) -> None:
        # the loop also ends by itself: on Python 3.11, asyncio.wait_for (here, and in nats-py's requests) returns
        # a result that arrives together with the cancel and drops the cancel, and the stop then waited forever
        self._stopping = True
        self._wake.set()
        await cancel_and_wait([self._task])
        if self.late:  # one more try: an end written is the provider's figure, one left is its worst case
            with contextlib.suppress(Exception):  # stopping: one not written is charged by the next scan
                await within(self.late.write(), 5)
        self._task = None
        with contextlib.suppress(Exception):  # stopping: a heartbeat left is judged dead after ORPHAN_S
            await within(self.store.delete(f"o.{self.owner}"), 2)  # the next process adopts at once
        await self.generations.close()

    def info(self) -> ReconcileInfo:
        return {
            "pending": self.pending_n,
            "held_usd": round(self.pending_usd, 6),
            "live": len(self.live),
            "owner": self.owner,
            "counts": dict(self.counts),
        }

    async def _beat(self) -> None:
        """The heartbeat, at most every HEARTBEAT_S (timed on the monotonic clock: a wall clock set back would
        silence it)."""
        now = self.monotonic()
        if self._beat_at is None or now - self._beat_at >= HEARTBEAT_S:
            await self.store.put(f"o.{self.owner}", {"at": self.clock()})
            self._beat_at = now

    async def _loop(self) -> None:
        """Scan now and then (often while something waits for an answer); beat while this process owns records
        (an idle process writes nothing)."""
        next_scan = 0.0
        while not self._stopping:
            try:
                if self.live or self._owned:
                    await self._beat()
                if self.late:
                    await self.late.write()
                if time.monotonic() >= next_scan or self._wake.is_set():
                    self._wake.clear()
                    busy = await self.scan()
                    next_scan = time.monotonic() + (BUSY_SCAN_S if busy else IDLE_SCAN_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bus outage: try again shortly
                log.debug("reconcile scan failed: %s", type(exc).__name__)
                next_scan = time.monotonic() + BUSY_SCAN_S * 4
            wait = max(0.02, next_scan - time.monotonic())
            if self.live or self._owned:
                wait = min(wait, HEARTBEAT_S)
            if self._stopping:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self._wake.wait(), wait)

    async def scan(self) -> bool:
        """One pass over every record. True while something waits for an answer."""
        keys = await self.store.keys()
        beats: dict[str, bool] = {}  # owner -> gone, judged once in this pass
        n, usd, busy, mine = 0, 0.0, False, 0
        for key in keys:
            if not key.startswith("a."):
                continue
            doc, rev = await self.store.get(key)
            if doc is None:
                continue
            aid = key[2:]
            if doc.get("state") == "pending":
                n += 1
                usd += float(doc.get("worst") or 0.0)
            if doc.get("owner") == self.owner:
                mine += 1
            if not await self._mine(aid, doc, beats):
                continue
            if doc.get("owner") != self.owner:  # adopt it: only the compare-and-set winner goes on
                self._beat_at = None
                await self._beat()  # this process's heartbeat exists before it owns anything
                doc["owner"] = self.owner
                if doc.get("state") == "pending":  # its deadline counts on this host's clock from now
                    doc.update({"ended_at": self.clock(), "next_at": self.clock()})
                rev = await self.store.put(key, doc, last=rev)
                if not rev:
                    continue
                self.counts["adopted"] += 1
                mine += 1
                log.info("adopted attempt %s: its owner's heartbeat stood still for %.0f s here", aid, ORPHAN_S)
            if doc.get("state") == "charging":  # its charger stopped half-way: the cost it holds, once
                await self._charge(key, aid, doc, rev, 0.0, estimated=False, tokens=(0, 0))
                continue
            if doc.get("state") == "calling":  # its call was cut off: it ended now
                if not doc.get("gen"):
                    self.counts["worst_no_id"] += 1
                    worst = float(doc.get("worst") or 0.0)
                    await self._charge(key, aid, doc, rev, worst, estimated=True, tokens=(0, 0))
                    continue
                doc.update({"state": "pending", "ended_at": self.clock(), "next_at": self.clock()})
                rev = await self.store.put(key, doc, last=rev)
                if not rev:
                    continue
            busy = True
            if self.clock() >= float(doc.get("next_at") or 0.0):
                await self._ask(key, aid, doc, rev)
        self.pending_n, self.pending_usd, self._owned = n, usd, mine
        await self._forget_owners(keys, beats)
        if self.spend is not None:
            self.spend.reconciling = (n, usd)
        return busy

    async def _forget_owners(self, keys: list[str], referenced: dict[str, bool]) -> None:
        """Heartbeats of processes long gone that own no record any more (killed ones never delete theirs):
        seen unchanged here for FORGET_S, deleted only at the revision seen (a beat meanwhile keeps it)."""
        for key in keys:
            owner = key[2:]
            if not key.startswith("o.") or owner == self.owner or owner in referenced:
                continue
            rev = await self.store.revision(f"o.{owner}")
            if rev is not None and self.owners.unchanged_for(owner, rev) >= FORGET_S:
                with contextlib.suppress(Exception):  # a heartbeat left is forgotten at a later scan
                    await self.store.delete(key, last=rev)
                self.owners.forget(owner)

    async def _mine(self, aid: str, doc: dict[str, Any], beats: dict[str, bool]) -> bool:
        owner = str(doc.get("owner") or "")
        if owner == self.owner:
            return doc.get("state") == "pending" or aid not in self.live
        if owner not in beats:  # once a pass: each look at an unchanged heartbeat counts its standing still
            beats[owner] = self.owners.gone(owner, await self.store.revision(f"o.{owner}"))
        return beats[owner]

    async def _ask(self, key: str, aid: str, doc: dict[str, Any], rev: int) -> None:
        data = await self.generations.read(str(doc.get("gen") or ""))
        if data is not None:
            cost = nonnegative(data.get("total_cost"))
            if cost is not None:
                tokens = (count(data.get("tokens_prompt")), count(data.get("tokens_completion")))
                if await self._charge(key, aid, doc, rev, float(cost), estimated=False, tokens=tokens):
                    self.counts["reconciled"] += 1
                return
        if self.clock() - float(doc.get("ended_at") or 0.0) >= self.openrouter.reconcile_max_s:
            self.counts["worst_timeout"] += 1
            log.warning(
                "no cost from OpenRouter for attempt %s in %.0f s: charged its worst case",
                aid,
                self.openrouter.reconcile_max_s,
            )
            await self._charge(key, aid, doc, rev, float(doc.get("worst") or 0.0), estimated=True, tokens=(0, 0))
            return
        tries = int(doc.get("tries") or 0) + 1
        doc.update({"tries": tries, "next_at": self.clock() + min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (tries - 1))})
        await self.store.put(key, doc, last=rev)

    async def _charge(
        self,
        key: str,
        aid: str,
        doc: dict[str, Any],
        rev: int,
        cost: float,
        *,
        estimated: bool,
        tokens: tuple[int, int],
    ) -> bool:
        """Fix the attempt's cost in its record (compare-and-set: False when another process has it now), then
        its SpendEntry, its ledger settle and the record's deletion (each step repeatable, at that cost). A record
        already "charging" is charged at the cost it holds, whatever this caller would have charged."""
        if doc.get("state") == "charging":
            t = doc.get("tokens") or [0, 0]
            cost, estimated, tokens = figure(doc.get("cost")), bool(doc.get("estimated")), (count(t[0]), count(t[-1]))
        else:
            doc.update({"state": "charging", "cost": cost, "estimated": estimated, "tokens": list(tokens)})
            if not await self.store.put(key, doc, last=rev):
                self.counts["charge_lost"] += 1
                return False
        j = doc.get("job") or {}
        se = SpendEntry(
            id=aid,
            model=str(j.get("model", "?"))[:128],
            worker_id=j.get("worker_id", "x"),
            decision_id=j.get("decision_id", "x"),
            task_id=j.get("task_id", "x"),
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cost_usd=round(max(0.0, cost), 9),
            estimated=estimated,
            at=self.clock(),
        )
        await self.bus.publish_event(se, msg_id=f"spend-{aid}")
        await self._settle_ledger(aid, list(doc.get("keys") or []), cost, estimated=estimated)
        await self.store.delete(key)
        return True

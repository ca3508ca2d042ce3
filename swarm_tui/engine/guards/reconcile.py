"""Attempts whose cost is not known yet, reconciled with OpenRouter's ``GET /api/v1/generation?id=``.

A call that ends without ``usage.cost`` (cancelled, stalled, dropped, an error mid-stream, its process killed)
may still be billed: Google, Groq, Mistral and Bedrock bill a cancelled stream in full (OpenRouter's streaming
doc, "Stream Cancellation"). So every OpenRouter call is an *attempt* with a record on the bus, written before
the call starts, and its own reservation in the budget ledger (``SpendGuard.begin_attempt`` moves the job's
reservation to the attempt's id):

- the call ends with ``usage.cost``: the attempt is settled at that cost, the record deleted;
- it ends with an HTTP error before any stream (nothing generated, nothing billed): settled at 0;
- it ends with a generation id (every chunk's ``id``) but no cost: the record turns ``pending`` and keeps the
  worst-case reservation until the generation endpoint gives ``total_cost`` (it answers 404 for a few seconds
  after the end: asked again with backoff); after ``openrouter.reconcile_max_s`` without an answer the attempt
  is charged its worst case, marked estimated;
- it ends with no generation id after the provider accepted it (nothing to ask about): the worst case at once.

A reconciled attempt has its own SpendEntry (id ``<job>-a<hex>``), so recorded spend is what OpenRouter billed.
Records live in the KV bucket ``swarm_reconcile``: ``a.<attempt>`` = {"job", "keys" (ledger keys), "worst",
"owner", "state" ("calling" | "pending"), "gen", "started_at", "ended_at", "tries", "next_at"}, and
``o.<owner>`` = {"at"}, the heartbeat of the process that owns them. A record whose owner stopped (its
heartbeat is deleted on stop) or died (no heartbeat for ``ORPHAN_S``), or whose run this process lost, is
adopted by compare-and-set by any running reconciler: an engine killed mid-call is reconciled when one comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus, retrying
from swarm_tui.engine.bus.wire import Job, SpendEntry
from swarm_tui.engine.config import Config
from swarm_tui.engine.info import ReconcileInfo
from swarm_tui.engine.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
ORPHAN_S = 10.0  # an owner without a heartbeat this long is gone
FORGET_S = 3600.0  # a gone owner's heartbeat key is deleted after this long
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
        cfg: Config,
        bus: Bus,
        *,
        spend: Any = None,
        api_base: Callable[[], str],
        api_key: Callable[[], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.spend = spend if hasattr(spend, "settle_attempt") else None
        self.api_base = api_base
        self.api_key = api_key
        self.clock = clock
        self.owner = secrets.token_hex(6)
        self.live: set[str] = set()  # attempts of this process's calls in flight
        self.counts: Counter[str] = Counter()
        self.pending_n = 0
        self.pending_usd = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._beat_at = 0.0
        self._owned = 0  # records this process owned at the last scan (its heartbeat keeps them its own)

    # ------------------------------------------------------------------ records
    async def _kv(self) -> Any:
        return await self.bus.kv(S.KV_RECONCILE)

    async def _get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            e = await (await self._kv()).get(key)
        except KeyNotFoundError:
            return None, 0
        try:
            doc = json.loads(e.value or b"")
        except ValueError:
            return None, e.revision or 0
        return (doc if isinstance(doc, dict) else None), e.revision or 0

    async def _put(self, key: str, doc: dict[str, Any], last: int | None = None) -> bool:
        kv = await self._kv()
        try:
            if last is None:
                await kv.put(key, json.dumps(doc).encode())
            else:
                await kv.update(key, json.dumps(doc).encode(), last=last)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def _delete(self, key: str) -> None:
        with contextlib.suppress(Exception):
            await (await self._kv()).purge(key)

    # ------------------------------------------------------------------ the pool's side
    async def begin(self, job: Job, *, worst: float, max_tokens: int) -> tuple[str, tuple[str, ...], float]:
        """Before a call: the record (state "calling"), then the job's reservation moved to the attempt.
        Returns the attempt's id, its ledger keys and its worst case (what it holds)."""
        aid = attempt_id(job.id)
        keys = tuple(await self.spend.ledger_keys(job)) if self.spend is not None else ()
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
            await retrying(lambda: self._put(f"a.{aid}", doc))  # through a bus outage: no call without a record
            if self.spend is not None and keys:
                held = await self.spend.begin_attempt(job, aid, keys)
                if held > 0 and abs(held - worst) > 1e-12:
                    doc["worst"] = held
                    await self._put(f"a.{aid}", doc)
        except BaseException:
            self.live.discard(aid)  # no call: the record, if any, is taken by the scan
            raise
        return aid, keys, float(doc["worst"])

    async def note_generation(self, aid: str, gen: str) -> None:
        """The generation id is known (first chunk): a kill from now on can still be reconciled."""
        doc, rev = await self._get(f"a.{aid}")
        if doc is not None and doc.get("owner") == self.owner and not doc.get("gen"):
            doc["gen"] = gen
            await self._put(f"a.{aid}", doc, last=rev)

    def abandon(self, aid: str) -> None:
        """The call was cut off without an end (the pool is stopping): the scan (here or elsewhere) takes it."""
        self.live.discard(aid)

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
        in the job's SpendEntry. Returns (cost, estimated) for the job's Result, or None while it is pending.

        Recording by attempt id makes every path idempotent: a record this process failed to delete (a bus
        outage, a cluster's leader election) and then charged again by a scan, or adopted by another process
        while its call still ran, is the same SpendEntry id and the same ledger entry, counted once."""
        j = {"id": job.id, "worker_id": job.worker_id, "decision_id": job.decision_id, "task_id": job.task_id}
        doc: dict[str, Any] = {"job": j | {"model": job.model}, "keys": list(keys)}
        try:
            if not billed and cost is None:  # the provider never took the request: nothing to record
                await self._settle_ledger(aid, keys, 0.0, estimated=False)
                await self._delete(f"a.{aid}")
                return 0.0, False
            if cost is not None:
                c = float(cost)
                await self._charge(aid, doc, c, estimated=False, tokens=tokens)
                return c, False
            if not gen:  # the provider took the request but no chunk came: nothing to ask about
                self.counts["worst_no_id"] += 1
                await self._charge(aid, doc, worst, estimated=True, tokens=tokens)
                return worst, True
            cur, _rev = await self._get(f"a.{aid}")
            if cur is None:  # adopted and charged already by a scan that took this call for a cut one
                return None
            cur.update({"state": "pending", "gen": gen, "ended_at": self.clock(), "next_at": self.clock()})
            await self._put(f"a.{aid}", cur)
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
            self._task = asyncio.create_task(self._loop(), name="reconcile")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._delete(f"o.{self.owner}"), 2)  # the next process adopts at once
        if self._http is not None:
            await self._http.close()
            self._http = None

    def info(self) -> ReconcileInfo:
        return {
            "pending": self.pending_n,
            "held_usd": round(self.pending_usd, 6),
            "live": len(self.live),
            "owner": self.owner,
            "counts": dict(self.counts),
        }

    async def _beat(self) -> None:
        now = self.clock()
        if now - self._beat_at >= HEARTBEAT_S:
            await self._put(f"o.{self.owner}", {"at": now})
            self._beat_at = now

    async def _loop(self) -> None:
        """Scan now and then (often while something waits for an answer); beat while this process owns records
        (an idle process writes nothing)."""
        next_scan = 0.0
        while True:
            try:
                if self.live or self._owned:
                    await self._beat()
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
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def scan(self) -> bool:
        """One pass over every record. True while something waits for an answer."""
        kv = await self._kv()
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        owners: dict[str, float] = {}
        n, usd, busy, mine = 0, 0.0, False, 0
        for key in keys:
            if not key.startswith("a."):
                continue
            doc, rev = await self._get(key)
            if doc is None:
                continue
            aid = key[2:]
            if doc.get("state") == "pending":
                n += 1
                usd += float(doc.get("worst") or 0.0)
            if doc.get("owner") == self.owner:
                mine += 1
            if not await self._mine(aid, doc, owners):
                continue
            if doc.get("owner") != self.owner:  # adopt it: only the compare-and-set winner goes on
                doc["owner"] = self.owner
                if not await self._put(key, doc, last=rev):
                    continue
                doc, rev = await self._get(key)
                if doc is None:
                    continue
                self.counts["adopted"] += 1
            if doc.get("state") == "calling":  # its call was cut off: it ended now
                if not doc.get("gen"):
                    self.counts["worst_no_id"] += 1
                    await self._charge(aid, doc, float(doc.get("worst") or 0.0), estimated=True, tokens=(0, 0))
                    continue
                doc.update({"state": "pending", "ended_at": self.clock(), "next_at": self.clock()})
                await self._put(key, doc)
            busy = True
            if self.clock() >= float(doc.get("next_at") or 0.0):
                await self._ask(key, aid, doc)
        self.pending_n, self.pending_usd, self._owned = n, usd, mine
        await self._forget_owners(keys, owners)
        if self.spend is not None:
            self.spend.reconciling = (n, usd)
        return busy

    async def _forget_owners(self, keys: list[str], referenced: dict[str, float]) -> None:
        """Heartbeats of processes long gone that own no record any more (killed ones never delete theirs)."""
        for key in keys:
            owner = key[2:]
            if not key.startswith("o.") or owner == self.owner or owner in referenced:
                continue
            beat, _ = await self._get(key)
            if beat is None or self.clock() - float(beat.get("at", 0.0)) > FORGET_S:
                await self._delete(key)

    async def _mine(self, aid: str, doc: dict[str, Any], owners: dict[str, float]) -> bool:
        owner = str(doc.get("owner") or "")
        if owner == self.owner:
            return doc.get("state") == "pending" or aid not in self.live
        if owner not in owners:
            beat, _ = await self._get(f"o.{owner}")
            owners[owner] = float(beat.get("at", 0.0)) if beat else 0.0
        return self.clock() - owners[owner] > ORPHAN_S

    async def _ask(self, key: str, aid: str, doc: dict[str, Any]) -> None:
        data = await self.generation(str(doc.get("gen") or ""))
        if data is not None:
            cost = data.get("total_cost")
            if isinstance(cost, int | float) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0:
                tokens = (_int(data.get("tokens_prompt")), _int(data.get("tokens_completion")))
                self.counts["reconciled"] += 1
                await self._charge(aid, doc, float(cost), estimated=False, tokens=tokens)
                return
        if self.clock() - float(doc.get("ended_at") or 0.0) >= self.cfg.openrouter.reconcile_max_s:
            self.counts["worst_timeout"] += 1
            log.warning(
                "no cost from OpenRouter for attempt %s in %.0f s: charged its worst case",
                aid,
                self.cfg.openrouter.reconcile_max_s,
            )
            await self._charge(aid, doc, float(doc.get("worst") or 0.0), estimated=True, tokens=(0, 0))
            return
        tries = int(doc.get("tries") or 0) + 1
        doc.update({"tries": tries, "next_at": self.clock() + min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (tries - 1))})
        await self._put(key, doc)

    async def generation(self, gen: str) -> dict[str, Any] | None:
        """GET {api_base}/generation?id=: the ``data`` object, or None (404 while its stats are not ready yet)."""
        if not gen:
            return None
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        url = self.api_base().rstrip("/") + "/generation"
        headers = {"Authorization": f"Bearer {self.api_key()}"} if self.api_key() else {}
        try:
            async with self._http.get(url, params={"id": gen}, headers=headers) as resp:
                self.counts[f"http_{resp.status}"] += 1
                if resp.status != 200:
                    return None
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self.counts["unreachable"] += 1
            log.debug("generation %s not read: %s", gen, type(exc).__name__)
            return None
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None

    async def _charge(
        self, aid: str, doc: dict[str, Any], cost: float, *, estimated: bool, tokens: tuple[int, int]
    ) -> None:
        """The attempt's SpendEntry, then its ledger settle, then the record goes (each step repeatable)."""
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
        await self._delete(f"a.{aid}")


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else 0


async def read_pending(bus: Bus) -> tuple[int, float]:
    """(attempts waiting for their cost, USD they hold) from the bucket, for ``status`` without an engine."""
    try:
        kv = await bus.kv(S.KV_RECONCILE)
        keys = await kv.keys()
    except Exception:  # noqa: BLE001 - no bucket or no keys
        return 0, 0.0
    n, usd = 0, 0.0
    for k in keys:
        if not k.startswith("a."):
            continue
        with contextlib.suppress(Exception):
            doc = json.loads((await kv.get(k)).value or b"")
            if doc.get("state") in ("pending", "calling"):  # no engine: a "calling" one was cut off
                n += 1
                usd += float(doc.get("worst") or 0.0)
    return n, usd

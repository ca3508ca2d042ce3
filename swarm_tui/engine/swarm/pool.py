"""The worker pool: jobs from the JOBS work queue, run as litellm streams, reported on the bus.

Concurrency is the live scale (KV ``swarm_state.scale``, ``swarm.bcast.scale``, scale control events), capped
by ``--concurrency`` in a standalone worker. The pool fetches only as many jobs as it has free slots, so
several pools share the queue fairly. A job is acked only after its Result, SpendEntry and final WorkerEvent
are stored; held jobs are kept alive with ``in_progress`` so only a crashed pool's jobs are redelivered, and a
redelivered job whose result exists is acked without a call. What a job passes through before its call (the
gates): a cancel mark, out of credit, the spend reservation, the model's rate limit, RAM headroom and the
local lane for ``ollama_chat/`` models. The call itself, retries and faults are in ``jobrun.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg as NatsMsg
from nats.errors import TimeoutError as NatsTimeout

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import ControlEvent, Decision, Job, decode
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.protocols import RamGuardP, SpendGuardP
from swarm_tui.engine.guards.reconcile import Reconciler
from swarm_tui.engine.info import PoolInfo
from swarm_tui.engine.models import is_local_chat
from swarm_tui.engine.swarm.deliveries import ADVISORY, on_max_deliveries
from swarm_tui.engine.swarm.gates import ModelLimit
from swarm_tui.engine.swarm.job import MAX_DELIVER, JobRun, Run

log = logging.getLogger(__name__)

MISSING_KEY = "OPENROUTER_API_KEY is not set"
FETCH_WAIT_S = 0.5
# With no job for IDLE_AFTER_S the pull request lasts FETCH_IDLE_WAIT_S: a job still arrives at once (the pull is
# a long poll, answered by the server the moment a job is stored), but an idle app asks nats-server 60x less
# often (its idle CPU: docs/performance.md, issue 16). A reconnect, or a new leader of the work queue's consumer
# (a cluster's failover: pull requests die with the old leader), starts a new pull at once; a job delivered
# beyond the slots free by then (the scale went down during the wait) is held, not started.
FETCH_IDLE_WAIT_S = 30.0
LEADER_ELECTED = f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{S.JOBS_STREAM}.{S.JOBS_CONSUMER}"
IDLE_AFTER_S = 10.0
BLOCKED_WAIT_S = 5.0  # the longest a pool with no free slot (or no key) sleeps without a slot freed or a rescale
# A job handed back on stop is redelivered after this delay, not at once: at once, JetStream would deliver it to
# this pool's own last pull request (alive for FETCH_WAIT_S after the fetch loop stopped), where nobody reads
# it: a delivery used up and the job stuck until ack_wait. (Jobs are handed back only by a busy pool, whose
# pulls are the short ones.)
NAK_DELAY_S = FETCH_WAIT_S + 0.5


class Pool:
    name = "pool"
    recover_after = 5

    def __init__(
        self,
        cfg: Config,
        bus: Bus,
        *,
        spend: SpendGuardP | None = None,
        ram: RamGuardP | None = None,
        lane: LocalLane | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        concurrency: int | None = None,
        demo: bool = False,
        demo_endpoint: Any = None,
        warm_on_start: bool = True,
    ) -> None:
        self.cfg = cfg
        # A standalone worker loads litellm at once; inside the app it waits for the first decision, so an
        # idle app stays small (litellm costs ~115 MB) and is loaded by the time a person approves.
        self.warm_on_start = warm_on_start
        self._warming: asyncio.Task[None] | None = None
        self._last_accept = float("-inf")  # monotonic time of the last job taken (the fetch's wait depends on it)
        self._http: Any = None  # aiohttp.ClientSession of the direct OpenRouter calls, made on first use
        self.bus = bus
        self.spend = spend
        self.ram = ram
        self.lane = lane if lane is not None else LocalLane()
        self.clock = clock
        self.host = host or socket.gethostname()
        self.concurrency = concurrency
        self.demo = demo
        self.demo_endpoint = demo_endpoint
        self.scale: int = cfg.swarm.scale
        self.runs: dict[str, Run] = {}
        self.limits: dict[str, ModelLimit] = {}
        self.counts: Counter[str] = Counter()
        self.out_of_credit = ""  # the pool's own 402 flag when no spend guard is injected
        self._credit_at = 0.0
        self._slot = asyncio.Event()
        self._busy = asyncio.Event()  # set while jobs run: the chunk flush loop sleeps on it when idle
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._psub: Any = None
        self._fetch: asyncio.Future[Any] | None = None  # the pull request waited on now (a reconnect cancels it)
        self.held: list[NatsMsg] = []  # jobs delivered beyond our free slots: heartbeated, started first
        self._stopping = False
        self.runner = JobRun(self)
        # OpenRouter attempts without usage.cost are reconciled with GET /generation (not the demo endpoint's)
        self.reconciler: Reconciler | None = (
            None
            if demo_endpoint is not None
            else Reconciler(
                cfg.openrouter,
                bus,
                spend=spend,
                api_base=lambda: self.api_base,
                api_key=lambda: self.api_key,
                clock=clock,
            )
        )

    # ------------------------------------------------------------------ settings
    @property
    def capacity(self) -> int:
        return self.scale if self.concurrency is None else min(self.scale, self.concurrency)

    @property
    def api_key(self) -> str:
        return str(self.demo_endpoint.KEY) if self.demo_endpoint is not None else self.cfg.openrouter.api_key

    @property
    def api_base(self) -> str:
        return str(self.demo_endpoint.base) if self.demo_endpoint is not None else self.cfg.openrouter.api_base

    def blocked(self) -> str:
        """Why the pool takes no job from the queue at all, else ""."""
        if self.demo_endpoint is None and not self.cfg.openrouter.api_key:
            return MISSING_KEY
        return ""

    def cloud_blocked(self) -> str:
        if self.spend is not None:
            return self.spend.cloud_blocked() or ""
        if self.out_of_credit and self.clock() - self._credit_at > 60:
            self.out_of_credit = ""  # try again: a 402 will set it again
        return self.out_of_credit

    def mark_out_of_credit(self, reason: str) -> None:
        if self.spend is not None:
            self.spend.mark_out_of_credit(reason)
        else:
            self.out_of_credit = reason if reason.startswith("out of credit") else f"out of credit: {reason}"
            self._credit_at = self.clock()

    def credit_ok(self, since: float) -> None:
        """A call sent after the account ran out of credit went through: dispatch resumes."""
        if self.spend is not None:
            ok = getattr(self.spend, "credit_ok", None)
            if ok is not None:
                ok(since)
        elif self.out_of_credit and since >= self._credit_at:
            self.out_of_credit = ""

    def set_scale(self, n: int) -> None:
        n = max(0, min(int(n), self.cfg.swarm.max_scale))
        if n != self.scale:
            log.info("pool scale %d -> %d", self.scale, n)
        self.scale = n
        self._slot.set()

    # ------------------------------------------------------------------ rate limits (RateLimitsP)
    def rate_limits(self) -> dict[str, dict[str, Any]]:
        return {
            m: {"limit": lim.limit, "backoff_until": lim.backoff_until}
            for m, lim in self.limits.items()
            if lim.limit is not None or lim.backoff_until > self.clock()
        }

    def limit_of(self, model: str) -> ModelLimit:
        return self.limits.setdefault(model, ModelLimit())

    def on_rate_limited(self, model: str, retry_after: float | None) -> None:
        lim = self.limit_of(model)
        lim.limit = max(1, (lim.limit or max(lim.active, 1)) // 2)
        lim.ok = 0
        lim.backoff_until = max(lim.backoff_until, self.clock() + min(120.0, retry_after or 1.0))

    def on_success(self, model: str, started: float = 0.0) -> None:
        self.credit_ok(started)
        lim = self.limits.get(model)
        if lim is None or lim.limit is None:
            return
        lim.ok += 1
        if lim.ok >= self.recover_after:
            lim.ok = 0
            lim.limit += 1
            if lim.limit >= self.cfg.swarm.max_scale:
                lim.limit = None

    # ------------------------------------------------------------------ component
    async def start(self) -> None:
        self._stopping = False
        await self._read_scale()
        nc = self.bus.nc
        assert nc is not None
        self._subs.append(await nc.subscribe(S.BCAST_SCALE, cb=self._on_scale))
        self._subs.append(await nc.subscribe(S.BCAST_CANCEL, cb=self._on_cancel))
        self._subs.append(await nc.subscribe(ADVISORY, cb=self._on_max_deliveries))
        self._subs.append(await nc.subscribe(LEADER_ELECTED, cb=self._on_leader_elected))
        self._psub = await self.bus._js.pull_subscribe_bind(durable=S.JOBS_CONSUMER, stream=S.JOBS_STREAM)
        self.bus.on_state(self._on_bus_state)
        if self.blocked():
            log.warning("the worker pool takes no jobs: %s", self.blocked())
        elif self.warm_on_start and self.needs_litellm([r.model for r in self.cfg.roles.values()]):
            self.warm_up()  # litellm's import takes ~2 s: in a thread, before the first local job needs it
        if self.reconciler is not None:
            await self.reconciler.start()
        for coro, name in (
            (self._fetch_loop(), "pool-fetch"),
            (self._heartbeat_loop(), "pool-heartbeat"),
            (self._flush_loop(), "pool-flush"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        runs = list(self.runs.values())
        for r in runs:
            if r.task is not None:
                r.task.cancel()
        await asyncio.gather(*self._tasks, *(r.task for r in runs if r.task is not None), return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self._drain_late()  # delivered to our last fetch after it gave up: handed back below too
        held, self.held = self.held, []
        for m in held:  # hand them back soon (see NAK_DELAY_S)
            with contextlib.suppress(Exception):
                await m.nak(delay=NAK_DELAY_S)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
            self._psub = None
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self._http is not None:  # the connections of the direct OpenRouter calls
            with contextlib.suppress(Exception):
                await self._http.close()
            self._http = None

    def info(self) -> PoolInfo:
        states = Counter(r.state for r in self.runs.values())
        return {
            "scale": self.scale,
            "concurrency": self.concurrency,
            "capacity": self.capacity,
            "running": len(self.runs),
            "held": len(self.held),
            "states": dict(states),
            "host": self.host,
            "blocked": self.blocked() or self.cloud_blocked(),
            "out_of_credit": self.cloud_blocked(),
            "api_base": self.api_base,
            "demo": self.demo_endpoint is not None,
            "guards": {
                "spend": self.spend is not None,
                "ram": self.ram is not None,
                "note": "" if self.spend is not None else "no spend guard: nothing is reserved",
            },
            "counts": dict(self.counts),
            "rate_limits": self.rate_limits(),
            "lane": self.lane.info(),
            "reconcile": self.reconciler.info() if self.reconciler is not None else None,
        }

    def warm_up(self) -> None:
        if self._warming is None and not self._stopping:
            self._warming = asyncio.create_task(self._warm_up(), name="pool-warm-up")
            self._tasks.append(self._warming)

    def http_session(self) -> Any:
        """The pool's connection pool to OpenRouter (keep-alive across jobs), made on first use."""
        if self._http is None or self._http.closed:
            from swarm_tui.engine.swarm.openrouter_http import new_session

            self._http = new_session()
        return self._http

    def needs_litellm(self, models: list[str]) -> bool:
        """Whether a call to one of these models goes through litellm: a local model outside the demo, or any
        OpenRouter model with ``openrouter.via_litellm`` (else OpenRouter is called directly)."""
        if self.demo_endpoint is not None:
            return False  # the demo answers every model as openrouter/ (routed in job.Runner.route)
        return any(
            is_local_chat(m) or (m.startswith("openrouter/") and self.cfg.openrouter.via_litellm) for m in models
        )

    def on_event(self, ev: Any) -> None:
        if isinstance(ev, Decision) and ev.plan and self._tasks and not self.blocked():
            if self.needs_litellm([p.model for p in ev.plan]):
                self.warm_up()
        if not isinstance(ev, ControlEvent):
            return
        if ev.what == "scale" and ev.value is not None and self._tasks:
            self.set_scale(int(ev.value))
        elif ev.what == "ceiling":
            for r in self.runs.values():
                r.wake.set()
        elif ev.what == "cancel" and ev.target:
            self.cancel_scope(ev.target, [], ev.at)

    # ------------------------------------------------------------------ bus callbacks
    async def _read_scale(self) -> None:
        try:
            kv = await self.bus.kv(S.KV_STATE)
            entry = await kv.get("scale")
            if entry.value:
                self.set_scale(int(entry.value.decode()))
        except Exception:  # noqa: BLE001 - no scale stored yet: keep swarm.scale
            pass

    def _repull(self) -> None:
        """The pull request waited on is gone on the server's side: pull again now, not at its expiry."""
        fetch = self._fetch
        if fetch is not None and not fetch.done() and not self._stopping:
            fetch.cancel()

    async def _on_bus_state(self, state: str) -> None:
        if state == "connected" and not self._stopping:
            self._repull()  # it died with the old connection
            await self._read_scale()

    async def _on_leader_elected(self, msg: NatsMsg) -> None:
        self._repull()  # it died with the consumer's old leader

    async def _on_scale(self, msg: NatsMsg) -> None:
        try:
            n = json.loads(msg.data)["scale"]
            if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
                self.set_scale(n)
        except (ValueError, KeyError, TypeError, RecursionError):
            self.counts["bad_broadcast"] += 1

    async def _on_max_deliveries(self, msg: NatsMsg) -> None:
        if not self._stopping:
            await on_max_deliveries(self, msg)

    async def _on_cancel(self, msg: NatsMsg) -> None:
        try:
            d = json.loads(msg.data)
            scope, workers, at = str(d.get("scope", "")), list(d.get("workers") or []), float(d.get("at") or 0)
        except (ValueError, TypeError, AttributeError, RecursionError):
            self.counts["bad_broadcast"] += 1
            return
        self.cancel_scope(scope, [str(w) for w in workers], at)

    def cancel_scope(self, scope: str, workers: list[str], at: float) -> int:
        n = 0
        for r in list(self.runs.values()):
            j = r.job
            if scope == "all" and (not at or j.created_at <= at):
                why = "cancelled (all workers)"
            elif scope == f"decision:{j.decision_id}":
                why = f"cancelled with decision {j.decision_id}"
            elif scope == f"worker:{j.worker_id}" or j.worker_id in workers:
                why = "cancelled"
            else:
                continue
            n += r.cancel(why)
        return n

    # ------------------------------------------------------------------ loops
    async def _drain_late(self) -> None:
        """Take jobs that arrived after a fetch gave up (nats-py parks them in the pull subscription's queue,
        where nobody would heartbeat them and JetStream would hand them to another worker after ack_wait):
        hold them, say they are in progress, and start them first when a slot frees."""
        sub = getattr(self._psub, "_sub", None)
        queue = getattr(sub, "_pending_queue", None)
        while queue is not None and not queue.empty():
            m = queue.get_nowait()
            with contextlib.suppress(Exception):
                sub._pending_size -= len(m.data)  # type: ignore[union-attr]
            if m.headers and m.headers.get("Status"):
                continue  # a status message of an earlier pull request
            await self._hold(m)
            self.counts["late_delivery"] += 1

    async def _hold(self, m: NatsMsg) -> None:
        """A job with no free slot: heartbeated (``in_progress``) and started first when a slot frees."""
        with contextlib.suppress(Exception):
            await m.in_progress()
        self.held.append(m)

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            await self._drain_late()
            free = self.capacity - len(self.runs)
            while self.held and free > 0:
                await self._accept(self.held.pop(0))
                free -= 1
            if free <= 0 or self.blocked() or self.cloud_blocked():
                # a freed slot or a new scale sets _slot; out of credit ends with time (a cooldown), so look
                # again every 0.5 s then; no key or no free slot only every BLOCKED_WAIT_S (idle CPU)
                self._slot.clear()
                wait = 0.5 if self.cloud_blocked() else BLOCKED_WAIT_S
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._slot.wait(), wait)
                continue
            idle = not self.runs and time.monotonic() - self._last_accept > IDLE_AFTER_S
            fetch = self._fetch = asyncio.ensure_future(
                self._psub.fetch(free, timeout=FETCH_IDLE_WAIT_S if idle else FETCH_WAIT_S)
            )
            try:
                msgs = await fetch
            except (TimeoutError, NatsTimeout):
                continue
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    raise
                continue  # only the fetch was cancelled (a reconnect): pull again on the new connection
            except Exception as exc:  # noqa: BLE001 - reconnecting: try again shortly
                log.debug("fetch failed: %s", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            finally:
                self._fetch = None
            free = self.capacity - len(self.runs)  # the scale may have gone down during a long wait
            for i, m in enumerate(msgs):
                if i < free:
                    await self._accept(m)
                else:
                    await self._hold(m)

    async def _accept(self, m: NatsMsg) -> None:
        try:
            job = decode(m.data, expect="job")
        except InvalidMessage as exc:
            await self.bus.dead.set_aside(self.bus, m.subject, m.data, str(exc))
            with contextlib.suppress(Exception):
                await m.term()
            return
        assert isinstance(job, Job)
        if job.id in self.runs:  # redelivered while we still hold it (should not happen with heartbeats)
            with contextlib.suppress(Exception):
                await m.in_progress()
            return
        run = Run(job=job, msg=m)
        self._last_accept = time.monotonic()
        with contextlib.suppress(Exception):
            run.delivered = int(m.metadata.num_delivered or 1)
        self.runs[job.id] = run
        self._busy.set()
        run.task = asyncio.create_task(self._run(run), name=f"job-{job.id}")

    async def _run(self, run: Run) -> None:
        try:
            await self.runner.process(run)
        except asyncio.CancelledError:
            if self._stopping and not run.acked:
                if run.delivered >= MAX_DELIVER:  # JetStream would never deliver it again: end it now
                    await self._last_word(
                        run, f"the engine stopped during its last allowed delivery ({run.delivered} of {MAX_DELIVER})"
                    )
                else:  # hand the job back soon rather than after ack_wait
                    with contextlib.suppress(Exception):
                        await run.msg.nak(delay=NAK_DELAY_S)
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or the bus gone: the job is redelivered after ack_wait
            log.exception("job %s failed unexpectedly", run.job.id)
            self.counts["crashed"] += 1
            if run.delivered >= MAX_DELIVER and not run.acked:
                await self._last_word(
                    run,
                    f"failed unexpectedly ({type(exc).__name__}) during its last allowed "
                    f"delivery ({run.delivered} of {MAX_DELIVER})",
                )
        finally:
            self.runs.pop(run.job.id, None)
            self._slot.set()

    async def _last_word(self, run: Run, reason: str) -> None:
        """A failed result for a job on its last delivery that cannot finish (no delivery would follow)."""
        try:
            await asyncio.shield(self.runner.finish(run, "failed", reason))
            self.counts["last_delivery_failed"] += 1
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - the bus is gone: nothing more to do
            log.warning("job %s: no result stored on its last delivery: %s", run.job.id, type(exc).__name__)

    async def _warm_up(self) -> None:
        from swarm_tui.engine.swarm.worker_call import load_litellm

        try:
            await load_litellm()
        except Exception as exc:  # noqa: BLE001 - the first call reports it properly
            log.warning("litellm did not load: %s", type(exc).__name__)

    async def _heartbeat_loop(self) -> None:
        every = max(0.5, min(10.0, self.cfg.swarm.ack_wait_s / 3))
        while True:
            await asyncio.sleep(every)
            for m in [r.msg for r in self.runs.values() if not r.acked] + list(self.held):
                with contextlib.suppress(Exception):
                    await m.in_progress()

    async def _flush_loop(self) -> None:
        every = self.cfg.swarm.chunk_flush_ms / 1000
        while True:
            if not self.runs:  # idle: no 20 wake-ups a second (idle CPU); a new run sets _busy
                self._busy.clear()
                await self._busy.wait()
            await asyncio.sleep(every)
            for r in list(self.runs.values()):
                if r.buf or r.rbuf:
                    await self.runner.flush(r)
                if r.attempt and r.progress.generation_id != r.gen_noted:  # from a header, or reasoning only
                    self.runner.note_generation(r)

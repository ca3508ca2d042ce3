"""The worker pool: jobs from the JOBS work queue, each one a streamed call to its endpoint, reported on the bus.

Concurrency is the live scale (KV ``swarm_state.scale``, ``swarm.bcast.scale``, scale control events), capped
by ``--concurrency`` in a standalone worker. The pool fetches only as many jobs as it has free slots, so
several pools share the queue fairly. A job is acked only after its Result, SpendEntry and final WorkerEvent
are stored; held jobs are kept alive with ``in_progress`` so only a crashed pool's jobs are redelivered, and a
redelivered job whose result exists is acked without a call. What a job passes through before its call (the
gates): a cancel mark, out of credit (cloud jobs only), the spend reservation, the model's rate limit, RAM
headroom and the local lane for ``ollama_chat/`` models. Each lane of the queue has its own consumer and fetch
loop: with no key, a rejected key or no credit the pool pulls no cloud job (it stays on the queue for a pool that
can run it, its deliveries unspent) and keeps running local ones (a fully local swarm needs no key). The two
loops share the free slots; one may deliver beyond them while the other took them: those jobs are held. The
job's run is in ``job.py`` (it sees the pool as ``PoolContext``), the pull subscriptions and held jobs in
``fetch.py``, each model's concurrency in ``limits.py``.
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
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import ControlEvent, Decision, Job, decode
from swarm_tui.engine.errors import InvalidMessage, Refusal
from swarm_tui.engine.guards.local_lane import LocalLane
from swarm_tui.engine.guards.protocols import RamGuardP, SpendGuardP
from swarm_tui.engine.guards.reconcile import Reconciler
from swarm_tui.engine.info import PoolInfo
from swarm_tui.engine.lifecycle import within
from swarm_tui.engine.swarm.call_errors import KEY_REFUSED
from swarm_tui.engine.swarm.context import PoolSettings
from swarm_tui.engine.swarm.deliveries import advisory, on_max_deliveries
from swarm_tui.engine.swarm.endpoint import Endpoint
from swarm_tui.engine.swarm.fetch import FETCH_WAIT_S, IDLE_AFTER_S, JobFetch, heartbeat_loop
from swarm_tui.engine.swarm.gates import MISSING_KEY as MISSING_KEY  # where callers have read it
from swarm_tui.engine.swarm.job import JobRun
from swarm_tui.engine.swarm.limits import ModelLimit, ModelLimits
from swarm_tui.engine.swarm.run import MAX_DELIVER, Run, cancel_scope

log = logging.getLogger(__name__)


def leader_elected(lane: str) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{S.JOBS_STREAM}.{S.jobs_consumer(lane)}"


BLOCKED_WAIT_S = 5.0  # the longest a pool with no free slot (or no key) sleeps without a slot freed or a rescale
# A job handed back on stop is redelivered after this delay, not at once: at once, JetStream would deliver it to
# this pool's own last pull request (alive for FETCH_WAIT_S after the fetch loop stopped), where nobody reads
# it: a delivery used up and the job stuck until ack_wait. (Jobs are handed back only by a busy pool, whose
# pulls are the short ones.)
NAK_DELAY_S = FETCH_WAIT_S + 0.5


def _credit_only(why: Refusal | None) -> str:
    """The 402 / key-limit reason, not a rejected key's (that is no lack of credit: ``blocked`` says it)."""
    return "" if why is None or str(why).startswith("key rejected") else str(why)


class Pool:
    """Provides ``PoolContext`` (context.py) to its jobs."""

    name = "pool"

    def __init__(
        self,
        settings: PoolSettings,
        bus: Bus,
        *,
        endpoint: Endpoint,
        spend: SpendGuardP | None = None,
        ram: RamGuardP | None = None,
        lane: LocalLane | None = None,
        reconciler: Reconciler | None = None,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        concurrency: int | None = None,
        warm_on_start: bool = True,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        # A standalone worker loads litellm at once; inside the app it waits for the first decision, so an
        # idle app stays small (litellm costs ~115 MB) and is loaded by the time a person approves.
        self.warm_on_start = warm_on_start
        self._warming: asyncio.Task[None] | None = None
        self._last_accept = float("-inf")  # monotonic time of the last job taken (the fetch's wait depends on it)
        self.bus = bus
        self.spend = spend
        self.ram = ram
        self.lane = lane if lane is not None else LocalLane()
        self.clock = clock
        self.host = host or socket.gethostname()
        self.concurrency = concurrency
        self.scale: int = settings.swarm.scale
        self.runs: dict[str, Run] = {}
        self.limits = ModelLimits(clock, settings.swarm.max_scale)
        self.counts: Counter[str] = Counter()
        self.out_of_credit = ""  # the pool's own 402 flag when no spend guard is injected
        self._credit_at = 0.0
        self._slot = asyncio.Event()
        self._busy = asyncio.Event()  # set while jobs run: the chunk flush loop sleeps on it when idle
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Subscription] = []
        self.fetches = {lane: JobFetch(self.counts, lane) for lane in S.JOB_LANES}
        self._stopping = False
        self.runner = JobRun(self)
        # OpenRouter attempts without usage.cost are reconciled with GET /generation (build.py makes it when the
        # endpoint reconciles)
        self.reconciler = reconciler

    # ------------------------------------------------------------------ settings
    @property
    def capacity(self) -> int:
        return self.scale if self.concurrency is None else min(self.scale, self.concurrency)

    def blocked(self) -> Refusal | None:
        """Why the pool takes no job from the queue at all, else None (a missing key stops only cloud jobs:
        ``key_missing``)."""
        return None

    def lane_shut(self, lane: str) -> Refusal | None:
        """Why the pool pulls no job of this lane now: the cloud's with no key, a rejected one or no credit."""
        return (self.key_missing() or self.cloud_blocked()) if lane == "cloud" else None

    def key_missing(self) -> Refusal | None:
        """Why no cloud job runs in this pool (no OpenRouter key), else None; local jobs run without one."""
        if self.endpoint.blocks_without_key and not self.endpoint.api_key:
            return Refusal(MISSING_KEY)
        return None

    def cloud_blocked(self) -> Refusal | None:
        if self.spend is not None:
            return self.spend.cloud_blocked()
        if self.out_of_credit and self.clock() - self._credit_at > 60:
            self.out_of_credit = ""  # try again: a 402 will set it again
        return Refusal(self.out_of_credit) if self.out_of_credit else None

    def key_refused(self) -> bool:
        return self.spend is not None and self.spend.recheck_key(refused=True)

    def mark_out_of_credit(self, reason: str) -> None:
        if self.spend is not None:
            self.spend.mark_out_of_credit(reason)
        else:
            self.out_of_credit = reason if reason.startswith("out of credit") else f"out of credit: {reason}"
            self._credit_at = self.clock()

    def credit_ok(self, since: float) -> None:
        """A call sent after the account ran out of credit went through: dispatch resumes."""
        if self.spend is not None:
            self.spend.credit_ok(since)
        elif self.out_of_credit and since >= self._credit_at:
            self.out_of_credit = ""

    def set_scale(self, n: int) -> None:
        n = max(0, min(int(n), self.settings.swarm.max_scale))
        if n != self.scale:
            log.info("pool scale %d -> %d", self.scale, n)
        self.scale = n
        self._slot.set()

    # ------------------------------------------------------------------ rate limits (RateLimitsP)
    def rate_limits(self) -> dict[str, dict[str, Any]]:
        return self.limits.rate_limits()

    def limit_of(self, model: str) -> ModelLimit:
        return self.limits.of(model)

    def on_rate_limited(self, model: str, retry_after: float | None) -> None:
        self.limits.on_rate_limited(model, retry_after)

    def on_success(self, model: str, started: float = 0.0) -> None:
        self.credit_ok(started)
        self.limits.on_success(model)

    # ------------------------------------------------------------------ component
    async def start(self) -> None:
        self._stopping = False
        await self._read_scale()
        nc = self.bus.nc
        assert nc is not None
        self._subs.append(await nc.subscribe(S.BCAST_SCALE, cb=self._on_scale))
        self._subs.append(await nc.subscribe(S.BCAST_CANCEL, cb=self._on_cancel))
        for lane, fetch in self.fetches.items():
            self._subs.append(await nc.subscribe(advisory(lane), cb=self._on_max_deliveries))
            self._subs.append(await nc.subscribe(leader_elected(lane), cb=self._on_leader_elected))
            await fetch.bind(self.bus.jobs)
        self.bus.on_state(self._on_bus_state)
        if self.key_missing():
            log.warning("the worker pool runs local jobs only: %s", self.key_missing())
        if self.warm_on_start and self.needs_litellm([r.model for r in self.settings.roles.values()]):
            self.warm_up()  # litellm's import takes ~2 s: in a thread, before the first local job needs it
        if self.reconciler is not None:
            await self.reconciler.start()
        for coro, name in (
            (self._fetch_loop("cloud"), "pool-fetch-cloud"),
            (self._fetch_loop("local"), "pool-fetch-local"),
            (heartbeat_loop(self.runs, self.fetches.values(), self.settings.swarm.ack_wait_s), "pool-heartbeat"),
            (self.runner.flush_loop(self.runs, self._busy), "pool-flush"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        self._stopping = True
        # A cancelled run stores its last word or hands its job back (see _run). Not cancel_and_wait: its second
        # cancel after 2 s would cut a run that is writing its last word (a slow bus at stop would cost a result
        # and its settled money). gather waits for every run; if the lifecycle's bound on this stop cancels us,
        # gather passes that cancel on to the runs, the second cancel a call that swallowed the first one needs.
        runs = list(self.runs.values())
        tasks = [*self._tasks, *(r.task for r in runs if r.task is not None)]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for fetch in self.fetches.values():
            await fetch.hand_back(NAK_DELAY_S)
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the bus is gone: the interest went with the connection
                await sub.unsubscribe()
        self._subs.clear()
        for fetch in self.fetches.values():
            await fetch.unbind()
        if self.reconciler is not None:
            await self.reconciler.stop()
        await self.endpoint.close_session()  # the connections of the direct OpenRouter calls

    def runs_worker(self, worker_id: str) -> bool:
        """Whether this pool runs that worker now (the engine counts other processes' workers' chunks)."""
        return any(r.job.worker_id == worker_id for r in self.runs.values())

    def info(self) -> PoolInfo:
        states: Counter[str] = Counter(r.state for r in self.runs.values())
        return {
            "scale": self.scale,
            "concurrency": self.concurrency,
            "capacity": self.capacity,
            "running": len(self.runs),
            "held": sum(len(f.held) for f in self.fetches.values()),
            "states": dict(states),
            "tokens": {r.job.worker_id: r.progress.tokens for r in self.runs.values()},
            "host": self.host,
            "blocked": str(self.blocked() or self.key_missing() or self.cloud_blocked() or ""),
            "local_only": self.key_missing() is not None,
            "out_of_credit": _credit_only(self.cloud_blocked()),
            "api_base": self.endpoint.api_base,
            "demo": self.endpoint.is_demo,
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

    def needs_litellm(self, models: list[str]) -> bool:
        """Whether a call to one of these models goes through litellm (the endpoint says, model by model)."""
        return any(self.endpoint.needs_litellm(m) for m in models)

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
        if not self._stopping:
            for fetch in self.fetches.values():
                fetch.repull()

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
            await on_max_deliveries(self.runner, self.runs, msg)

    async def _on_cancel(self, msg: NatsMsg) -> None:
        try:
            d = json.loads(msg.data)
            scope, workers, at = str(d.get("scope", "")), list(d.get("workers") or []), float(d.get("at") or 0)
        except (ValueError, TypeError, AttributeError, RecursionError):
            self.counts["bad_broadcast"] += 1
            return
        self.cancel_scope(scope, [str(w) for w in workers], at)

    def cancel_scope(self, scope: str, workers: list[str], at: float) -> int:
        return cancel_scope(self.runs.values(), scope, workers, at)

    # ------------------------------------------------------------------ loops
    async def _fetch_loop(self, lane: str) -> None:
        """Jobs of one lane (``cloud``, ``local``) into the free slots, as long as the pool runs."""
        fetch = self.fetches[lane]
        while not self._stopping:
            await fetch.drain_late()
            free = self._free()
            while fetch.held and free > 0:
                await self._accept(fetch.held.pop(0))
                free -= 1
            if free <= 0 or self.blocked() or self.lane_shut(lane):
                # a freed slot or a new scale sets _slot; out of credit ends with time (a cooldown), so look
                # again every 0.5 s then; no key or no free slot only every BLOCKED_WAIT_S (idle CPU)
                self._slot.clear()
                wait = 0.5 if lane == "cloud" and self.cloud_blocked() else BLOCKED_WAIT_S
                with contextlib.suppress(asyncio.TimeoutError):
                    await within(self._slot.wait(), wait)
                continue
            idle = not self.runs and time.monotonic() - self._last_accept > IDLE_AFTER_S
            try:
                msgs = await fetch.pull(free, idle=idle)
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
            free = self._free()  # the scale may have gone down during a long wait
            for i, m in enumerate(msgs):
                if i < free:
                    await self._accept(m)
                else:
                    await fetch.hold(m)

    def _free(self) -> int:
        """Slots free for jobs (both lanes' loops fill them)."""
        return self.capacity - len(self.runs)

    async def _accept(self, m: NatsMsg) -> None:
        try:
            job = decode(m.data, expect="job")
        except InvalidMessage as exc:
            await self.bus.dead.set_aside(self.bus, m.subject, m.data, str(exc))
            with contextlib.suppress(Exception):  # the bus is away: redelivered, and set aside again
                await m.term()
            return
        assert isinstance(job, Job)
        if job.id in self.runs:  # redelivered while we still hold it (should not happen with heartbeats)
            with contextlib.suppress(Exception):  # the bus is away: the heartbeat loop says it again
                await m.in_progress()
            return
        run = Run(job=job, msg=m)
        self._last_accept = time.monotonic()
        with contextlib.suppress(Exception):  # not a JetStream message's reply subject: its first delivery
            run.delivered = int(m.metadata.num_delivered or 1)
        self.runs[job.id] = run
        self._busy.set()
        run.task = asyncio.create_task(self._run(run), name=f"job-{job.id}")

    async def _run(self, run: Run) -> None:
        try:
            await self.runner.process(run)
            # this pool's own call refused for its key (not a bus event anyone can send): look at the key soon
            if run.state == "failed" and run.reason.startswith(KEY_REFUSED) and self.spend is not None:
                self.spend.recheck_key()  # coalesced and spaced by the key watch
        except asyncio.CancelledError:
            if self._stopping and not run.acked:
                if run.delivered >= MAX_DELIVER:  # JetStream would never deliver it again: end it now
                    await self._last_word(
                        run, f"the engine stopped during its last allowed delivery ({run.delivered} of {MAX_DELIVER})"
                    )
                else:  # hand the job back soon rather than after ack_wait
                    with contextlib.suppress(Exception):  # the bus is gone: redelivered after ack_wait
                        await run.msg.nak(delay=NAK_DELAY_S)
            raise
        except Exception as exc:  # a bug or the bus gone: the job is redelivered after ack_wait
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

"""One job as a pool runs it: its message, its call in flight, what streamed and what it cost so far."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from nats.aio.msg import Msg as NatsMsg

from swarm_tui.engine.bus.wire import Job
from swarm_tui.engine.states import WorkerState
from swarm_tui.engine.swarm.progress import Progress

MAX_DELIVER = 5

# a job taken from the queue and not yet reported, then the worker states its events carry
RunState: TypeAlias = Literal["fetched"] | WorkerState


@dataclass
class Run:
    job: Job
    msg: NatsMsg
    task: asyncio.Task[None] | None = None
    call: asyncio.Task[Any] | None = None
    cancel_reason: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    progress: Progress = field(default_factory=Progress)
    state: RunState = "fetched"
    reason: str = ""
    buf: list[str] = field(default_factory=list)
    buf_tokens: int = 0
    rbuf: list[str] = field(default_factory=list)  # reasoning text not yet published (shown dimmed)
    sent_at: float = 0.0
    seq: int = 0
    reserved: bool = False
    cost: float = 0.0
    estimated: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    called: bool = False
    acked: bool = False
    started_at: float = field(default_factory=time.time)
    delivered: int = 1  # JetStream's num_delivered of this message
    max_tokens: int = 0  # 0: the job's; lower after a 402 "can only afford N tokens"
    attempt: str = ""  # the attempt in flight (engine/guards/reconcile.py), its ledger keys and worst case
    attempt_keys: tuple[str, ...] = ()
    attempt_worst: float = 0.0
    attempts: int = 0  # attempts settled in the ledger one by one (not by the job's settle at its end)
    recorded: bool = False  # its calls were attempts: each has its own SpendEntry, the job has none
    pending: int = 0  # attempts whose cost OpenRouter has not told yet (reconciled after the job ends)
    gen_noted: str = ""
    noting: asyncio.Task[None] | None = None

    def cancel(self, reason: str) -> int:
        if self.cancel_reason or self.acked:
            return 0
        self.cancel_reason = reason
        self.wake.set()
        if self.call is not None and not self.call.done():
            self.call.cancel()
        return 1


def cancel_scope(runs: Iterable[Run], scope: str, workers: list[str], at: float) -> int:
    """Cancel the runs a cancel request names ("all" jobs created by ``at``, a decision's, a worker's, or the
    ``workers`` listed); how many it cancelled."""
    n = 0
    for r in list(runs):
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

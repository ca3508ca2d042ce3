"""Control requests: approve, reject, edit, scale, cancel, pause, resume.

A control request is validated against the swarm's state and then written to the bus as events (and, for
cancel and scale, a broadcast plus a KV mark so that every pool sees it). The components react to those events;
nobody calls them directly. The engine serves these requests on ``swarm.ctl.<verb>``; when no engine is
running, the CLI runs the same ``Controls`` on a state replayed from the log, so the request still lands.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeAlias, TypeGuard, assert_never, get_args

from nats.aio.msg import Msg as NatsMsg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.bus.wire import Approval, ControlEvent, Reply
from swarm_tui.engine.config.options_swarm import scale_refusal
from swarm_tui.engine.guards.ceiling_kv import OVERRIDE_KEY
from swarm_tui.engine.projection.recorder import Recorder
from swarm_tui.engine.projection.state import DecisionView, SwarmState
from swarm_tui.engine.states import FINAL_STATES, NEED_KINDS

log = logging.getLogger(__name__)

Verb: TypeAlias = Literal[
    "approve", "reject", "edit", "scale", "cancel", "pause", "resume", "ceiling", "promote", "seen"
]
VERBS: Final[tuple[Verb, ...]] = get_args(Verb)


def is_verb(verb: str) -> TypeGuard[Verb]:
    return verb in VERBS


# Why a control request was refused: a verb nobody serves, an argument out of range or missing, no such
# decision, worker or answer, an id that matches several, or a target no longer in a state the verb applies to.
ControlErrorKind: TypeAlias = Literal["unknown_verb", "invalid", "not_found", "ambiguous", "wrong_state", "over_budget"]


class ControlError(Exception):
    """A refused control request: the message is the reply's error, word for word; ``kind`` says which refusal."""

    def __init__(self, message: str, kind: ControlErrorKind) -> None:
        super().__init__(message)
        self.kind: ControlErrorKind = kind


class Controls:
    def __init__(
        self,
        bus: Bus,
        state: SwarmState,
        *,
        max_scale: int,
        clock: Callable[[], float] = time.time,
        extra: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] | None = None,
        record: Recorder | None = None,
        task_max_usd: float | None = None,
    ) -> None:
        self.bus = bus
        self.task_max_usd = task_max_usd  # budget.task_max_usd: an edit may not plan a task past it
        self.state = state
        self.record = record or Recorder(bus, state)  # the engine's, or one of our own on a replayed state
        self.max_scale = max_scale
        self.clock = clock
        self.extra = extra or {}

    async def handle(self, verb: str, args: dict[str, Any]) -> dict[str, Any]:
        if verb in self.extra:
            return await self.extra[verb](args)
        if not is_verb(verb):
            raise ControlError(f"unknown control verb {verb!r}", "unknown_verb")
        match verb:
            case "approve":
                return await self.do_approve(args)
            case "reject":
                return await self.do_reject(args)
            case "edit":
                return await self.do_edit(args)
            case "scale":
                return await self.do_scale(args)
            case "cancel":
                return await self.do_cancel(args)
            case "pause":
                return await self.do_pause(args)
            case "resume":
                return await self.do_resume(args)
            case "ceiling":
                return await self.do_ceiling(args)
            case "promote":
                return await self.do_promote(args)
            case "seen":
                return await self.do_seen(args)
            case _:
                assert_never(verb)

    def _pending(self, ident: Any) -> DecisionView:
        if not isinstance(ident, str) or not ident:
            raise ControlError("a decision id is required", "invalid")
        matches = [d for d in self.state.decisions.values() if d.id == ident or d.id.endswith(ident)]
        if not matches:
            raise ControlError(f"no decision {ident}", "not_found")
        if len(matches) > 1:
            raise ControlError(f"decision id {ident} is ambiguous", "ambiguous")
        dv = matches[0]
        if dv.status != "pending":
            raise ControlError(f"decision {dv.id} is {dv.status}, not pending", "wrong_state")
        return dv

    async def do_approve(self, args: dict[str, Any]) -> dict[str, Any]:
        dv = self._pending(args.get("id"))
        workers = args.get("workers")
        # bounded as edit and scale are: an approval with more workers than max_scale would start them all
        if workers is not None and (why := scale_refusal(workers, self.max_scale, "worker count")):
            raise ControlError(why, "invalid")
        # the count it will run with: this one, else an edit's (whoever made it: another engine, an offline
        # `edit` under another budget, a client on the bus), checked against budget.task_max_usd either way
        self._within_task_limit(dv, workers if workers is not None else dv.workers, "approval")
        ev = Approval(
            decision_id=dv.id,
            action="approved",
            by=str(args.get("by", "cli"))[:32],
            at=self.clock(),
            workers=workers if workers is not None else dv.workers,
        )
        await self.record(ev, msg_id=f"{dv.id}-final")
        return {"decision_id": dv.id, "status": "approved", "workers": len(dv.plan)}

    def _within_task_limit(self, dv: DecisionView, workers: int | None, what: str) -> None:
        """Refuse a worker count whose worst case would take a task past budget.task_max_usd (what it has spent
        plus this plan's worst case for it), as the heartbeat's clamp keeps a proposal within it. A count that
        costs no more than the proposal is never refused: the clamp already held that within the limit."""
        limit = self.task_max_usd
        if limit is None or workers is None or workers <= len(dv.decision.plan):
            return
        from swarm_tui.engine.projection.figures import task_worst

        for task_id, worst in task_worst(dv.decision, workers).items():
            spent = self.state.task_spend(task_id)
            if spent + worst > limit + 1e-12:
                had = f" on top of ${spent:.4f} spent" if spent else ""
                raise ControlError(
                    f"{what} refused: {workers} workers could cost up to ${worst:.4f}{had} for task {task_id}, "
                    f"past its limit of ${limit:.4f} (budget.task_max_usd)",
                    "over_budget",
                )

    async def do_reject(self, args: dict[str, Any]) -> dict[str, Any]:
        dv = self._pending(args.get("id"))
        ev = Approval(
            decision_id=dv.id,
            action="rejected",
            by=str(args.get("by", "cli"))[:32],
            at=self.clock(),
            reason=str(args.get("reason", ""))[:500],
        )
        await self.record(ev, msg_id=f"{dv.id}-final")
        return {"decision_id": dv.id, "status": "rejected"}

    async def do_edit(self, args: dict[str, Any]) -> dict[str, Any]:
        dv = self._pending(args.get("id"))
        n = args.get("workers")
        if why := scale_refusal(n, self.max_scale, "worker count"):
            raise ControlError(why, "invalid")
        self._within_task_limit(dv, int(n or 0), "edit")  # n is a whole number here (scale_refusal)
        ev = Approval(
            decision_id=dv.id, action="edited", workers=n, by=str(args.get("by", "cli"))[:32], at=self.clock()
        )
        await self.record(ev)
        return {"decision_id": dv.id, "workers": n}

    async def do_scale(self, args: dict[str, Any]) -> dict[str, Any]:
        n = args.get("n")
        if isinstance(args.get("delta"), int) and not isinstance(args.get("delta"), bool):
            current = self.state.scale if self.state.scale is not None else int(args.get("current", 0))
            n = max(0, min(self.max_scale, current + int(args["delta"])))
        if why := scale_refusal(n, self.max_scale):
            raise ControlError(why, "invalid")
        ev = ControlEvent(what="scale", value=n, by=str(args.get("by", "cli"))[:32], at=self.clock())
        async with self.record.around(ev):  # the pools learn it from the KV mark and the broadcast
            kv = await self.bus.kv(S.KV_STATE)
            await kv.put("scale", str(n).encode())
            if self.bus.nc is not None:
                await self.bus.nc.publish(S.BCAST_SCALE, json.dumps({"scale": n}).encode())
        return {"scale": n}

    async def do_ceiling(self, args: dict[str, Any]) -> dict[str, Any]:
        """Set the daily spend ceiling live (overrides budget.daily_usd until set again)."""
        v = args.get("usd")
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < CEILING_LIMIT_USD or v != v:
            raise ControlError("the ceiling must be a number of USD >= 0", "invalid")
        at = self.clock()
        kv = await self.bus.kv(S.KV_STATE)
        await kv.put(OVERRIDE_KEY, json.dumps({"usd": float(v), "at": at}).encode())
        ev = ControlEvent(what="ceiling", value=float(v), by=str(args.get("by", "cli"))[:32], at=at)
        await self.record(ev)
        return {"ceiling_usd": float(v)}

    async def do_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._pause(True, args)

    async def do_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._pause(False, args)

    async def _pause(self, paused: bool, args: dict[str, Any]) -> dict[str, Any]:
        ev = ControlEvent(what="pause" if paused else "resume", by=str(args.get("by", "cli"))[:32], at=self.clock())
        async with self.record.around(ev):
            kv = await self.bus.kv(S.KV_STATE)
            await kv.put("paused", b"1" if paused else b"0")
        return {"paused": paused}

    async def do_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        """Cancel one worker (id or unique suffix), every worker of a decision, or all."""
        target: list[str] = []
        scope = ""
        live = {w.worker_id: w for w in self.state.workers.values() if w.state not in FINAL_STATES}
        if args.get("all"):
            scope = "all"
            target = list(live)
        elif args.get("decision"):
            dec = str(args["decision"])
            ids = [d for d in self.state.decisions if d == dec or d.endswith(dec)]
            if len(ids) != 1:
                raise (
                    ControlError(f"no decision {dec}", "not_found")
                    if not ids
                    else ControlError(f"decision id {dec} is ambiguous", "ambiguous")
                )
            scope = f"decision:{ids[0]}"
            target = [w for w, ev in live.items() if ev.decision_id == ids[0]]
        elif args.get("worker"):
            wid = str(args["worker"])
            ids = [w for w in live if w == wid or w.endswith(wid)]
            if not ids:
                known = wid in self.state.workers
                raise (
                    ControlError(f"worker {wid} has already ended", "wrong_state")
                    if known
                    else ControlError(f"no live worker {wid}", "not_found")
                )
            if len(ids) > 1:
                raise ControlError(f"worker id {wid} is ambiguous", "ambiguous")
            scope = f"worker:{ids[0]}"
            target = ids
        else:
            raise ControlError("say which: a worker id, --decision ID or --all", "invalid")
        kv = await self.bus.kv(S.KV_CANCEL)
        marks = list(target)
        if scope.startswith("decision:"):
            marks.append(scope.split(":", 1)[1])
        for ident in marks:
            await kv.put(ident, b"1")
        at = self.clock()
        if scope == "all":
            await kv.put("all", str(at).encode())  # jobs created before this instant never start
        payload = json.dumps({"scope": scope, "workers": target, "at": at}).encode()
        if self.bus.nc is not None:
            await self.bus.nc.publish(S.BCAST_CANCEL, payload)
        ev = ControlEvent(what="cancel", target=scope[:64], by=str(args.get("by", "cli"))[:32], at=at)
        await self.bus.publish_event(ev)  # not applied here: the state learns what ended from the workers' events
        return {"scope": scope, "workers": target}

    async def do_promote(self, args: dict[str, Any]) -> dict[str, Any]:
        """Make one stored "done" answer its task's answer (job id or unique suffix): follow-ups build on it."""
        ident = args.get("job")
        if not isinstance(ident, str) or not ident:
            raise ControlError("say which answer: its job id (swarm-tui result TASK lists them)", "invalid")
        ids = [j for j in self.state.results if j == ident or j.endswith(ident)]
        if not ids:  # a worker's id, as its card shows it (…-w2): its one stored answer
            ids = [j for j, r in self.state.results.items() if r.worker_id == ident or r.worker_id.endswith(ident)]
        if not ids:
            raise ControlError(
                f"no stored answer {ident}: promote takes an answer's job id (…-j2) or its worker's (…-w2), as "
                "`swarm-tui result TASK` lists them",
                "not_found",
            )
        if len(ids) > 1:
            shown = ", ".join(sorted(ids)[:5]) + (", …" if len(ids) > 5 else "")
            raise ControlError(f"answer id {ident} is ambiguous: {len(ids)} answers match ({shown})", "ambiguous")
        r = self.state.results[ids[0]]
        if r.state != "done":
            raise ControlError(
                f"answer {r.job_id} {r.state}: only a finished answer can be the task's answer", "wrong_state"
            )
        tv = self.state.tasks.get(r.task_id)
        if tv is None:
            raise ControlError(f"the task of answer {r.job_id} is not in the log", "not_found")
        ev = ControlEvent(what="promote", target=r.job_id, by=str(args.get("by", "cli"))[:32], at=self.clock())
        await self.record(ev)
        return {"task_id": r.task_id, "job_id": r.job_id, "model": r.model, "role": r.role}

    async def do_seen(self, args: dict[str, Any]) -> dict[str, Any]:
        """A person has seen what needs them (one kind, or all): the badge and ``needs_attention`` mark it seen."""
        kinds = args.get("kinds", list(NEED_KINDS))
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not kinds or any(k not in NEED_KINDS for k in kinds):
            raise ControlError(f"kinds must be some of {', '.join(NEED_KINDS)}", "invalid")
        at = self.clock()
        for k in dict.fromkeys(kinds):
            await self.record(ControlEvent(what="seen", target=k, by=str(args.get("by", "cli"))[:32], at=at))
        return {"seen": list(dict.fromkeys(kinds)), "at": at}


class ControlServer:
    """Serves ``swarm.ctl.*`` requests with a ``Controls``; every request gets a JSON ``Reply``."""

    def __init__(self, bus: Bus, controls: Controls) -> None:
        self.bus = bus
        self.controls = controls
        self._sub: Any = None

    async def start(self) -> None:
        assert self.bus.nc is not None
        self._sub = await self.bus.nc.subscribe(S.ctl("*"), queue="engine", cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except (NatsError, OSError):  # the connection is closed or going: nothing left to unsubscribe from
                pass
            self._sub = None

    async def _on_request(self, msg: NatsMsg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            args = json.loads(msg.data or b"{}")
            if not isinstance(args, dict):
                raise ValueError
        except (ValueError, RecursionError):
            reply = Reply(ok=False, error="control request is not a JSON object")
        else:
            try:
                reply = Reply(ok=True, data=await self.controls.handle(verb, args))
            except ControlError as exc:
                reply = Reply(ok=False, error=str(exc), kind=exc.kind)
            except Exception as exc:  # a verb's bug is logged and answered, the control server lives on
                log.exception("control %s failed", verb)
                reply = Reply(ok=False, error=f"{verb} failed: {type(exc).__name__}")
        if msg.reply:
            try:
                await msg.respond(reply.to_bytes())
            except (NatsError, OSError):
                log.debug("could not answer a control request")


async def request(bus: Bus, verb: str, args: dict[str, Any], timeout: float = 3.0) -> Reply | None:
    """Send a control request to a running engine; None when no engine answers."""
    assert bus.nc is not None
    try:
        msg = await bus.nc.request(S.ctl(verb), json.dumps(args).encode(), timeout=timeout)
    except (NoRespondersError, NatsTimeout):
        return None
    try:
        return Reply.model_validate_json(msg.data)
    except ValueError:
        return Reply(ok=False, error="the engine sent an unreadable reply")

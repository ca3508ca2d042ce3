"""The one-shot commands behind the CLI. Each returns an exit code; errors are SwarmError (one line)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict, cast

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedLease
from swarm_tui.engine.bus.topology import describe, one_line
from swarm_tui.engine.bus.wire import MAX_TEXT, Result, Task, new_id, task_text_problem
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.control_requests import ControlError, Controls, request
from swarm_tui.engine.errors import SwarmError, UsageError
from swarm_tui.engine.info import (
    AttentionInfo,
    ConductorInfo,
    EngineInfo,
    EngineMeta,
    InfoError,
    LaneInfo,
    Need,
    OfflineSpend,
    PoolInfo,
    RamInfo,
    RamSummary,
    SpendInfo,
    StatusBus,
    usable,
)
from swarm_tui.engine.paths import data_dir
from swarm_tui.engine.projection.state import SwarmState, TaskView
from swarm_tui.textsafe import plain


@contextlib.asynccontextmanager
async def connected(cfg: Config) -> AsyncIterator[Bus]:
    bus = Bus(cfg)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


async def load_state(bus: Bus) -> SwarmState:
    state = SwarmState()
    await bus.replay(lambda subject, ev, seq: state.apply(ev, seq))
    return state


async def engine_info(bus: Bus, timeout: float = 0.7) -> EngineInfo | None:
    """The running engine's ``Engine.info()`` (read back from its JSON as that shape), or None when none answers."""
    assert bus.nc is not None
    try:
        msg = await bus.nc.request(S.ENGINE_INFO, b"", timeout=timeout)
        info = json.loads(msg.data)
        return cast(EngineInfo, info) if isinstance(info, dict) else None
    except Exception:  # noqa: BLE001 - no engine running
        return None


# ---------------------------------------------------------------------------------------------- submit
def read_task_text(text: str) -> str:
    if text == "-":
        data = sys.stdin.buffer.read(MAX_TEXT * 4 + 1)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("task text on stdin is not UTF-8") from None
    text = text.strip()
    if not text:
        raise UsageError("task text is empty")
    if len(text) > MAX_TEXT:
        raise UsageError(f"task text is {len(text)} characters; the limit is {MAX_TEXT}")
    if "\x00" in text:
        raise UsageError("task text contains a NUL character")
    if problem := task_text_problem(text):  # its bytes as sent, not its characters, must fit a message
        raise UsageError(problem)
    return text


async def submit(cfg: Config, text: str, priority: int, *, demo: bool = False, source: str = "cli") -> int:
    task = Task(id=new_id("t"), text=text, priority=priority, created_at=time.time(), source=source, demo=demo)
    async with connected(cfg) as bus:
        await bus.publish_event(task, msg_id=task.id)
        served = await engine_info(bus) is not None
        where = bus.url if bus.kind == "remote" else str(data_dir(cfg.paths.data_dir))
    print(task.id)
    if not served:  # stored, but nothing will act on it yet: say where it waits, and where an engine runs
        print(f"swarm-tui: {await unserved_note(cfg, where, demo=demo)}", file=sys.stderr)
    return 0


async def unserved_note(cfg: Config, where: str, *, demo: bool) -> str:
    """One line for a task stored where no engine runs: where it waits, and how to reach the engine that runs
    on the other store (the demo keeps its own store, and embedded server, under the real one's data dir)."""
    start = "swarm-tui --demo" if demo else "swarm-tui"
    note = f"no engine is running on {where}: the task waits there until one starts ({start}, or run --headless)"
    return note + await other_engine_hint(cfg, demo=demo)


async def other_engine_hint(cfg: Config, *, demo: bool) -> str:
    """ "; a demo engine is running: add --demo to reach it" (or the other way round) when an engine answers on
    the other store's embedded server, else "". With a NATS URL both share one server: nothing to say."""
    if cfg.nats.url:
        return ""
    store = data_dir(cfg.paths.data_dir)
    other = store.parent if demo else store / "demo"
    if demo and store.name != "demo":
        return ""
    if not await engine_at(other, cfg):
        return ""
    if demo:
        return "; an engine runs without --demo: drop --demo to reach it"
    return "; a demo engine is running: add --demo to reach it"


async def engine_at(store: Path, cfg: Config) -> bool:
    """Whether an engine answers on the embedded server of this data dir (none is started to find out)."""
    url = EmbeddedLease(store).discover() if (store / "nats.json").exists() else None
    if url is None:
        return False
    bus = Bus(cfg.replace(nats__url=url, paths__data_dir=str(store)))
    try:
        await bus.connect(setup=False, connect_timeout=2.0)
        return await engine_info(bus) is not None
    except SwarmError:
        return False
    finally:
        await bus.close()


# ---------------------------------------------------------------------------------------------- status
class StatusData(TypedDict):
    """What ``status`` shows and ``status --json`` prints: this process's own bus connection, the event log's
    projection (``SwarmState.snapshot()``, key for key), and the running engine's parts from ``Engine.info()``
    (None for a part no engine reports; spend and RAM are then read here, so they are always there)."""

    version: str
    bus: StatusBus
    tasks: list[dict[str, Any]]
    task_counts: dict[str, int]
    decisions: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    results: int
    spend_log: dict[str, Any]
    control: dict[str, Any]
    log: dict[str, int]
    engine: EngineMeta | None
    conductor: ConductorInfo | InfoError | None
    pool: PoolInfo | InfoError | None
    spend: SpendInfo | OfflineSpend | InfoError
    ram: RamInfo | RamSummary | InfoError
    lane: LaneInfo | InfoError | None
    needs_attention: list[Need]  # what needs a person now (engine/attention.py), [] when nothing does


async def status_data(cfg: Config) -> StatusData:
    from swarm_tui import __version__

    async with connected(cfg) as bus:
        state = await load_state(bus)
        info: EngineInfo = await engine_info(bus) or {}
        ledger = None
        base: float | None = None
        if not info.get("spend"):
            from swarm_tui.engine.guards.ceiling_kv import read_base
            from swarm_tui.engine.guards.spend import read_ledger

            ledger = await read_ledger(bus, cfg, state.clock())
            with contextlib.suppress(Exception):  # the ceiling workers spend under, as the last engine said
                base = await read_base(bus)
        from swarm_tui.engine.guards.reconcile_store import read_pending

        pending = await read_pending(bus)
        bus_info: StatusBus = {
            "kind": bus.kind,
            "state": bus.state,
            "malformed": dict(bus.dead.counts),
            "warnings": list(bus.warnings),
            "topology": await describe(bus),
        }
    spend: SpendInfo | OfflineSpend | InfoError | None = info.get("spend")
    if spend is None:  # no spend guard reports: the log and the ledger tell it, the reconcile records add theirs
        from swarm_tui.engine.guards.spend import offline_spend_summary

        offline = offline_spend_summary(cfg, state, ledger, base)
        offline["reconciling"], offline["reconciling_usd"] = pending
        spend = offline
    ram: RamInfo | RamSummary | InfoError | None = info.get("ram")
    if ram is None:  # no RAM guard reports: read this machine
        from swarm_tui.engine.guards.memory import ram_snapshot

        ram = ram_snapshot(cfg)
    snap = state.snapshot()
    attention: AttentionInfo | None = usable(info.get("attention"))
    if attention is not None:
        needs_now = list(attention.get("needs", []))
    else:  # no engine tracks it: what the log tells, and the ceiling as the log and the ledger tell it
        from swarm_tui.engine.attention.needs import needs, spend_reached

        now = state.clock()
        since = {"ceiling": now} if spend_reached(usable(spend)) else {}
        needs_now = needs(state, {"spend": spend}, since=since, now=now)  # type: ignore[typeddict-item]
    return {
        "version": __version__,
        "bus": bus_info,
        "tasks": snap["tasks"],
        "task_counts": snap["task_counts"],
        "decisions": snap["decisions"],
        "workers": snap["workers"],
        "results": snap["results"],
        "spend_log": snap["spend_log"],
        "control": snap["control"],
        "log": snap["log"],
        "engine": info.get("engine"),
        "conductor": info.get("conductor"),
        "pool": info.get("pool"),
        "spend": spend,
        "ram": ram,
        "lane": info.get("lane"),
        "needs_attention": needs_now,
    }


def _fmt_usd(v: Any) -> str:
    return "-" if v is None else f"${float(v):.4f}"


ENGINE_DOWN = "not running (start it with `swarm-tui` or `swarm-tui run --headless`)"


def format_status(d: StatusData) -> str:
    """The text ``status`` prints. The engine's parts come from another process's JSON: read with defaults, and a
    part whose ``info()`` failed there (an ``InfoError``) gets no line of its own."""
    lines = []
    eng = d["engine"]
    bus = d["bus"]
    lines.append(
        f"bus: {bus['state']} ({bus['kind']})"
        + (f", malformed set aside: {bus['malformed']}" if bus["malformed"] else "")
    )
    if bus.get("topology"):
        lines[-1] += f"; {one_line(bus['topology'])}"
    for w in bus["warnings"]:
        lines.append(f"warning: {w}")
    lines.append(
        "engine: "
        + (f"running (pid {eng['pid']} on {plain(eng['host'])}, up {eng['uptime_s']}s)" if eng else ENGINE_DOWN)
    )
    for need in d.get("needs_attention", []):
        seen = " (seen)" if need.get("seen") else ""
        when = time.strftime("%H:%M:%S", time.localtime(float(need.get("since", 0))))
        lines.append(f"needs you: {plain(str(need.get('what', '')))} (since {when}){seen}")
    cond = d["conductor"]
    if cond:
        lines.append("conductor: " + ", ".join(f"{k}={v}" for k, v in cond.items() if not isinstance(v, dict | list)))
    lane = usable(d["lane"])
    if lane:
        waiting = [plain(str(w)) for w in lane.get("waiting", [])]
        lines.append(
            f"local lane: {plain(str(lane.get('holder') or 'free'))}"
            + (f" (+{len(waiting)} waiting: {', '.join(waiting[:5])})" if waiting else "")
            + f", {lane.get('turns', 0)} turns so far"
        )
    counts = d["task_counts"]
    lines.append("tasks: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    for t in d["tasks"][-20:]:
        text = plain(t["text"]).replace("\n", " ")
        rnd = f" r{t['round']}" if t.get("round", 0) > 0 else ""
        chosen = f"  ★ answer {t['promoted']}" if t.get("promoted") else ""
        lines.append(f"  {t['id']}  p{t['priority']}  {t['state']:<17} {text[:60]}{rnd}{chosen}")
    pend = [x for x in d["decisions"] if x["status"] == "pending"]
    lines.append(f"decisions: {len(d['decisions'])} ({len(pend)} pending approval)")
    for x in pend[:10]:
        lines.append(
            f"  {x['id']}  {x['workers']} workers  est {_fmt_usd(x['est_cost_usd'][0])}-"
            f"{_fmt_usd(x['est_cost_usd'][1])}  source {plain(x['source'])}"
        )
    live = [w for w in d["workers"] if w["state"] not in ("done", "failed", "cancelled")]
    lines.append(f"workers: {len(live)} live, {d['results']} results stored")
    pool = usable(d["pool"])
    if pool:
        line = f"pool: scale {pool.get('scale', '?')}, {pool.get('running', 0)} running, {pool.get('held', 0)} held"
        if pool.get("blocked"):
            line += f"; takes no jobs: {plain(str(pool['blocked']))}"
        if pool.get("out_of_credit"):
            line += "; out of credit"
        lines.append(line)
    sp = usable(d["spend"])
    if sp:
        lines.append(
            f"spend: today {_fmt_usd(sp.get('today_usd'))} of {_fmt_usd(sp.get('ceiling_usd'))}, "
            f"reserved {_fmt_usd(sp.get('reserved_usd'))}, session {_fmt_usd(sp.get('session_usd'))}, "
            f"prices: {sp.get('price_source', '?')}"
        )
        if sp.get("reconciling"):
            lines.append(
                f"reconciling: {sp['reconciling']} attempt(s) awaiting their cost from OpenRouter, "
                f"{_fmt_usd(sp.get('reconciling_usd'))} held at worst case"
            )
        if "credits_left_usd" in sp:
            left = sp.get("credits_left_usd")
            lines.append(
                "key limit left: "
                + (_fmt_usd(left) if left is not None else "none (no limit on the key, or not checked)")
            )
        if sp.get("blocked_reason"):
            lines.append(f"cloud dispatch stopped: {plain(str(sp['blocked_reason']))}")
    ram = usable(d["ram"])
    if ram:
        lines.append(
            f"ram: {ram.get('available_mb', '?')} MB available of {ram.get('total_mb', '?')} MB, "
            f"headroom {ram.get('headroom_mb', '?')} MB" + (" (LOW)" if ram.get("low") else "")
        )
    return "\n".join(lines)


async def status(cfg: Config, as_json: bool, *, demo: bool = False) -> int:
    data = await status_data(cfg)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    text = format_status(data)
    if data["engine"] is None:
        hint = await other_engine_hint(cfg, demo=demo)
        if hint:
            text = text.replace(ENGINE_DOWN, ENGINE_DOWN + hint, 1)
    print(text)
    return 0


# ---------------------------------------------------------------------------------------------- control
async def control(cfg: Config, verb: str, args: dict[str, Any], *, demo: bool = False) -> int:
    async with connected(cfg) as bus:
        reply = await request(bus, verb, args)
        if reply is None:  # no engine: validate against the log and record it ourselves
            state = await load_state(bus)
            controls = Controls(bus, state, max_scale=cfg.swarm.max_scale)
            try:
                data = await controls.handle(verb, args)
            except ControlError as exc:
                raise SwarmError(str(exc)) from None
            hint = await other_engine_hint(cfg, demo=demo)
            print(
                _describe(verb, data) + f" (no engine running here: recorded on the bus, it acts when one starts{hint})"
            )
            return 0
    if not reply.ok:
        raise SwarmError(reply.error)
    print(_describe(verb, reply.data))
    return 0


def _describe(verb: str, data: dict[str, Any]) -> str:
    if verb in ("approve", "reject"):
        return f"decision {data.get('decision_id')} {data.get('status')}"
    if verb == "edit":
        return f"decision {data.get('decision_id')} now has {data.get('workers')} workers"
    if verb == "scale":
        return f"scale set to {data.get('scale')}"
    if verb == "ceiling":
        return f"daily spend ceiling set to ${float(data.get('ceiling_usd', 0)):.2f}"
    if verb in ("pause", "resume"):
        return "heartbeat paused" if data.get("paused") else "heartbeat resumed"
    if verb == "promote":
        who = f"{data.get('role') or 'worker'}, {data.get('model')}"
        return f"answer {data.get('job_id')} ({who}) is now the answer of task {data.get('task_id')}"
    if verb == "seen":
        return f"marked seen: {', '.join(data.get('seen', []))}"
    if verb == "cancel":
        n = len(data.get("workers", []))
        return f"cancelling {n} worker{'s' if n != 1 else ''} ({data.get('scope')})"
    return json.dumps(data)


# ---------------------------------------------------------------------------------------------- result
async def result_document(cfg: Config, task_id: str, fmt: str = "text") -> tuple[str, str, int]:
    """(task id, the document, how many results): as text, a Markdown document (``md``) or JSON."""
    async with connected(cfg) as bus:
        state = await load_state(bus)
    ids = [t for t in state.tasks if t == task_id or t.endswith(task_id)]
    if len(ids) != 1:
        raise SwarmError(f"no task {task_id}" if not ids else f"task id {task_id} is ambiguous")
    tv = state.tasks[ids[0]]
    results = state.task_results(tv.id)
    if fmt == "json":
        doc = json.dumps(
            {
                "task": tv.task.model_dump(),
                "state": tv.state,
                "reason": tv.reason,
                "promoted": tv.promoted or None,
                "promoted_by": tv.promoted_by or None,
                "results": [r.model_dump() for r in results],
            },
            indent=2,
        )
    elif fmt == "md":
        from swarm_tui.tui.results_doc import results_markdown  # no Textual in it

        doc = results_markdown(state, tv.id) or ""
    else:
        doc = _result_text(tv, results)
    return tv.id, doc.rstrip("\n") + "\n", len(results)


def result(cfg: Config, task_id: str, fmt: str = "text", *, out: str | None = None) -> int:
    """``swarm-tui result``: the document to standard output, or to the file ``out`` (one line says where)."""
    tid, doc, n = run_value(result_document(cfg, task_id, fmt))
    if out is None:
        sys.stdout.write(doc)
        return 0
    from swarm_tui.tui.results_doc import write_private  # no Textual in it

    path = Path(out).expanduser()
    try:
        write_private(path, doc)  # a file created here is 0600: the answers say what the task was about
    except OSError as exc:
        raise SwarmError(f"cannot write {plain(str(path))}: {exc.strerror or type(exc).__name__}") from None
    print(f"wrote {n} result{'s' if n != 1 else ''} of task {tid} to {plain(str(path))}")
    return 0


def _result_text(tv: TaskView, results: list[Result]) -> str:
    lines = [f"task {tv.id} ({tv.state}{': ' + plain(tv.reason) if tv.reason else ''})", plain(tv.task.text)]
    if not results:
        lines.append("\n(no results stored yet)")
    for r in results:
        cost = f"${r.cost_usd:.6f}" + (" (estimated)" if r.cost_estimated else "")
        lines.append(
            f"\n--- {plain(r.role) or 'worker'} step {r.step} · {plain(r.model)} · {r.state} · {cost}"
            + (f" · {plain(r.reason)}" if r.reason else "")
            + (" · demo" if r.demo else "")
            + f" · answer {r.job_id}"
            + (" · ★ promoted (the task's answer)" if r.job_id == tv.promoted else "")
        )
        lines.append(plain(r.text, keep_newlines=True))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- config
def show_config(cfg: Config, as_json: bool) -> int:
    masked = cfg.masked()
    if as_json:
        print(json.dumps({"source": cfg.source, "values": masked}, indent=2))
        return 0
    print(f"# effective configuration (file: {cfg.source}; environment variables win)")
    for k, v in masked.items():
        print(f"{k} = {json.dumps(v)}")
    return 0


def run(coro: Any) -> int:
    return int(asyncio.run(coro))


def run_value(coro: Any) -> Any:
    return asyncio.run(coro)

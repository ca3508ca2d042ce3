"""``swarm-tui status``: this process's bus connection, the log's projection and the running engine's parts,
as text or as JSON (``status --json``)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, TypedDict

from swarm_tui.cli.commands import connected, engine_info, load_state, other_engine_hint
from swarm_tui.engine.bus.topology import describe, one_line
from swarm_tui.engine.config.load import Config
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
from swarm_tui.engine.models import short_name
from swarm_tui.engine.projection.figures import state_words, worker_tokens
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import NeedKind
from swarm_tui.textsafe import plain

if TYPE_CHECKING:
    from swarm_tui.engine.history.usage import LogUsage


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
    log: dict[str, Any]  # the projection's events and last_seq, and the stream's figures (history.usage)
    engine: EngineMeta | None
    conductor: ConductorInfo | InfoError | None
    pool: PoolInfo | InfoError | None
    spend: SpendInfo | OfflineSpend | InfoError
    ram: RamInfo | RamSummary | InfoError
    lane: LaneInfo | InfoError | None
    needs_attention: list[Need]  # what needs a person now (engine/attention/needs.py), [] when nothing does


async def status_data(cfg: Config) -> StatusData:
    async with connected(cfg, read_only=True) as bus:
        state = await load_state(bus)
        info: EngineInfo = await engine_info(bus) or {}
        ledger = None
        base: float | None = None
        if not info.get("spend"):
            from swarm_tui.engine.guards.ceiling_kv import read_base
            from swarm_tui.engine.guards.spend import read_ledger

            ledger = await read_ledger(bus, cfg, state.clock())
            with contextlib.suppress(Exception):  # the last engine's ceiling, if readable: status prints without it
                base = await read_base(bus)
        from swarm_tui.engine.guards.reconcile_store import read_pending

        pending = await read_pending(bus)
        from swarm_tui.engine.history.usage import log_usage

        usage = await log_usage(bus)
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
    return assemble(cfg, state, info, bus_info, spend, ram, usage)


def assemble(
    cfg: Config,
    state: SwarmState,
    info: EngineInfo,
    bus_info: StatusBus,
    spend: SpendInfo | OfflineSpend | InfoError,
    ram: RamInfo | RamSummary | InfoError,
    usage: LogUsage | None = None,
) -> StatusData:
    """``status``'s data from a projection and what an engine reported (``info``; ``status --at`` has none), with
    the stream's own figures (``usage``: its size and oldest event now) when read."""
    from swarm_tui import __version__

    snap = state.snapshot()
    pool = usable(info.get("pool"))
    streamed = pool.get("tokens") if pool is not None else None
    if not isinstance(streamed, dict):  # another process's JSON: a tokens that is not a table counts nothing
        streamed = {}
    meta = info.get("engine")
    chunks = meta.get("streamed") if isinstance(meta, dict) else None  # any pool's, a standalone worker's too
    if not isinstance(chunks, dict):
        chunks = {}
    for w in snap["workers"]:  # a running worker's tokens since its last event: the pool's info, its chunks
        seen = max(_count(streamed.get(w["id"])), _count(chunks.get(w["id"])))
        w["tokens"] = worker_tokens(w["tokens"], seen)
    # no scale command yet: the scale the running engine's pool runs at, else this configuration's
    live = pool.get("scale") if pool is not None else None
    scale = state.scale_figure(live if _count(live) == live else cfg.swarm.scale)
    attention: AttentionInfo | None = usable(info.get("attention"))
    if attention is not None:
        needs_now = list(attention.get("needs", []))
    else:  # no engine tracks it: what the log tells, and the ceiling as the log and the ledger tell it
        from swarm_tui.engine.attention.needs import alert_level, needs, spend_reached

        now = state.clock()
        since: dict[NeedKind, float] = {"ceiling": now} if spend_reached(usable(spend)) else {}
        if alert_level(usable(spend), cfg.budget.alerts) is not None:
            since["spend"] = now
        told: EngineInfo = {"spend": spend}  # type: ignore[typeddict-item]
        needs_now = needs(state, told, since=since, now=now, levels=cfg.budget.alerts)
    return {
        "version": __version__,
        "bus": bus_info,
        "tasks": snap["tasks"],
        "task_counts": snap["task_counts"],
        "decisions": snap["decisions"],
        "workers": snap["workers"],
        "results": snap["results"],
        "spend_log": snap["spend_log"],
        "control": snap["control"] | {"scale": scale.value, "scale_source": scale.source},
        "log": snap["log"] | _stream_figures(usage),
        "engine": info.get("engine"),
        "conductor": info.get("conductor"),
        "pool": info.get("pool"),
        "spend": spend,
        "ram": ram,
        "lane": info.get("lane"),
        "needs_attention": needs_now,
    }


LOG_OWN = ("events", "last_seq")  # the projection's own: the events it applied, the last sequence it read


def _stream_figures(usage: LogUsage | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return {"stored": usage["events"]} | {k: v for k, v in usage.items() if k not in LOG_OWN}


def _count(v: object) -> int:
    """A count from another process's JSON (0 when it is not one)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _fmt_usd(v: Any) -> str:
    return "-" if v is None else f"${float(v):.4f}"


LIVE_SHOWN = 50


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _worker_line(w: dict[str, Any]) -> str:
    """A live worker as its card shows it: state, tokens and cost, model and role, why it waits; with its whole
    id (for ``cancel``) and its task."""
    role = f"  {plain(str(w['role']))}" if w.get("role") else ""
    reason = f"  {plain(str(w['reason'])).replace(chr(10), ' ')[:80]}" if w.get("reason") else ""
    return (
        f"  {w['id']}  {w['state']:<9} {w.get('tokens', 0)} tok {_fmt_usd(w.get('cost_usd'))}  "
        f"{plain(short_name(str(w.get('model', ''))))}{role}  task {w.get('task_id', '?')}{reason}"
    )


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
        lines.append(
            "conductor: "
            + ", ".join(f"{plain(str(k))}={plain(str(v))}" for k, v in cond.items() if not isinstance(v, dict | list))
        )
    lane = usable(d["lane"])
    if lane:
        waiting = [plain(str(w)) for w in lane.get("waiting", [])]
        lines.append(
            f"local lane: {plain(str(lane.get('holder') or 'free'))}"
            + (f" ({plain(str(lane.get('model')))[:40]})" if lane.get("holder") and lane.get("model") else "")
            + (f" (+{len(waiting)} waiting: {', '.join(waiting[:5])})" if waiting else "")
            + f", {lane.get('turns', 0)} turns so far"
        )
    counts = d["task_counts"]
    lines.append("tasks: " + (", ".join(f"{n} {state_words(s)}" for s, n in counts.items()) or "none"))
    for t in d["tasks"][-20:]:
        text = plain(t["text"]).replace("\n", " ")
        rnd = f" r{t['round']}" if t.get("round", 0) > 0 else ""
        chosen = f"  ★ answer {t['promoted']}" if t.get("promoted") else ""
        lines.append(f"  {t['id']}  p{t['priority']}  {t['state']:<17} {text[:60]}{rnd}{chosen}")
    pend = [x for x in d["decisions"] if x["status"] == "pending"]
    lines.append(f"decisions: {len(d['decisions'])} ({len(pend)} pending approval)")
    for x in pend[:10]:
        lines.append(
            f"  {x['id']}  {_n(x['workers'], 'worker')}  est {_fmt_usd(x['est_cost_usd'][0])}-"
            f"{_fmt_usd(x['est_cost_usd'][1])}  source {plain(x['source'])}"
        )
    live = [w for w in d["workers"] if w["state"] not in ("done", "failed", "cancelled")]
    lines.append(f"workers: {len(live)} live, {_n(d['results'], 'result')} stored")
    lines += [_worker_line(w) for w in live[:LIVE_SHOWN]]
    if len(live) > LIVE_SHOWN:
        lines.append(f"  (+{len(live) - LIVE_SHOWN} more: status --json lists them all)")
    pool = usable(d["pool"])
    if pool:
        line = f"pool: scale {pool.get('scale', '?')}, {pool.get('running', 0)} running, {pool.get('held', 0)} held"
        if pool.get("blocked"):
            what = "local jobs only" if pool.get("local_only") is True else "takes no jobs"
            line += f"; {what}: {plain(str(pool['blocked']))}"
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
        cap = sp.get("provider_cap")  # only with openrouter.management_key
        if cap:
            lines.append(plain(str(cap)))
        if sp.get("blocked_reason"):
            lines.append(f"cloud dispatch stopped: {plain(str(sp['blocked_reason']))}")
    if "max_bytes" in d["log"]:
        from swarm_tui.engine.history.usage import usage_line

        lines.append(f"log: {usage_line(d['log'] | {'events': d['log']['stored']})}")
    ram = usable(d["ram"])
    if ram:
        lines.append(
            f"ram: {ram.get('available_mb', '?')} MB available of {ram.get('total_mb', '?')} MB, "
            f"headroom {ram.get('headroom_mb', '?')} MB" + (" (LOW)" if ram.get("low") else "")
        )
    # every figure above came from the log or another process's JSON: none may move the cursor or retitle the
    # terminal, even one printed as a number (an engine of another version may send any text in its place)
    return "\n".join(plain(line) for line in lines)


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

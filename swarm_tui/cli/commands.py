"""The one-shot commands behind the CLI. Each returns an exit code; errors are SwarmError (one line)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, assert_never, cast

from nats.errors import Error as NatsError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedLease
from swarm_tui.engine.bus.wire import MAX_TEXT, Result, Task, new_id, task_text_problem
from swarm_tui.engine.config.load import Config, hide_login
from swarm_tui.engine.control_requests import ControlError, Controls, Verb, request
from swarm_tui.engine.errors import EXIT_FAILED, EXIT_USAGE, SwarmError, UsageError
from swarm_tui.engine.info import EngineInfo
from swarm_tui.engine.paths import data_dir
from swarm_tui.engine.projection.state import SwarmState, TaskView
from swarm_tui.textsafe import plain


@contextlib.asynccontextmanager
async def connected(cfg: Config, *, read_only: bool = False) -> AsyncIterator[Bus]:
    """A connected bus for one command. ``read_only`` (status, status --at, history, export-log): nothing on the
    bus is changed; only what is missing is created (a first run), as a worker does. Neither way changes the
    event log's limits: the engine's start alone does (docs/bus.md)."""
    bus = Bus(cfg)
    if read_only:
        from swarm_tui.engine.bus.readiness import missing_parts

        await bus.connect(setup=False)
        try:
            if not bus.leaf and await missing_parts(bus):
                await bus.setup()
        except BaseException:  # re-raised: any way out (a cancel too) closes the bus first
            await bus.close()
            raise
    else:
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
    except (NatsError, OSError, ValueError, RecursionError):  # no engine answers, or its answer is not JSON
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


# ---------------------------------------------------------------------------------------------- control
async def control(cfg: Config, verb: Verb, args: dict[str, Any], *, demo: bool = False) -> int:
    async with connected(cfg) as bus:
        reply = await request(bus, verb, args)
        if reply is None:  # no engine: validate against the log and record it ourselves
            state = await load_state(bus)
            controls = Controls(bus, state, max_scale=cfg.swarm.max_scale, task_max_usd=cfg.budget.task_max_usd)
            try:
                data = await controls.handle(verb, args)
            except ControlError as exc:
                raise SwarmError(str(exc), refusal_code(exc.kind)) from None
            hint = await other_engine_hint(cfg, demo=demo)
            print(
                _describe(verb, data) + f" (no engine running here: recorded on the bus, it acts when one starts{hint})"
            )
            return 0
    if not reply.ok:
        raise SwarmError(reply.error, refusal_code(reply.kind))
    print(_describe(verb, reply.data))
    return 0


def refusal_code(kind: str) -> int:
    """The exit code of a refused control request (``EXIT_CODES``): a bad value is bad usage, whoever found it;
    anything the state decided (no such id, no longer pending) is a refusal."""
    return EXIT_USAGE if kind in ("invalid", "unknown_verb") else EXIT_FAILED


def _describe(verb: Verb, data: dict[str, Any]) -> str:
    match verb:
        case "approve" | "reject":
            return f"decision {data.get('decision_id')} {data.get('status')}"
        case "edit":
            n = data.get("workers")
            return f"decision {data.get('decision_id')} now has {n} worker{'' if n == 1 else 's'}"
        case "scale":
            return f"scale set to {data.get('scale')}"
        case "ceiling":
            return f"daily spend ceiling set to ${float(data.get('ceiling_usd', 0)):.2f}"
        case "pause" | "resume":
            return "heartbeat paused" if data.get("paused") else "heartbeat resumed"
        case "promote":
            who = f"{data.get('role') or 'worker'}, {data.get('model')}"
            return f"answer {data.get('job_id')} ({who}) is now the answer of task {data.get('task_id')}"
        case "seen":
            return f"marked seen: {', '.join(data.get('seen', []))}"
        case "cancel":
            n = len(data.get("workers", []))
            return f"cancelling {n} worker{'s' if n != 1 else ''} ({data.get('scope')})"
        case _:
            assert_never(verb)


# ---------------------------------------------------------------------------------------------- result
async def result_document(cfg: Config, task_id: str, fmt: str = "text") -> tuple[str, str, int]:
    """(task id, the document, how many results): as text, a Markdown document (``md``) or JSON."""
    async with connected(cfg) as bus:
        state = await load_state(bus)
    tv = one_task(state, task_id)
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
        doc = _result_text(tv, results, _no_results(state, tv))
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


def one_task(state: SwarmState, ident: str) -> TaskView:
    """The task whose id is ``ident`` or ends with it; when none or several do, one line says which there are."""
    ids = [t for t in state.tasks if t == ident or t.endswith(ident)]
    if len(ids) == 1:
        return state.tasks[ids[0]]
    if not ids:
        raise SwarmError(f"no task {ident} (swarm-tui status lists the tasks)")
    shown = "; ".join(f"{t} {_snippet(state.tasks[t].task.text)}" for t in ids[:AMBIGUOUS_SHOWN])
    more = f"; +{len(ids) - AMBIGUOUS_SHOWN} more" if len(ids) > AMBIGUOUS_SHOWN else ""
    raise SwarmError(f"task id {ident} is ambiguous: {len(ids)} tasks match ({shown}{more}); give more of the id")


AMBIGUOUS_SHOWN = 5


def _snippet(text: str, limit: int = 40) -> str:
    one = " ".join(plain(text[: limit * 4]).split())
    return repr(one if len(one) <= limit else one[: limit - 1] + "…")


def _no_results(state: SwarmState, tv: TaskView) -> str:
    """Why a task has no stored result, from its state (its reason is on the line above): what happened, and
    what would make one."""
    pending = [d for d in tv.decisions if d in state.decisions and state.decisions[d].status == "pending"]
    match tv.state:
        case "rejected":
            return f"task {tv.id} was rejected: no worker ran"
        case "cancelled":
            return f"task {tv.id} was cancelled before any worker stored a result"
        case "failed":
            return f"task {tv.id} failed: no worker stored a result (status and the log say why)"
        case "awaiting_approval" | "awaiting_followup" if pending:
            return f"task {tv.id} waits for approval of decision {pending[-1]}: no worker has run yet " + (
                f"(swarm-tui approve {pending[-1]})"
            )
        case "pending" | "awaiting_approval" | "awaiting_followup":
            return f"task {tv.id} waits for the heartbeat to propose a decision: no worker has run yet"
        case "running":
            return f"task {tv.id} is running: no worker has stored a result yet (status lists its workers)"
        case "done":
            return f"task {tv.id} is done but no result is stored"
        case _:
            assert_never(tv.state)


def _result_text(tv: TaskView, results: list[Result], none: str) -> str:
    lines = [f"task {tv.id} ({tv.state}{': ' + plain(tv.reason) if tv.reason else ''})", plain(tv.task.text)]
    if not results:
        lines.append(f"\n({none})")
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
def config_places(cfg: Config) -> dict[str, str]:
    """Where this configuration reads and keeps things, resolved: the config file (read, or where it would be),
    the data dir, the log and the bus (an empty ``paths.data_dir`` or ``nats.url`` means a default place)."""
    from swarm_tui.engine.paths import config_path, log_path

    where = data_dir(cfg.paths.data_dir)
    return {
        "config_file": cfg.source if cfg.source != "defaults" else f"{config_path()} (not found: defaults apply)",
        "data_dir": str(where),
        "log_file": str(log_path(where)),
        "bus": hide_login(cfg.nats.url) or f"the embedded server of the data dir ({where / 'nats.json'})",
    }


def show_config(cfg: Config, as_json: bool) -> int:
    masked = cfg.masked()
    places = config_places(cfg)
    if as_json:
        print(json.dumps({"source": cfg.source, "resolved": places, "values": masked}, indent=2))
        return 0
    print("# effective configuration (environment variables win over the file)")
    for name, place in places.items():
        print(f"# {name.replace('_', ' ')}: {place}")
    for k, v in masked.items():
        note = f"  # {places['data_dir']}" if k == "paths.data_dir" and not v else ""
        print(f"{k} = {json.dumps(v)}{note}")
    return 0


def run(coro: Any) -> int:
    return int(asyncio.run(coro))


def run_value(coro: Any) -> Any:
    return asyncio.run(coro)

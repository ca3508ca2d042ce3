"""The command line: parse, load the configuration, call the engine or the app. Heavy imports stay lazy."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from functools import partial
from typing import Any

from swarm_tui import __version__
from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.errors import EXIT_INTERRUPTED, EXIT_PIPE, EXIT_USAGE, ConfigError, SwarmError, UsageError

log = logging.getLogger("swarm_tui")


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: ~/.config/swarm-tui/config.toml)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        default=argparse.SUPPRESS,
        help="offline demo: workers stream from a built-in loopback endpoint, no keys needed",
    )
    return p


def _priority(v: str) -> int:
    names = {"low": 2, "normal": 5, "high": 8}
    if v.lower() in names:
        return names[v.lower()]
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError("expected 0..9 or low, normal, high") from None
    if not 0 <= n <= 9:
        raise argparse.ArgumentTypeError("expected 0..9 or low, normal, high")
    return n


def _whole(v: str) -> int:
    """A whole number, its range checked after the config is read (the bound is swarm.max_scale)."""
    v = v.removeprefix("\0")  # an id's suffix where a count goes (``edit 3 -w2``): said as typed
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {v!r}") from None


def _nonneg_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {v!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("expected a number >= 0")
    return n


def _usd(v: str) -> float:
    try:
        f = float(v.lstrip("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got {v!r}") from None
    if not 0 <= f < CEILING_LIMIT_USD:
        raise argparse.ArgumentTypeError("expected an amount in USD >= 0")
    return f


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="swarm-tui",
        parents=[common],
        description="The control room of a hybrid LLM swarm: a local heartbeat model proposes, cheap cloud "
        "workers execute, NATS JetStream is the bus. With no command: the full-screen app.",
    )
    p.add_argument("--version", action="version", version=f"swarm-tui {__version__}")
    p.add_argument("--attach", metavar="URL", help="observe and control an engine running elsewhere (a NATS URL)")
    p.add_argument(
        "--refresh-ms",
        type=int,
        metavar="MS",
        help="screen refresh of streaming output (raise it on slow ssh links; default from ui.refresh_ms)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", parents=[common], help="run the engine (with --headless: no screen)")
    r.add_argument("--headless", action="store_true", help="the engine alone, until SIGINT/SIGTERM")

    s = sub.add_parser("submit", parents=[common], help="publish a task and print its id")
    s.add_argument("text", help="the task; '-' reads it from stdin")
    s.add_argument("--priority", "-p", type=_priority, default=5, help="0..9 or low/normal/high (default normal)")

    st = sub.add_parser("status", parents=[common], help="tasks, decisions, workers, spend, RAM, conductor")
    st.add_argument("--json", action="store_true", help="machine-readable output (shape in the README)")
    st.add_argument("--at", metavar="SEQ|TIME", help="the state just after that event: 12345, 2026-12-04T18:30, -15m")

    hi = sub.add_parser("history", parents=[common], help="past tasks, newest first: outcome, rounds, answers, cost")
    hi.add_argument("--json", action="store_true", help="a list of row objects (shape in the README)")
    hi.add_argument("--search", metavar="WORDS", help="tasks whose text or answers hold every one of these words")
    hi.add_argument("--since", metavar="TIME", help="tasks created since: 2026-12-04T18:30, -2h, or a log sequence")
    hi.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        help="done, failed, cancelled, ... (repeat it or give a comma list)",
    )

    sp = sub.add_parser("spend", parents=[common], help="where the money went: by model, role, task and day")
    sp.add_argument("--json", action="store_true", help="one object (shape in the README)")
    sp.add_argument("--days", metavar="N", help="the last N UTC days, today included (default 7)")

    a = sub.add_parser("approve", parents=[common], help="approve a pending decision")
    a.add_argument("id", help="decision id (or a unique suffix)")
    a.add_argument("--workers", type=_whole, help="approve with this many workers (0..swarm.max_scale)")
    rj = sub.add_parser("reject", parents=[common], help="reject a pending decision")
    rj.add_argument("id", help="decision id (or a unique suffix)")
    rj.add_argument("--reason", default="", help="why (kept in the log)")
    ed = sub.add_parser("edit", parents=[common], help="change the worker count of a pending decision")
    ed.add_argument("id", help="decision id (or a unique suffix)")
    ed.add_argument("workers", type=_whole, help="the new worker count (0..swarm.max_scale)")

    sc = sub.add_parser("scale", parents=[common], help="set the number of concurrent workers")
    sc.add_argument("n", type=_whole, help="concurrent workers, 0..swarm.max_scale (0 pauses dispatch)")

    c = sub.add_parser("cancel", parents=[common], help="cancel a worker, a decision's workers, or all")
    c.add_argument("worker", nargs="?", help="worker id (or a unique suffix)")
    c.add_argument("--decision", metavar="ID", help="cancel every worker of this decision")
    c.add_argument("--all", action="store_true", help="cancel every worker")

    sub.add_parser("pause", parents=[common], help="pause the heartbeat (no new decisions)")
    sub.add_parser("resume", parents=[common], help="resume the heartbeat")
    bd = sub.add_parser("budget", parents=[common], help="set the daily spend ceiling (USD) live")
    bd.add_argument("usd", type=_usd, help="the new ceiling in USD (overrides budget.daily_usd)")

    w = sub.add_parser("worker", parents=[common], help="a standalone worker process on the same NATS")
    w.add_argument("--concurrency", type=_nonneg_int, help="concurrent jobs (default: swarm.scale)")

    sub.add_parser(
        "doctor",
        parents=[common],
        help="check NATS, Ollama and its model, the OpenRouter key (with --demo: the demo endpoint), RAM",
    )
    it = sub.add_parser("init", parents=[common], help="write a configuration file (--local: no key, all on Ollama)")
    it.add_argument("--local", action="store_true", help="fully local: the heart and small Ollama roles, no key")
    it.add_argument("--force", action="store_true", help="overwrite an existing file")
    cf = sub.add_parser("config", parents=[common], help="print the effective configuration, secrets masked")
    cf.add_argument("--json", action="store_true")
    pr = sub.add_parser("promote", parents=[common], help="make one answer its task's answer (follow-ups build on it)")
    pr.add_argument("job", help="the answer's job id (or a unique suffix), as `swarm-tui result TASK` lists it")
    sn = sub.add_parser("seen", parents=[common], help="mark what needs you as seen (stops the badge and alerts)")
    sn.add_argument(
        "kinds", nargs="*", metavar="KIND", help="approval, failed, spend, ceiling, credit, key, bus (default: all)"
    )
    rs = sub.add_parser("result", parents=[common], help="print a task's results in order")
    rs.add_argument("task_id", help="task id (or a unique suffix)")
    rs.add_argument("--json", action="store_true", help="the same as --format json")
    rs.add_argument(
        "--format",
        choices=["text", "md", "json"],
        help="text (default), md (a Markdown document: the task as title, each result a section) or json",
    )
    rs.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    ex = sub.add_parser("export-log", parents=[common], help="write the event log (or one task's events) to a file")
    ex.add_argument(
        "--out", metavar="FILE", required=True, help="the file (JSON Lines, mode 0600; replay --file reads it)"
    )
    ex.add_argument("--task", metavar="ID", help="only this task's events (its id or a unique suffix)")
    ex.add_argument("--since", metavar="TIME", help="from this point: a log sequence number, an ISO 8601 time or -15m")
    ex.add_argument("--force", action="store_true", help="replace FILE if it exists")
    rp = sub.add_parser("replay", parents=[common], help="the full-screen app on the log's past, read-only")
    rp.add_argument(
        "--from",
        dest="start",
        metavar="TIME|SEQ",
        help="where to start: a log sequence number, an ISO 8601 time or -15m (default: the log's first event)",
    )
    rp.add_argument("--speed", metavar="X", help="times the log's own pace, 1..50 (default 1; + and - change it)")
    rp.add_argument("--file", metavar="FILE", help="replay a file export-log wrote, with no bus at all")
    return p


def _load(args: argparse.Namespace) -> Any:
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.logs import setup_logging
    from swarm_tui.engine.paths import data_dir, log_path

    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "demo", False):
        # The demo keeps its own store (and so its own tasks, results and spend) beside the real one.
        cfg = cfg.replace(paths__data_dir=str(data_dir(cfg.paths.data_dir) / "demo"))
    where = data_dir(cfg.paths.data_dir)
    try:
        setup_logging(log_path(where), cfg.log.level, cfg.secrets)
    except OSError as exc:  # a data dir under a file, a read-only disk: nothing can be kept there
        raise ConfigError(f"the data dir {where} cannot be used: {exc.strerror or exc} (paths.data_dir)") from None
    return cfg


def dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    demo = bool(getattr(args, "demo", False))
    if cmd == "init":  # before the config loads: it writes one (an old broken file is what --force replaces)
        from swarm_tui.cli.init import init_config

        return init_config(getattr(args, "config", None), local=args.local, force=args.force)
    cfg = _load(args)
    if cmd == "replay":
        from swarm_tui.cli.runner import run_replay

        return run_replay(cfg, start=args.start, speed=args.speed, file=args.file, demo=demo)
    if cmd in (None, "run", "worker"):
        return _long_running(args, cfg, demo)  # not through cmds: it imports nats-py before the first frame
    from swarm_tui.cli import commands as cmds

    if cmd == "config":
        return cmds.show_config(cfg, args.json)
    if cmd == "submit":
        text = cmds.read_task_text(args.text)
        return cmds.run(cmds.submit(cfg, text, args.priority, demo=demo))
    if cmd == "status":
        if args.at is not None:
            from swarm_tui.cli.status_at import status_at

            return cmds.run(status_at(cfg, args.json, args.at))
        from swarm_tui.cli.status import status

        return cmds.run(status(cfg, args.json, demo=demo))
    if cmd == "history":
        from swarm_tui.cli.history import history

        return cmds.run(history(cfg, as_json=args.json, search=args.search, since=args.since, states=args.state))
    if cmd == "spend":
        from swarm_tui.cli.spend import parse_days, spend
        from swarm_tui.engine.guards.spend_view import DEFAULT_DAYS

        return cmds.run(spend(cfg, as_json=args.json, days=parse_days(args.days, DEFAULT_DAYS)))
    if cmd == "result":
        if args.json and args.format not in (None, "json"):
            raise UsageError(f"--json and --format {args.format} disagree: give one of them")
        fmt = "json" if args.json else (args.format or "text")
        return cmds.result(cfg, args.task_id, fmt, out=args.out)
    if cmd == "export-log":
        from swarm_tui.cli.export import export_command

        return export_command(cfg, args.out, task=args.task, since=args.since, force=args.force)
    ctl = partial(cmds.control, cfg, demo=demo)
    if cmd == "promote":
        return cmds.run(ctl("promote", {"job": args.job}))
    if cmd == "seen":
        from swarm_tui.engine.states import NEED_KINDS

        bad = [k for k in args.kinds if k not in NEED_KINDS]
        if bad:
            raise UsageError(f"unknown kind {bad[0]!r}: use {', '.join(NEED_KINDS)}")
        return cmds.run(ctl("seen", {"kinds": args.kinds or list(NEED_KINDS)}))
    if cmd == "approve":
        _in_scale(args.workers, cfg, "--workers")
        extra = {"workers": args.workers} if args.workers is not None else {}
        return cmds.run(ctl("approve", {"id": _decision_id(args.id), **extra}))
    if cmd == "reject":
        return cmds.run(ctl("reject", {"id": _decision_id(args.id), "reason": args.reason}))
    if cmd == "edit":
        _in_scale(args.workers, cfg, "the worker count")
        return cmds.run(ctl("edit", {"id": _decision_id(args.id), "workers": args.workers}))
    if cmd == "scale":
        _in_scale(args.n, cfg, "scale")
        return cmds.run(ctl("scale", {"n": args.n}))
    if cmd == "cancel":
        chosen = sum(bool(x) for x in (args.worker, args.decision, args.all))
        if chosen != 1:
            raise UsageError("cancel takes exactly one of: WORKER_ID, --decision ID, --all")
        return cmds.run(ctl("cancel", {"worker": args.worker, "decision": args.decision, "all": args.all}))
    if cmd == "budget":
        return cmds.run(ctl("ceiling", {"usd": args.usd}))
    if cmd in ("pause", "resume"):
        return cmds.run(ctl(cmd, {}))
    if cmd == "doctor":
        from swarm_tui.cli.doctor import run_doctor

        checks = cmds.run_value(run_doctor(cfg, demo=demo))
        for ch in checks:
            print(ch.line())
        return 1 if any(not c.ok and c.required for c in checks) else 0
    return _long_running(args, cfg, demo)


def _in_scale(n: int | None, cfg: Any, what: str) -> None:
    """A scale or worker count out of its bounds is bad usage (exit 2) before anything is sent, in the words
    the control server would use (the same bound: swarm.max_scale)."""
    from swarm_tui.engine.config.options_swarm import scale_refusal

    if n is not None and (why := scale_refusal(n, cfg.swarm.max_scale, what)):
        raise UsageError(f"{why}, got {n}")


def _long_running(args: argparse.Namespace, cfg: Any, demo: bool) -> int:
    cmd = args.command
    if cmd == "worker":
        from swarm_tui.cli.runner import run_worker

        return run_worker(cfg, concurrency=args.concurrency, demo=demo)
    if cmd == "run" and args.headless:
        from swarm_tui.cli.runner import run_headless

        return run_headless(cfg, demo=demo)
    # the full-screen app (no command, or `run` without --headless)
    from swarm_tui.cli.runner import run_app

    return run_app(cfg, demo=demo, attach=getattr(args, "attach", None), refresh_ms=getattr(args, "refresh_ms", None))


# An id's suffix as a card or a list shows it (``-w2``, ``-j1``) reads to argparse as an unknown option. Where a
# command takes an id (``ID_COMMANDS``) such a word before ``--`` is marked as a value (argv can hold no NUL, so the
# mark is unambiguous) and unmarked after parsing: it stays in its place (``edit -w2 3``: id -w2, workers 3). A
# word that starts with '-' anywhere else is an option as usual: ``submit -w2`` is refused, not a task called
# "-w2" (``submit -- -w2`` is one). A worker's suffix given for a decision is refused in words (``_decision_id``).
ID_SUFFIX = re.compile(r"-[wj]\d+")
MARK = "\0"
ID_COMMANDS = frozenset({"promote", "cancel", "approve", "reject", "edit"})
ID_ARGS = ("id", "worker", "job")
_TAKES_VALUE = frozenset({"--config", "--attach", "--refresh-ms"})  # the top level's options with a value


def _command_at(argv: list[str]) -> int:
    """Where the command word is in argv (-1: none): the first word that is not an option or an option's value."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--" or not a.startswith("-"):
            return i if a != "--" else -1
        i += 2 if a in _TAKES_VALUE else 1
    return -1


def _ids_as_ids(argv: list[str]) -> list[str]:
    at = _command_at(argv)
    if at < 0 or argv[at] not in ID_COMMANDS:
        return argv
    end = argv.index("--") if "--" in argv[at:] else len(argv)
    return [MARK + a if at < i < end and ID_SUFFIX.fullmatch(a) else a for i, a in enumerate(argv)]


POINT_OPTIONS = ("--at", "--from", "--since")  # a point of the log: "-15m" is a value there, not an option


def _points_joined(argv: list[str]) -> list[str]:
    """``--since -15m`` as ``--since=-15m``: argparse takes a word starting with "-" for an option."""
    end = argv.index("--") if "--" in argv else len(argv)  # after it, words are words (a task's text)
    out: list[str] = []
    for a in argv[:end]:
        if out and out[-1] in POINT_OPTIONS and a.startswith("-") and a not in ("-", "--") and not a.startswith("--"):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out + argv[end:]


def _unmark(args: argparse.Namespace) -> argparse.Namespace:
    for name in ID_ARGS:
        v = getattr(args, name, None)
        if isinstance(v, str):
            setattr(args, name, v.removeprefix(MARK))
    return args


def _unknown_in_submit(argv: list[str]) -> str | None:
    """The first word of ``submit``'s that reads as an option it does not have (``submit -w2``), else None."""
    at = _command_at(argv)
    if at < 0 or argv[at] != "submit":
        return None
    probe = argparse.ArgumentParser(add_help=False, parents=[_common()], allow_abbrev=True)
    probe.add_argument("--priority", "-p")
    probe.add_argument("-h", "--help", action="store_true")
    probe.add_argument("text", nargs="*")
    try:
        _, extra = probe.parse_known_args(argv[at + 1 :])
    except SystemExit:  # argparse said why (an option without its value): the real parser says it again
        return None
    return next((a for a in extra if a.startswith("-") and a != "--"), None)


def _decision_id(ident: str) -> str:
    """A decision id as given, unless it is a worker's or a job's suffix (a decision id ends in hex digits)."""
    if ID_SUFFIX.fullmatch(ident):
        raise UsageError(
            f"{ident} is the end of a worker's or an answer's id, not a decision's: give the decision id "
            "(or its unique suffix) as `swarm-tui status` lists it"
        )
    return ident


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if (word := _unknown_in_submit(argv)) is not None:
        import shlex

        from swarm_tui.textsafe import plain

        word = plain(shlex.quote(word))  # a word with an escape sequence in it is shown, not played
        print(
            f"swarm-tui submit: error: no option {word}; a task that starts with '-' goes after --: "
            f"swarm-tui submit -- {word}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    args = _unmark(parser.parse_args(_ids_as_ids(_points_joined(argv))))
    try:
        code = dispatch(args)
        sys.stdout.flush()  # here, not at exit: a reader that left is then seen below, not by the interpreter
        return code
    except BrokenPipeError:
        return _reader_left()
    except SwarmError as exc:
        print(f"swarm-tui: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last stop: any error becomes one line and exit 1, never a traceback
        if logging.getLogger().handlers:  # before the log exists, logging's last resort would print a traceback
            log.exception("internal error")
        print(
            f"swarm-tui: internal error: {type(exc).__name__} (details in the log under the data dir)", file=sys.stderr
        )
        return 1


def _reader_left() -> int:
    """Standard output was closed before everything was written (``status | head -1``): stop quietly with
    128 + SIGPIPE, as cat, seq and git do. What is still buffered goes to /dev/null, or the interpreter would
    report the same broken pipe again at exit."""
    with contextlib.suppress(OSError, ValueError):  # no stdout to redirect: nothing is left to flush either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE

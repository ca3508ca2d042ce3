"""``swarm-tui export-log``: the bus's event log (all of it from a point, or one task's events) to a file.

What is written and how is ``engine.history.export``; this resolves the command's inputs (the task by a unique
suffix, ``--since`` by ``history.when``) against the log, without publishing anything, and says what it wrote.
"""

from __future__ import annotations

import time
from pathlib import Path

from swarm_tui.cli.commands import connected, one_task, run
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.export import export_log
from swarm_tui.engine.history.filelog import refuse_existing
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.when import Point, parse_point
from swarm_tui.textsafe import plain


def export_command(cfg: Config, out: str, *, task: str | None, since: str | None, force: bool) -> int:
    path = Path(out).expanduser()
    point = parse_point(since, now=time.time(), what="--since") if since is not None else None
    refuse_existing(path, force)  # before the bus: a refused --out costs nothing
    return run(_export(cfg, path, task=task, point=point, force=force))


async def _export(cfg: Config, path: Path, *, task: str | None, point: Point | None, force: bool) -> int:
    async with connected(cfg, read_only=True) as bus:
        log = BusLog(bus)
        start = 1
        if point is not None:
            start = point.seq if point.kind == "seq" else await log.seq_at(point.value)
        task_id = None
        if task is not None:  # the task as the log knows it (a fold: nothing set aside, nothing published)
            fold = await fold_to(log, (await log.bounds()).last_seq, max_scale=cfg.swarm.max_scale)
            task_id = one_task(fold.state, task).id
        secrets = cfg.secrets + url_logins(cfg)
        got = await export_log(log, path, start_seq=start, task_id=task_id, secrets=secrets, force=force)
    what = f"{got.count} event{'s' if got.count != 1 else ''}"
    where = f" (seq {got.first_seq}..{got.last_seq})" if got.count else ""
    of = f" of task {task_id}" if task_id else ""
    left = (
        f"; {got.skipped} stored message{'s' if got.skipped != 1 else ''} that are not events left out"
        if got.skipped
        else ""
    )
    print(f"exported {what}{of}{where} to {plain(str(path))}{left}")
    return 0


def url_logins(cfg: Config) -> list[str]:
    """The logins in the configured URLs (``nats://user:password@host``): masked like the secret options."""
    from swarm_tui.engine.config.options import OPTIONS

    out: list[str] = []
    for o in OPTIONS:
        for part in str(cfg.values[o.key]).split(",") if o.login else ():
            login = part.split("://", 1)[-1].rpartition("@")[0]
            out += [x for x in (login, login.partition(":")[2]) if len(x) >= 4]
    return out

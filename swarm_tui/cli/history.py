"""``swarm-tui history``: the past tasks, newest first, as lines or JSON. The log is folded as ``status --at``
folds it (``engine/history/fold.py``); nothing is published."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from swarm_tui.cli.commands import connected
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.timefmt import local_text
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import UsageError
from swarm_tui.engine.history.buslog import BusLog
from swarm_tui.engine.history.fold import Fold
from swarm_tui.engine.history.tasks import TASK_STATES, HistoryRow, history_rows
from swarm_tui.engine.history.when import parse_point
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import plain


def parse_states(given: Sequence[str] | None) -> set[str]:
    """``--state`` as given (repeated, or comma lists) as a set; a state no task can be in is bad usage."""
    out: set[str] = set()
    for part in given or ():
        for word in part.split(","):
            name = word.strip().lower().replace("-", "_").replace(" ", "_")
            if not name:
                continue
            if name not in TASK_STATES:
                raise UsageError(
                    f"--state {plain(word.strip())[:40]!r}: not a task state; use {', '.join(TASK_STATES)}"
                )
            out.add(name)
    return out


async def _load(cfg: Config) -> tuple[SwarmState, dict[str, int]]:
    """The log's projection, and the log position of each task's event (for ``--since SEQ``). Folded as
    ``status --at`` folds (``Fold``: what does not decode or is refused is counted, never set aside), so a look
    at the past publishes nothing; "now" is this machine's (a task still running has run until now)."""
    fold = Fold(max_scale=cfg.swarm.max_scale)
    task_seq: dict[str, int] = {}
    prefix = S.evt("task", "")
    async with connected(cfg, read_only=True) as bus:
        log = BusLog(bus)
        b = await log.bounds()
        if not b.empty:
            async for st in log.read(b.first_seq, b.last_seq):
                if fold.apply(st) and st.subject.startswith(prefix):
                    task_seq.setdefault(st.subject[len(prefix) :], st.seq)
    fold.state.clock = time.time
    return fold.state, task_seq


async def history(
    cfg: Config,
    *,
    as_json: bool,
    search: str | None,
    since: str | None,
    states: Sequence[str] | None,
    now: float | None = None,
) -> int:
    wanted = parse_states(states)
    point = parse_point(since, now=time.time() if now is None else now, what="--since") if since else None
    state, task_seq = await _load(cfg)
    since_t = point.value if point is not None and point.kind == "time" else None
    rows = history_rows(state, search=search, since=since_t, states=wanted)
    if point is not None and point.kind == "seq":  # the tasks whose event the log stored at or after that seq
        rows = [r for r in rows if task_seq.get(r.task_id, 0) >= point.seq]
    if as_json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no task in the log{_narrowed(search, since, wanted)}" if state.tasks else "no task in the log yet")
        return 0
    width = shutil.get_terminal_size((100, 24)).columns
    for r in rows:
        print(history_line(r, width))
    total = sum(r.cost_usd for r in rows)
    print(f"{len(rows)} task{'s' if len(rows) != 1 else ''}{_narrowed(search, since, wanted)}, ${total:.4f} in all")
    return 0


def _narrowed(search: str | None, since: str | None, states: set[str]) -> str:
    """What narrowed the list, as the count line and the "no task" line say it."""
    parts = []
    if search:
        parts.append(f"matching {plain(' '.join(search.split()))[:60]!r}")
    if since:
        parts.append(f"since {plain(since)[:40]}")
    if states:
        parts.append(" or ".join(s for s in TASK_STATES if s in states))
    return (" " + ", ".join(parts)) if parts else ""


def history_line(r: HistoryRow, width: int = 100) -> str:
    """One task on one line: id, state, rounds, answers (done/all), cost, duration, when it was created, the text
    cut to what the terminal leaves."""
    when = local_text(r.created, "%Y-%m-%d %H:%M")
    answers = f"{r.answers_done}/{r.answers} ans"
    state = r.state.replace("_", " ")
    head = (
        f"{r.task_id}  {state:<9} {r.rounds}r {answers:<9} ${r.cost_usd:.4f} {duration(r.duration_s):>6}"
        f"{'' if r.ended is not None else '+'}  {when}  "
    )
    text = r.text + (f" ({r.reason})" if r.reason else "")
    room = max(20, width - cell_len(head) - 1)  # terminal cells: a CJK character or an emoji takes two
    return head + (text if cell_len(text) <= room else set_cell_size(text, room - 1) + "…")


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"

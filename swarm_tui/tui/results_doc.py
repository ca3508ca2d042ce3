"""A task and its results as a Markdown document: `swarm-tui result ID --format md`, the results screen, the
saved file. No Textual here (the CLI imports it).

Everything from a model, a task or the bus goes through ``textsafe.plain`` first, so the document holds no
control character, escape sequence or bidi override whatever a model wrote.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.paths import PRIVATE_FILE, open_private
from swarm_tui.engine.projection.state import SwarmState, TaskView
from swarm_tui.textsafe import plain

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def close_fences(text: str) -> str:
    """``text`` with a code fence a model left open closed at its end, so it cannot swallow what follows."""
    opened = ""
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m is None:
            continue
        mark = m.group(1)
        if not opened:
            opened = mark
        elif mark[0] == opened[0] and len(mark) >= len(opened) and not line.strip()[len(mark) :].strip():
            opened = ""
    return text if not opened else f"{text.rstrip()}\n{opened}"


def answer_text(r: Result) -> str:
    """One answer as stored, made inert (what the copy key puts on the clipboard)."""
    return plain(r.text, keep_newlines=True)


def task_title(tv: TaskView, width: int = 80) -> str:
    first = plain(tv.task.text).strip()
    if len(first) > width:
        first = first[: width - 1].rstrip() + "…"
    return f"Task {tv.id}: {first}" if first else f"Task {tv.id}"


def result_heading(i: int, r: Result) -> str:
    return f"{i}. {plain(r.role) or 'worker'} · step {r.step} · {plain(r.model)}"


def result_facts(r: Result) -> list[tuple[str, str]]:
    """(name, value) of one result: model, role, tokens, cost, state, latency, why (when it failed)."""
    cost = f"${r.cost_usd:.6f}" + (" (estimated)" if r.cost_estimated else "")
    facts = [
        ("model", plain(r.model)),
        ("role", plain(r.role) or "worker"),
        ("tokens", f"{r.usage.prompt_tokens} in / {r.usage.completion_tokens} out"),
        ("cost", cost),
        ("state", r.state + (" (demo)" if r.demo else "")),
        ("latency", f"{max(0.0, r.ended_at - r.started_at):.1f} s"),
    ]
    if r.reason:
        facts.append(("reason", plain(r.reason)[:300]))
    return facts


def task_header_md(tv: TaskView) -> str:
    """The task's part of the document: its facts and its text as a quote."""
    lines = [
        f"- **state:** {tv.state}" + (f" ({plain(tv.reason)[:200]})" if tv.reason else ""),
        f"- **priority:** {tv.task.priority}",
        f"- **spent:** ${tv.spend_usd:.6f}",
        "",
    ]
    lines += ["> " + line if line else ">" for line in plain(tv.task.text, keep_newlines=True).splitlines()]
    return "\n".join(lines) + "\n"


PROMOTED_MD = "★ promoted (the task's answer)"


def result_md(i: int, r: Result, promoted: bool = False) -> str:
    facts = "\n".join(f"- **{k}:** {v}" for k, v in result_facts(r))
    body = close_fences(answer_text(r)).strip() or "*(no text)*"
    mark = f" · {PROMOTED_MD}" if promoted else ""
    return f"## {result_heading(i, r)}{mark}\n\n{facts}\n\n{body}\n"


def results_markdown(state: SwarmState, task_id: str) -> str | None:
    """The whole document (task as title, each result a section, in order; the promoted one marked in its
    heading, not moved, so the numbers match the results screen's); None for an unknown task."""
    tv = state.tasks.get(task_id)
    if tv is None:
        return None
    parts = [f"# {task_title(tv)}\n", task_header_md(tv)]
    results = state.task_results(tv.id)
    if not results:
        parts.append("*(no results stored yet)*\n")
    parts += [result_md(i, r, r.job_id == tv.promoted) for i, r in enumerate(results, 1)]
    return "\n".join(parts)


def write_private(path: Path, text: str, *, ours: bool = False) -> None:
    """Write ``text`` to ``path`` as a file only its owner can read (0600 whatever the umask) when it is created
    here: an answer says what the task was about. A file that was there keeps its mode, unless it is ``ours``
    (the data dir's exports/, where every file is the app's own, including one an older version left 0644)."""
    fd = open_private(path) if ours else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)

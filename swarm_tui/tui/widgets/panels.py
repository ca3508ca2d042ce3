"""The panels. Each renders state handed to it; none of them decides anything or talks to the bus.

Text that came from a model, a task or the bus goes through ``textsafe.plain`` (via ``one_line`` or the output
ring) and is put into ``rich.text.Text`` objects directly: it is never parsed as markup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable, Static

from swarm_tui.engine.bus.ids import FINAL_STATES
from swarm_tui.engine.info import AnySpend, ConductorInfo, EngineInfo, Need, RamSummary, usable
from swarm_tui.engine.projection.state import DecisionView, SwarmState, TaskView
from swarm_tui.textsafe import plain
from swarm_tui.tui.commands import shown_key
from swarm_tui.tui.model import OutputRing, fmt_age, fmt_mb, fmt_usd, one_line, short_id, short_model, sparkline

if TYPE_CHECKING:  # pydantic: imported with the engine, after the first frame
    from swarm_tui.engine.bus.wire import WorkerEvent

STATE_STYLE = {
    "pending": "yellow",
    "awaiting_approval": "bold yellow",
    "awaiting_followup": "yellow",
    "running": "cyan",
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "rejected": "dim red",
    "queued": "dim",
    "waiting": "yellow",
    "over_budget": "bold red",
    "retrying": "yellow",
    "approved": "green",
    "expired": "dim",
}


def bar(frac: float, width: int, *, mark: float | None = None, fill: str = "█", empty: str = "░") -> str:
    """A horizontal bar; ``mark`` (0..1) puts a ``│`` at that position (the headroom or ceiling line)."""
    width = max(1, width)
    frac = min(1.0, max(0.0, frac))
    n = int(round(frac * width))
    cells = [fill] * n + [empty] * (width - n)
    if mark is not None:
        i = min(width - 1, max(0, int(round(mark * width))))
        cells[i] = "│"
    return "".join(cells)


def spaced(words: list[tuple[str, str]]) -> Text:
    """Styled words on one line, a space between each two. The space ends the word before it: a styled run
    that starts with a space loses it in an SVG export drawn by librsvg (screenshots read ``running40 tok``)."""
    t = Text()
    for i, (word, style) in enumerate(words):
        t.append(word if i == len(words) - 1 else word + " ", style=style)
    return t


# --------------------------------------------------------------------------------------------- header
NEED_WORDS = {
    "approval": "approval",
    "failed": "failed job",
    "ceiling": "ceiling",
    "credit": "credit",
    "bus": "bus lost",
}


class HeaderBar(Static):
    """One line: bus, conductor, approval mode, scale, DEMO."""

    # The line as last built. show() runs with every state refresh and every second: only a changed line is
    # repainted, and never re-laid out (one line of a fixed height).
    line: var[Text] = var(Text, init=False)

    def watch_line(self, line: Text) -> None:
        self.update(line, layout=False)

    def show(
        self,
        *,
        bus_state: str,
        bus_kind: str,
        link_kind: str,
        info: EngineInfo,
        state: SwarmState,
        demo: bool,
        approval: str,
        engine_error: str = "",
        compact: bool = False,
        needs: list[Need] | None = None,
        needs_key: str = "!",
    ) -> None:
        args = (bus_state, bus_kind, link_kind, info, state, demo, approval, engine_error, needs or [], needs_key)
        line = self.build(*args, compact=compact)
        room = self.content_size.width
        if not compact and room and line.cell_len > room:  # too long: first without the bus's kind
            line = self.build(*args, bus_kind_shown=False)
            if line.cell_len > room:  # then the short words
                line = self.build(*args, compact=True)
        self.line = line

    @staticmethod
    def build(
        bus_state: str,
        bus_kind: str,
        link_kind: str,
        info: EngineInfo,
        state: SwarmState,
        demo: bool,
        approval: str,
        engine_error: str = "",
        needs: list[Need] | None = None,
        needs_key: str = "!",
        *,
        compact: bool = False,
        bus_kind_shown: bool = True,
    ) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        eng = info.get("engine")  # None until an engine answers
        cond = usable(info.get("conductor"))
        if demo or (eng and eng.get("demo")):
            t.append(" DEMO ", style="bold reverse magenta")
            t.append(" ")
        elif not compact and not needs:
            t.append(" swarm-tui ", style="bold reverse")
            t.append(" ")
        if needs:  # the badge: stays until someone sees it (the ! key, or `swarm-tui seen`)
            kinds = ", ".join(NEED_WORDS.get(n["kind"], n["kind"]) for n in needs)
            badge = f" ⚑ {len(needs)} " if compact else f" ⚑ needs you: {kinds} · {needs_key} "
            t.append(badge, style="bold reverse yellow")
            t.append(" ")
        ok = bus_state == "connected"
        t.append("● " if ok else "○ ", style="green" if ok else "bold red")
        if bus_kind_shown:
            t.append(f"bus {bus_state} " if not compact or not ok else "bus ", style="" if ok else "bold red")
            t.append(f"({bus_kind or '-'})", style="dim")
        else:
            t.append(f"bus {bus_state}", style="" if ok else "bold red")
        t.append(" │ ", style="dim")
        if engine_error:
            t.append(f"engine failed: {plain(engine_error)[:60]}", style="bold red")
        else:
            cstate = plain(str(cond.get("state", "-")))[:20] if cond else "-"
            t.append(f"{'' if compact else 'conductor '}{conductor_source(cond)}")
            if cstate != "idle":  # idle is the usual: only the other states are news
                t.append(f" · {cstate}")
            if state.paused:  # from the event log: the same for a local and an attached app
                t.append(" · PAUSED", style="bold yellow")
            else:
                nxt = cond.get("next_beat_s") if cond else None
                if nxt is not None:  # in steps of 5 s: the header is repainted every 5 s at rest, not every second
                    t.append(f" · {'' if compact else 'next beat '}{countdown(nxt)}")
        t.append(" │ ", style="dim")
        # the conductor's policy ("auto (<= $x)" says the limit); this app's configuration while none answers
        mode = plain(str((cond.get("approval") if cond else None) or approval))[:12]
        pending = len(state.pending_decisions())
        t.append((mode if compact else f"approval {mode}") + (" " if pending else ""))
        if pending:
            t.append(f"({pending} waiting)" if not compact else f"{pending}!", style="bold yellow")
        scale = state.scale
        t.append(" │ ", style="dim")
        t.append(f"scale {scale if scale is not None else '-'}")
        lane = usable(info.get("lane"))
        if lane and (lane.get("holder") or lane.get("waiting")):
            waiting = lane.get("waiting", [])
            t.append(" │ ", style="dim")
            t.append(f"{'lane' if compact else 'local lane'}: {plain(str(lane.get('holder') or 'free'))[:24]}")
            if waiting:
                t.append(f" (+{len(waiting)} waiting)", style="yellow")
        if link_kind == "remote engine":
            t.append(" │ ", style="dim")
            t.append(
                f"attached to {plain(str(eng.get('host', '?')))[:20]}" if eng else "attached: no engine answers",
                style="" if eng else "bold red",
            )
        return t


COUNTDOWN_STEP_S = 5


def countdown(seconds: float) -> str:
    """``"in 25s"``-style countdown rounded up to a step of 5 s ("≤25s"): a repaint per step, not per second."""
    left = max(0.0, float(seconds))
    if left <= 0:
        return "now"
    return f"≤{int(-(-left // COUNTDOWN_STEP_S)) * COUNTDOWN_STEP_S}s"


def conductor_source(cond: ConductorInfo | None) -> str:
    """What decides, as far as is known: the rules when Ollama did not answer, the model only once it did."""
    if not cond:
        return "-"
    source = plain(str(cond.get("source", "-")))[:28]
    if not cond.get("ollama_model"):  # the conductor does not ask Ollama
        return source
    reachable = cond.get("ollama_reachable")
    if reachable is False:
        return "rules (Ollama unreachable)"
    if reachable is None:
        return f"{source} (not checked yet)"
    return source


# --------------------------------------------------------------------------------------------- tables
def sync_table(table: DataTable[Any], rows: list[tuple[str, tuple[Any, ...]]], fit: int | None = None) -> None:
    """Bring a DataTable to these rows, keeping the cursor on the same key where it still exists.

    ``fit``: the column cut to the table's width (``fit_rows``). A DataTable's column only grows with its
    cells; when that column is wider than every cell it is to hold (the table got narrower, another column
    wider), the table is rebuilt with its columns measured afresh, so it never scrolls sideways."""
    keys = [k for k, _ in rows]
    current = [str(rk.value) for rk in table.rows]
    too_wide = fit is not None and bool(rows) and fit < len(table.ordered_columns)
    if too_wide:
        assert fit is not None
        col = table.ordered_columns[fit]
        need = max(cell_len(col.label.plain), *(cell_len(str(cells[fit])) for _, cells in rows))
        too_wide = col.content_width > need
    if keys == current and not too_wide:
        for key, cells in rows:
            old = table.get_row(key)
            for col_i, (a, b) in enumerate(zip(old, cells, strict=False)):
                was, now = str(a), str(b)
                if was != now:  # columns only grow: re-measure only a cell that got wider (it is costly)
                    table.update_cell(
                        key, table.ordered_columns[col_i].key, b, update_width=cell_len(now) > cell_len(was)
                    )
        return
    selected = None
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        selected = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
    if too_wide:
        columns = [(c.label, c.key.value) for c in table.ordered_columns]
        table.clear(columns=True)
        for label, ckey in columns:
            table.add_column(label, key=ckey)
    else:
        table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False, scroll=False)


def fit_rows(
    rows: list[tuple[str, tuple[Any, ...]]], flex: int, width: int, floor: Sequence[int] = (), padding: int = 1
) -> list[tuple[str, tuple[Any, ...]]]:
    """Cut the text of column ``flex`` so each row fits a table ``width`` cells wide: that column gets what the
    others leave. ``floor`` are the table's column widths now (a DataTable's columns only grow, so a column is
    as wide as the widest cell it ever held; ``sync_table(fit=...)`` narrows the cut one); a cut text ends with
    ``…``."""
    ncols = max((len(cells) for _, cells in rows), default=0)
    used = 0
    for i in range(ncols):
        if i != flex:
            w = max([floor[i] if i < len(floor) else 0, *(cell_len(str(cells[i])) for _, cells in rows)])
            used += w + 2 * padding
    room = max(4, width - used - 2 * padding)
    out = []
    for key, cells in rows:
        cell = cells[flex]
        text = cell if isinstance(cell, Text) else Text(str(cell))
        if cell_len(text.plain) > room:
            text = text.copy()
            text.truncate(room - 1)
            text.append("…")
        out.append((key, (*cells[:flex], text, *cells[flex + 1 :])))
    return out


def task_rows(
    state: SwarmState, now: float, flt: str, width: int = 120, limit: int = 300, floor: Sequence[int] = ()
) -> list[tuple[str, tuple[Any, ...]]]:
    """The Tasks table's rows; ``width`` is the table's (the text gets what the other columns leave)."""
    order = {"awaiting_approval": 0, "running": 1, "awaiting_followup": 1, "pending": 2}
    tasks: list[TaskView] = sorted(
        state.tasks.values(), key=lambda t: (order.get(t.state, 3), -t.task.priority, -t.task.created_at)
    )
    out: list[tuple[str, tuple[Any, ...]]] = []
    for tv in tasks:
        text = one_line(tv.task.text, 300)
        if flt and not _match(flt, tv.id, text, tv.state):
            continue
        out.append(
            (
                tv.id,
                (
                    Text(short_id(tv.id, 14), style="dim"),
                    fmt_age(now - tv.task.created_at),
                    str(tv.task.priority),
                    Text(tv.state.replace("_", " "), style=STATE_STYLE.get(tv.state, "")),
                    Text(text),
                ),
            )
        )
        if len(out) >= limit:
            break
    return fit_rows(out, 4, width, floor)


def decision_rows(
    state: SwarmState, flt: str, width: int = 60, limit: int = 200, floor: Sequence[int] = ()
) -> list[tuple[str, tuple[Any, ...]]]:
    """The Decisions table's rows; ``width`` is the table's: the estimated cost is shown whole, the plan gets
    what is left."""
    views = sorted(state.decisions.values(), key=lambda d: d.decision.created_at, reverse=True)
    out: list[tuple[str, tuple[Any, ...]]] = []
    for dv in views:
        d = dv.decision
        plan = plan_summary(dv)
        if flt and not _match(flt, dv.id, d.source, plan, dv.status):
            continue
        pending = dv.status == "pending"
        mark = Text(
            "▶ PENDING" if pending else dv.status,
            style=STATE_STYLE.get("awaiting_approval" if pending else dv.status, ""),
        )
        out.append(
            (
                dv.id,
                (
                    mark,
                    Text(short_id(dv.id, 10), style="dim"),
                    Text(f"{len(dv.plan)}: {plan}"),
                    f"≤{fmt_usd(d.est_cost_max)}",
                ),
            )
        )
        if len(out) >= limit:
            break
    return fit_rows(out, 2, width, floor)


def plan_summary(dv: DecisionView) -> str:
    counts: dict[str, int] = {}
    for p in dv.plan:
        m = short_model(p.model)
        counts[m] = counts.get(m, 0) + 1
    if not counts:
        return "no workers"
    return ", ".join(f"{n} × {one_line(m, 40)}" for m, n in counts.items())


def _match(flt: str, *fields: str) -> bool:
    f = flt.lower()
    return any(f in x.lower() for x in fields)


class DecisionDetail(Static):
    """The highlighted decision: plan, cost, source, reasons and clamps."""

    # The detail as last built. show() runs with every state refresh: only a changed text is repainted (and
    # re-laid out: the panel's height follows the text).
    detail: var[Text | None] = var(None, init=False)

    def __init__(self, *, keymap: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        k = partial(shown_key, keymap=keymap or {})  # the keys as remapped in the config's [keys]
        self.hint = (
            f"\n{k('approve')} approve · {k('reject')} reject · {k('edit')} edit workers · {k('expand')} details"
        )

    def watch_detail(self, detail: Text | None) -> None:
        self.update(detail or "")

    def show(self, dv: DecisionView | None, now: float) -> None:
        if dv is None:
            self.detail = Text("no decision yet: the heartbeat proposes one when tasks arrive", style="dim")
            return
        d = dv.decision
        t = Text()
        t.append(f"{dv.id}  ", style="bold")  # the space ends a run, not starts one: see spaced()
        t.append(f"{dv.status} ", style=STATE_STYLE.get(dv.status, ""))
        if dv.status == "pending":
            left = d.expires_at - now
            t.append(f"· expires in {fmt_age(left)}" if left > 0 else "· expiring", style="yellow")
            t.append(self.hint, style="dim")
        elif dv.by:
            t.append(f" by {one_line(dv.by, 32)}", style="dim")
        t.append("\nplan: ", style="dim")
        t.append(f"{len(dv.plan)} workers: {plan_summary(dv)}")
        if dv.workers is not None and dv.workers != len(d.plan):
            t.append(f" (edited from {len(d.plan)})", style="yellow")
        t.append("\ncost: ", style="dim")
        t.append(f"{fmt_usd(d.est_cost_min)} – {fmt_usd(d.est_cost_max)} (estimated)")
        t.append("  source: ", style="dim")
        t.append(one_line(d.source, 60))
        if d.latency_ms:
            t.append(f" · {d.latency_ms:.0f} ms", style="dim")
        if d.reason:
            t.append("\nwhy: ", style="dim")
            t.append(one_line(d.reason, 300))
        if d.error:
            t.append("\nmodel advice not used: ", style="yellow")
            t.append(one_line(d.error, 300))
        if d.warning:
            t.append("\nmodel call: ", style="yellow")
            t.append(one_line(d.warning, 300))
        for c in d.clamps[:6]:
            t.append("\nclamp ", style="yellow")
            t.append(one_line(c.what, 40) + " ", style="bold")
            if c.before is not None or c.after is not None:
                t.append(f"{one_line(str(c.before), 20)} → {one_line(str(c.after), 20)}")
            t.append(f": {one_line(c.reason, 200)}", style="dim")
        if len(d.clamps) > 6:
            t.append(f"\n… {len(d.clamps) - 6} more clamps (enter shows all)", style="dim")
        if d.raw:
            t.append("\nenter: the model's raw answer", style="dim")
        self.detail = t


def decision_full_text(dv: DecisionView) -> Text:
    d = dv.decision
    t = Text()
    t.append(f"decision {dv.id} ({dv.status})\n", style="bold")
    t.append(f"source {one_line(d.source, 80)}, round {d.round}, tasks {', '.join(d.task_ids)}\n")
    for p in dv.plan:
        t.append(
            f"  step {p.step} {one_line(p.role, 32)}: {one_line(p.model, 80)} "
            f"(max {p.max_tokens} tokens) for {p.task_id}\n"
        )
    for c in d.clamps:
        t.append(
            f"clamp {one_line(c.what, 64)}: {one_line(str(c.before), 40)} → {one_line(str(c.after), 40)}: "
            f"{one_line(c.reason, 500)}\n",
            style="yellow",
        )
    if d.error:
        t.append(f"model advice not used: {one_line(d.error, 2000)}\n", style="yellow")
    if d.warning:
        t.append(f"model call: {one_line(d.warning, 500)}\n", style="yellow")
    if d.reason:
        t.append(f"why: {one_line(d.reason, 2000)}\n")
    t.append("\nthe model's raw answer:\n", style="bold")
    t.append(plain(d.raw, keep_newlines=True) if d.raw else "(none: the rules decided alone)")
    return t


# --------------------------------------------------------------------------------------------- workers
class WorkerCard(Widget, can_focus=True):
    """One live worker: a header line and the latest lines of its output (a bounded ring)."""

    DEFAULT_CSS = """
    WorkerCard { height: 7; border: round $panel-lighten-2; padding: 0 1; text-wrap: nowrap; }
    WorkerCard:focus { border: round $accent; }
    WorkerCard.-final { border: round $panel; color: $text-muted; }
    """

    def __init__(self, worker_id: str, ring: OutputRing, ev: WorkerEvent, task_text: str) -> None:
        super().__init__(id="w_" + worker_id, classes="worker-card")
        self.worker_id = worker_id
        self.ring = ring
        self.ev = ev
        self.task_text = task_text
        self.border_title = short_id(worker_id, 22)

    def set_event(self, ev: WorkerEvent, task_text: str) -> None:
        if ev is not self.ev or task_text != self.task_text:
            self.ev, self.task_text = ev, task_text
            self.set_class(ev.state in FINAL_STATES, "-final")
            self.refresh()

    def render(self) -> Group:
        ev = self.ev
        width = max(10, self.content_size.width)
        height = max(1, self.content_size.height)
        tokens = max(ev.tokens, self.ring.tokens)
        words = [
            (ev.state, STATE_STYLE.get(ev.state, "")),
            (f"{tokens} tok {fmt_usd(ev.cost_usd)}", "dim"),
            (one_line(short_model(ev.model), 40), "bold"),
        ]
        if ev.role:
            words.append((one_line(ev.role, 12), "dim"))
        if ev.reason and ev.state != "running":
            words.append((one_line(ev.reason, 60), "yellow"))
        lines = [spaced(words), Text(one_line(self.task_text, width + 1), style="italic dim")]
        if self.ring.reasoning and not self.ring.size:  # the model thinks before it answers: dimmed
            lines += [Text(line, style="dim italic") for line in self.ring.reasoning_lines(width, height - 2)]
        else:
            lines += [Text(line) for line in self.ring.tail_lines(width, height - 2)]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
            line.no_wrap = True
        return Group(*lines)  # a Group keeps the output's indentation as it is


# --------------------------------------------------------------------------------------------- guards
class _TextPanel(Widget):
    """A panel whose ``show`` builds one Text (``render`` builds it again at the size it is drawn at).

    They are shown again every second: only a changed text is repainted, and re-laid out only when its number
    of lines changed (re-laying out on every show re-laid out the whole screen every second)."""

    shown: var[Text | None] = var(None, init=False)

    def watch_shown(self, old: Text | None, new: Text | None) -> None:
        lines = new.plain.count("\n") if new is not None else -1
        self.refresh(layout=old is None or old.plain.count("\n") != lines)


RAM_REDRAW_S = 30.0  # the RAM panel at rest: one redraw per this many seconds
RAM_STEP_MB = 100.0  # a move of available RAM this large is drawn at once


class RamPanel(_TextPanel):
    """A gauge of used/available RAM with the headroom line, a sparkline, and who uses what."""

    DEFAULT_CSS = "RamPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ram: RamSummary | None = None
        self.history: list[float] = []
        self._shown_at = float("-inf")
        self._drawn: tuple[float, bool, Any, tuple[str, ...]] | None = None  # the reading on screen

    def show(self, ram: RamSummary | None, history: list[float], now: float | None = None) -> None:
        """Redrawn at once when the reading moved (by RAM_STEP_MB available, the LOW state, the local models),
        else at most every RAM_REDRAW_S: at rest the panel costs the terminal ~50 B/s, not a redraw a sample."""
        now = time.monotonic() if now is None else now
        if not self._moved(ram) and now - self._shown_at < RAM_REDRAW_S:
            self.history = history  # kept for a redraw caused by something else (a resize)
            return
        self.ram, self.history, self._shown_at = ram, history, now
        self._drawn = None if ram is None else self._key_of(ram)
        self.shown = self.build(ram, history, self.content_size.width or 40)

    def _moved(self, ram: RamSummary | None) -> bool:
        """Whether this reading differs from the one on screen in what matters at a glance (a copy of it is
        kept in ``_drawn``: the reading may be the same dict, updated in place)."""
        key, old = (None if ram is None else self._key_of(ram)), self._drawn
        if old is None or key is None:
            return old != key
        return abs(key[0] - old[0]) >= RAM_STEP_MB or key[1:] != old[1:]

    @staticmethod
    def _key_of(ram: RamSummary) -> tuple[float, bool, Any, tuple[str, ...]]:
        names = tuple(str(m.get("name")) for m in ram.get("local_models", []))
        return float(ram.get("available_mb", 0)), bool(ram.get("low")), ram.get("headroom_mb"), names

    def render(self) -> Text:
        return self.build(self.ram, self.history, self.content_size.width or 40)

    @staticmethod
    def build(ram: RamSummary | None, history: list[float], width: int) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        w = max(10, width)
        total = ram.get("total_mb") if ram else None
        avail = ram.get("available_mb") if ram else None
        if not ram or not total or avail is None:
            t.append("no RAM reading", style="dim")
            return t
        headroom = ram.get("headroom_mb")
        used = total - avail
        low = ram.get("low", False) or (headroom is not None and avail < headroom)
        mark = (total - headroom) / total if headroom is not None else None
        t.append(bar(used / total, w, mark=mark), style="bold red" if low else "green")
        t.append("\n")
        t.append(f"used {fmt_mb(used)} · available {fmt_mb(avail)} of {fmt_mb(total)}")
        if headroom is not None:
            t.append(f"\nheadroom {fmt_mb(headroom)} (│)")
            if low:
                t.append("  LOW: local work waits", style="bold red")
        if history:
            t.append("\n")
            recent = history[-w:]
            lo, hi = min(recent), max(recent)
            if hi - lo < 256:  # a flat line for small wobbles, not a magnified one
                mid = (hi + lo) / 2
                lo, hi = mid - 128, mid + 128
            t.append(sparkline(history, w, lo=lo, hi=hi), style="cyan")
            t.append("\n")
            t.append(f"available {fmt_mb(min(recent))}–{fmt_mb(max(recent))}, last {len(recent)} readings", style="dim")
        own, kids = ram.get("own_rss_mb"), ram.get("children_rss_mb")
        models = ram.get("local_models", [])
        t.append("\n")
        t.append(f"this app {fmt_mb(own)}" + (f" + children {fmt_mb(kids)}" if kids else ""))
        if models:
            shares = [f"{one_line(str(m.get('name', '?')), 24)} {fmt_mb(m.get('size_mb'))}" for m in models[:3]]
            t.append("\nlocal models: " + ", ".join(shares))
        else:
            t.append(" · no local model loaded", style="dim")
        return t


class SpendPanel(_TextPanel):
    """Today and session spend against the ceiling, reserved money (attempts being reconciled included),
    per-model breakdown, the key's own limit, prices."""

    DEFAULT_CSS = "SpendPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spend: AnySpend | None = None

    def show(self, spend: AnySpend | None) -> None:
        self.spend = spend
        self.shown = self.build(spend, self.content_size.width or 40)

    def render(self) -> Text:
        return self.build(self.spend, self.content_size.width or 40)

    @staticmethod
    def build(spend: AnySpend | None, width: int) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        if not spend:
            t.append("no spend information", style="dim")
            return t
        w = max(10, width)
        ceiling = spend.get("ceiling_usd")
        today = spend.get("today_usd") or 0.0
        reserved = spend.get("reserved_usd") or 0.0
        session = spend.get("session_usd")
        frac = (today / ceiling) if ceiling else 0.0
        rfrac = ((today + reserved) / ceiling) if ceiling else 0.0
        style = "bold red" if rfrac >= 0.9 else "yellow" if rfrac >= 0.7 else "green"
        n_today = int(round(min(1.0, frac) * w))
        n_res = max(0, int(round(min(1.0, rfrac) * w)) - n_today)
        t.append("█" * n_today, style=style)
        t.append("▒" * n_res, style="yellow")
        t.append("░" * max(0, w - n_today - n_res), style="dim")
        t.append("\n")
        t.append(f"today {fmt_usd(today)} of {fmt_usd(ceiling, 2)}")
        if ceiling:
            t.append(f" ({frac * 100:.0f}%)", style=style)
        t.append(f" · reserved {fmt_usd(reserved)}")
        remaining = spend.get("remaining_usd")
        t.append(f"\nsession {fmt_usd(session)} · left {fmt_usd(remaining)}")
        if ceiling and rfrac >= 0.9:
            t.append("  NEARLY SPENT", style="bold red")
        n_rc, rc_usd = spend.get("reconciling") or 0, spend.get("reconciling_usd") or 0.0
        if n_rc:  # attempts whose cost OpenRouter has not told yet: their worst case stays reserved
            t.append(f"\nreconciling {n_rc} attempt{'s' if n_rc != 1 else ''}, {fmt_usd(rc_usd)} held", style="yellow")
        key_left = spend.get("credits_left_usd")  # the key's own limit (null: none), not the account's credit
        t.append(f"\nkey limit left {fmt_usd(key_left, 2) if key_left is not None else 'none'}")
        t.append("\nprices: ", style="dim")
        t.append(one_line(str(spend.get("price_source", "-")), 80), style="dim")
        items = sorted(spend.get("by_model", {}).items(), key=lambda kv: -kv[1])
        for model, usd in items[:4]:
            t.append(f"\n  {one_line(short_model(model), max(8, w - 12)):<{max(8, w - 12)}} {fmt_usd(usd)}")
        if len(items) > 4:
            t.append(f"\n  … {len(items) - 4} more models", style="dim")
        return t

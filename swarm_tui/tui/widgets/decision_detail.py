"""The highlighted decision under the Decisions table: its plan, cost, source, reasons and clamps."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from swarm_tui.engine.projection.state import DecisionView
from swarm_tui.tui.commands import shown_key
from swarm_tui.tui.model import fmt_age, fmt_usd, one_line, plural
from swarm_tui.tui.style import state_style
from swarm_tui.tui.widgets.table_fit import plan_summary

MERGE_STYLE = {"rules": "cyan", "model": "magenta", "user": "green"}


WHO = {"model": "model", "user": "you", "rules": "rules"}
NO_DECISION = "no decision yet: the heartbeat proposes one when tasks arrive"


class DecisionDetail(Static):
    """The highlighted decision: plan, cost, source, reasons and clamps."""

    # The decision shown. It is set with every state refresh, and a decision changes in place (approved,
    # edited), so every assignment builds the detail (always_update) ...
    decision: var[DecisionView | None] = var(None, init=False, always_update=True)
    # ... and only a changed text is repainted (and re-laid out: the panel's height follows the text).
    detail: var[Text | None] = var(None, init=False)

    def __init__(
        self, *, keymap: Mapping[str, str] | None = None, clock: Callable[[], float] = time.time, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.clock = clock  # wall time, for "expires in" (a fixed instant in the scenes)
        self.empty = ""  # what it says with no decision shown, when not NO_DECISION (set before ``decision``)
        k = partial(shown_key, keymap=keymap or {})  # the keys as remapped in the config's [keys]
        self.hint = (
            f"\n{k('approve')} approve · {k('reject')} reject · {k('edit')} edit workers · {k('expand')} details"
        )

    def watch_detail(self, detail: Text | None) -> None:
        self.update(detail or "")

    def watch_decision(self, dv: DecisionView | None) -> None:
        self.detail = self.build(dv, self.clock())

    def build(self, dv: DecisionView | None, now: float) -> Text:
        if dv is None:
            return Text(self.empty or NO_DECISION, style="dim")
        d = dv.decision
        t = Text()
        t.append(f"{dv.id}  ", style="bold")  # the space ends a run, not starts one: see style.spaced()
        t.append(f"{dv.status} ", style=state_style(dv.status))
        if dv.status == "pending":
            left = d.expires_at - now
            t.append(f"· expires in {fmt_age(left)}" if left > 0 else "· expiring", style="yellow")
            t.append(self.hint, style="dim")
        elif dv.by:
            t.append(f" by {one_line(dv.by, 32)}", style="dim")
        t.append("\nplan: ", style="dim")
        t.append(f"{plural(len(dv.plan), 'worker')}: {plan_summary(dv)}")
        if dv.workers is not None and dv.workers != len(d.plan):
            t.append(f" (edited from {len(d.plan)})", style="yellow")
        t.append("\ncost: ", style="dim")
        likely, worst = dv.estimate  # re-priced after an edit of the worker count
        t.append(f"{fmt_usd(likely)} – {fmt_usd(worst)} (estimated)")
        t.append("  source: ", style="dim")
        t.append(one_line(d.source, 60))
        if d.latency_ms:
            t.append(f" · {d.latency_ms:.0f} ms", style="dim")
        if d.reason:
            t.append("\nwhy: ", style="dim")
            t.append(one_line(d.reason, 300))
        if d.merge:  # whose word the plan follows; enter shows every reason
            t.append("\nmerge: ", style="dim")
            moved = [m for m in d.merge if m.kept != "rules"]
            for i, m in enumerate(moved[:4]):
                t.append(", " if i else "")
                t.append(f"{WHO[m.kept]} {one_line(m.what, 16)}", style=MERGE_STYLE[m.kept])
            held = len(d.merge) - len(moved)
            if held:
                t.append(f"{'; ' if moved else ''}{held} held by the rules", style=MERGE_STYLE["rules"])
        if d.examples:
            t.append("\nlearned from ", style="dim")
            t.append(f"{len(d.examples)} of your recent decisions")
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
            t.append(f"\n… {plural(len(d.clamps) - 6, 'more clamp')} (enter shows all)", style="dim")
        if d.raw or d.merge or d.examples:
            t.append("\nenter: every merge choice and the model's raw answer", style="dim")
        return t

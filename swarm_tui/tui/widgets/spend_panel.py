"""The Spend panel: today and the session against the ceiling, what is reserved, the key's limit, prices."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import var

from swarm_tui.engine.bus.numbers import finite
from swarm_tui.engine.info import AnySpend
from swarm_tui.tui.model import fmt_usd, one_line, plural, short_model
from swarm_tui.tui.widgets.text_panel import TextPanel

NOT_RECORDED = "not recorded in the log"
PLACEHOLDER_LINES = 5  # bar, today, session, key limit, prices: the first figures do not re-lay out the screen


class SpendPanel(TextPanel):
    """Today and session spend against the ceiling, reserved money (attempts being reconciled included),
    per-model breakdown, the key's own limit, prices."""

    DEFAULT_CSS = "SpendPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }"

    # The spend guard's summary. Set every second, often the same dict changed in place: every assignment
    # builds the text (always_update), which is repainted only when it changed.
    spend: var[AnySpend | None] = var(None, init=False, always_update=True)
    # No key and a local role configured: the swarm runs local only, the missing key is no fault (set before spend)
    local_only = False

    def watch_spend(self, spend: AnySpend | None) -> None:
        self.shown = self.build(spend, self.content_size.width or 40, local_only=self.local_only)

    def render(self) -> Text:
        return self.build(self.spend, self.content_size.width or 40, local_only=self.local_only)

    @staticmethod
    def build(spend: AnySpend | None, width: int, *, local_only: bool = False) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        if not spend:
            t.append("no spend information" + "\n" * (PLACEHOLDER_LINES - 1), style="dim")  # the settled height
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
        if ceiling and frac >= 1:  # what is spent passed the ceiling (a cost told later, a ceiling lowered)
            t.append("\nOVER CEILING: no cloud job starts (swarm-tui budget USD raises it)", style="bold red")
        elif ceiling and rfrac >= 0.9:
            t.append("  NEARLY SPENT", style="bold red")
        n_rc, rc_usd = spend.get("reconciling") or 0, spend.get("reconciling_usd") or 0.0
        if n_rc:  # attempts whose cost OpenRouter has not told yet: their worst case stays reserved
            t.append(f"\nreconciling {n_rc} attempt{'s' if n_rc != 1 else ''}, {fmt_usd(rc_usd)} held", style="yellow")
        key, style = key_line(spend, local_only=local_only)
        t.append(f"\n{key}", style=style)
        cap = str(spend.get("provider_cap") or "")  # only with openrouter.management_key
        if cap.startswith("provider cap not set"):  # the panel is narrow: why is in status and doctor
            t.append("\nprovider cap not set: own ceiling holds", style="yellow")
        elif cap:
            t.append(f"\n{one_line(cap, 60)}")
        t.append("\nprices: ", style="dim")
        t.append(one_line(str(spend.get("price_source", "-")), 80), style="dim")
        items = sorted(spend.get("by_model", {}).items(), key=lambda kv: -kv[1])
        for model, usd in items[:4]:
            t.append(f"\n  {one_line(short_model(model), max(8, w - 12)):<{max(8, w - 12)}} {fmt_usd(usd)}")
        if len(items) > 4:
            t.append(f"\n  … {plural(len(items) - 4, 'more model')}", style="dim")
        return t


def key_line(spend: AnySpend, *, local_only: bool = False) -> tuple[str, str]:
    """The key's own limit (``credits_left_usd``: null when it has none, or before a check), not the account's
    credit; a key OpenRouter rejects, or none, says so instead (no fault when the swarm runs local only)."""
    status = str(spend.get("key_status", ""))  # none in the log's figures (no spend guard reporting)
    left = spend.get("credits_left_usd")
    if status.startswith("rejected"):
        return f"key {one_line(status, 40)}: check OPENROUTER_API_KEY", "bold red"
    if spend.get("key_rejected") is True:  # a later check failed (a 5xx, unreachable): the key is still rejected
        return f"key rejected: check OPENROUTER_API_KEY (last check: {one_line(status, 40)})", "bold red"
    if left is not None:
        n = finite(left)
        return f"key limit left {fmt_usd(n, 2)}", "bold red" if n is not None and n <= 0 else ""
    if spend.get("demo"):  # the demo's workers use no key
        return "no key used (demo)", "dim"
    if status == "no key" and local_only:  # issue 28: the local roles need no key (the header says the same)
        return "no OpenRouter key: local roles only", "yellow"
    if status == "no key":
        return "no OpenRouter key (set OPENROUTER_API_KEY)", "bold red"
    if status == "ok":
        return "key has no limit", ""
    if status in ("", "not checked yet"):
        return "key limit not checked yet", "dim"
    if status == NOT_RECORDED:  # a replay: the key's limit then is not in the log
        return f"key limit {NOT_RECORDED}", "dim"
    return f"key limit not checked ({one_line(status, 40)})", "dim"

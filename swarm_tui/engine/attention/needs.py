"""What needs a person now, and when that changed: the one source of the bell, the desktop notification, the
header badge, ``status --json``'s ``needs_attention`` and ``notify.command``.

Seven kinds: a decision waits for approval, a job failed, spend passed an alert level (``budget.alerts``, 50% and
80% of the ceiling by default: the highest passed is the need, and passing a higher one rings again), spend
reached the daily ceiling, OpenRouter says the
key is out of credit (a 402, or the key's own limit used up), OpenRouter rejects the key (401/403: "key", its own
kind, not "credit": buying credit does not help; it alerts when ``notify.credit`` is on), the bus is lost.
``needs()`` reads them from the projection (approvals, failures) and from the engine's info (spend, credit, key)
and bus state; ``Attention`` remembers since when each holds and says, once per
transition, when a kind starts to need someone (debounced: a kind that keeps needing you rings again only after
a person has seen it, or after it cleared).

"Seen" is in the log (``ControlEvent(what="seen", target=kind)``), so the TUI, a second TUI and ``status`` agree:
a kind is unseen while its newest occurrence is later than the last time someone saw it. No Textual here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from swarm_tui.engine.info import EngineInfo, Need, SpendSummary, usable
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import NEED_KINDS, NeedKind
from swarm_tui.textsafe import plain

FAILED_WINDOW_S = 24 * 3600.0  # a failure older than a day no longer needs anyone, seen or not
CEILING_SLACK_USD = 1e-4  # within this of the ceiling no job can start: the cheapest call costs more
SUM_SLACK_USD = 1e-9  # a sum of float costs may land a hair under a level it reached
DEFAULT_ALERTS: tuple[float, ...] = (0.5, 0.8, 1.0)


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _usd(v: float) -> str:
    return f"${v:.4f}" if 0 < v < 0.01 else f"${v:.2f}"  # a demo's or a test's tiny ceiling still reads


def spent_of(spend: SpendSummary) -> tuple[float, float]:
    """Today's spend (the log's or the ledger's, whichever knows more) and the ceiling."""
    spent = max(float(spend.get("today_usd") or 0.0), float(spend.get("ledger_spent_usd", 0.0) or 0.0))  # type: ignore[arg-type]
    return spent, float(spend.get("ceiling_usd") or 0.0)


def spend_reached(spend: SpendSummary | None) -> bool:
    """Spend is at the daily ceiling (a ceiling of 0 is a choice, not news)."""
    if spend is None:
        return False
    spent, ceiling = spent_of(spend)
    return ceiling > 0 and spent >= ceiling - CEILING_SLACK_USD


def alert_level(spend: SpendSummary | None, levels: Iterable[float] = DEFAULT_ALERTS) -> float | None:
    """The highest alert level below the ceiling that today's spend has passed; None below them all and at the
    ceiling (that is the "ceiling" need). Midnight (UTC) and a raised ceiling lower it, so it rings again."""
    if spend is None or spend_reached(spend):
        return None
    spent, ceiling = spent_of(spend)
    # not the ceiling's slack (no call is that cheap): taken from a level of a tiny ceiling it rang at $0 spent
    passed = [a for a in levels if a < 1 and ceiling > 0 and spent > 0 and spent >= a * ceiling - SUM_SLACK_USD]
    return max(passed) if passed else None


def needs(
    state: SwarmState,
    info: EngineInfo,
    *,
    since: Mapping[NeedKind, float],
    now: float,
    seen: dict[str, float] | None = None,
    levels: Iterable[float] = DEFAULT_ALERTS,
) -> list[Need]:
    """What needs a person now. ``since``: when each info-derived kind (ceiling, credit, key, bus) began, as
    ``Attention`` tracks it; the log's kinds carry their own times. ``seen`` defaults to the log's marks."""
    marks = state.seen if seen is None else seen
    out: list[Need] = []

    def add(kind: NeedKind, what: str, first: float, latest: float, count: int = 1) -> None:
        out.append(
            {
                "kind": kind,
                "what": what,
                "since": round(first, 3),
                "latest": round(latest, 3),
                "count": count,
                "seen": latest <= marks.get(kind, 0.0),
            }
        )

    pending = state.pending_decisions()
    if pending:
        times = [d.decision.created_at for d in pending]
        n = len(pending)
        newest = max(pending, key=lambda d: d.decision.created_at)
        what = f"{n} {_plural(n, 'decision waits', 'decisions wait')} for approval (newest {newest.id})"
        add("approval", what, min(times), max(times), n)
    floor = max(marks.get("failed", 0.0), now - FAILED_WINDOW_S)
    failed = [r for r in state.results.values() if r.state == "failed" and r.ended_at > floor]
    if failed:
        last = max(failed, key=lambda r: r.ended_at)
        n = len(failed)
        why = f": {last.reason[:120]}" if last.reason else ""
        what = f"{n} {_plural(n, 'job', 'jobs')} failed (last {last.job_id}, {last.model}{why})"
        add("failed", what, min(r.ended_at for r in failed), last.ended_at, n)
    spend = usable(info.get("spend"))
    level = alert_level(spend, levels)
    if "spend" in since and level is not None and spend is not None:
        spent, ceiling = spent_of(spend)
        what = f"spend passed {level:.0%} of the daily ceiling ({_usd(spent)} of {_usd(ceiling)})"
        add("spend", what, since["spend"], since["spend"])
    if "ceiling" in since:
        amount = f" (${float(spend.get('ceiling_usd') or 0):.2f})" if spend is not None else ""
        what = f"spend reached the daily ceiling{amount}: no new cloud work today"
        add("ceiling", what, since["ceiling"], since["ceiling"])
    if "credit" in since:
        reason = str(spend.get("blocked_reason") or "") if spend is not None else ""
        add(
            "credit",
            f"out of credit: {reason[:160] or 'OpenRouter refused for lack of credit'}",
            since["credit"],
            since["credit"],
        )
    if "key" in since:
        reason = plain(str(spend.get("blocked_reason") or "")[:160]) if spend is not None else ""
        add(
            "key",
            reason if reason.startswith("key") else "the key is rejected: check OPENROUTER_API_KEY",
            since["key"],
            since["key"],
        )
    if "bus" in since:
        add(
            "bus",
            f"the bus is lost (since {time.strftime('%H:%M:%S', time.localtime(since['bus']))})",
            since["bus"],
            since["bus"],
        )
    return out


class Attention:
    """Tracks since when each kind holds and says which kinds just started to need someone.

    ``update`` returns the needs that rang: a kind enabled in ``kinds`` that is unseen now and was not unseen
    at the previous update. The first update after ``start`` is the baseline (what already waited when the
    engine or the app started rings no bell: the screen shows it), unless ``ring_on_start``.
    """

    def __init__(
        self,
        kinds: Iterable[NeedKind] = NEED_KINDS,
        *,
        bus_grace_s: float = 3.0,
        clock: Callable[[], float] = time.time,
        ring_on_start: bool = False,
        levels: Iterable[float] = DEFAULT_ALERTS,
    ) -> None:
        kinds = frozenset(kinds)
        self.kinds = kinds | {"key"} if "credit" in kinds else kinds  # a rejected key stops cloud work as credit does
        self.bus_grace_s = bus_grace_s
        self.levels = tuple(levels)
        self._level: float | None = None  # the spend alert level passed now
        self.clock = clock
        self.since: dict[NeedKind, float] = {}  # info-derived kinds that hold now -> since when
        self._bus_down: float | None = None
        self._ringing: set[NeedKind] = set()
        self._started = ring_on_start
        self.local_seen: dict[str, float] = {}  # marks made here before the log brings them back
        self.current: list[Need] = []
        self.alerts = 0

    def _hold(self, kind: NeedKind, on: bool, now: float) -> None:
        if on:
            self.since.setdefault(kind, now)
        else:
            self.since.pop(kind, None)

    def observe(self, info: EngineInfo, bus_state: str, now: float) -> None:
        """Fold in the engine's info and the bus state: when ceiling, credit and bus began or ended."""
        spend = usable(info.get("spend"))
        if spend is not None:  # no spend info (an engine not answering): keep what was known
            self._hold("ceiling", spend_reached(spend), now)
            self._spend_level(alert_level(spend, self.levels), now)
            rejected = spend.get("key_rejected") is True
            self._hold("credit", bool(spend.get("out_of_credit")) and not rejected, now)
            self._hold("key", rejected, now)
        if bus_state == "connected":
            self._bus_down = None
        elif self._bus_down is None:
            self._bus_down = now
        down = self._bus_down is not None and now - self._bus_down >= self.bus_grace_s
        if down and self._bus_down is not None:
            self.since.setdefault("bus", self._bus_down)
        elif not down:
            self.since.pop("bus", None)

    def _spend_level(self, level: float | None, now: float) -> None:
        """A higher level is news: it starts anew (unseen, and rings even if the lower one still rang). A lower
        one (the ceiling raised) keeps the need as it was; none (midnight, a ceiling raised well above) clears it,
        so the next pass rings again."""
        if level is None:
            self.since.pop("spend", None)
        elif self._level is None or level > self._level:
            self.since["spend"] = now
            self._ringing.discard("spend")
        self._level = level

    def seen_marks(self, state: SwarmState) -> dict[str, float]:
        marks = dict(state.seen)
        for k, at in self.local_seen.items():
            marks[k] = max(marks.get(k, 0.0), at)
        return marks

    def mark_seen(self, kinds: Iterable[NeedKind], at: float | None = None) -> None:
        """Someone looked here: the kinds stop ringing now (the log's mark follows when it lands)."""
        at = self.clock() if at is None else at
        kinds = set(kinds)
        for k in kinds:
            self.local_seen[k] = max(self.local_seen.get(k, 0.0), at)
        self._ringing -= kinds
        self.current = [{**n, "seen": True} if n["kind"] in kinds and n["latest"] <= at else n for n in self.current]

    def update(self, state: SwarmState, info: EngineInfo, bus_state: str) -> list[Need]:
        now = self.clock()
        self.observe(info, bus_state, now)
        marks = self.seen_marks(state)
        self.current = needs(state, info, since=self.since, now=now, seen=marks, levels=self.levels)
        ringing = {n["kind"] for n in self.current if not n["seen"] and n["kind"] in self.kinds}
        new = ringing - self._ringing
        self._ringing = ringing
        if not self._started:
            self._started = True
            return []
        rang = [n for n in self.current if n["kind"] in new]
        self.alerts += len(rang)
        return rang

    def unseen(self) -> list[Need]:
        """The enabled kinds nobody has seen yet (the header badge)."""
        return [n for n in self.current if not n["seen"] and n["kind"] in self.kinds]

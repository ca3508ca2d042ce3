"""What a reader of the event log believes: the trust boundary between the bus and the swarm's state.

NATS vouches for one thing about a message: the subject it was published on, which the publisher's permissions
allow or not (``contrib/nats/hub.conf``: a worker may publish on ``swarm.evt.worker.>``, not on
``swarm.evt.approval.>``). JetStream adds when it stored the message. Everything else is the publisher's word.
So an event is applied only when

- it is a log event published on its own subject (``event_subject(ev) == subject``): an ``approval`` on
  ``swarm.evt.worker.w1`` is a worker's login pretending to be a person;
- no time in it is later than when JetStream stored it plus ``CLOCK_SKEW_S``: a far-future ``at`` would win
  every "newest wins" comparison for good (a ceiling, a ``seen`` mark). The storage time, not the reader's
  clock, so a replay of an old log decides exactly as it did live;
- no time in it is negative or more than ``PAST_S`` (ten years) before its storing: no clock of this swarm
  gave it (-1e13 is the year -315,000);
- no cost in it (``cost_usd``) is ``CEILING_LIMIT_USD`` or more: no one job can cost what no daily ceiling may
  allow, and two entries of 1e308 would make every total after them infinite;
- a ceiling or a scale is in the range the control verbs allow (``engine/control_requests.py``).

Anything else is set aside as a dead letter with the reason (``swarm.dead.<kind>``, headers ``Swarm-Reason`` and
``Swarm-Subject``), counted with the malformed messages, and never reaches the state.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Protocol

from nats.js import JetStreamContext

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.bus.wire import Event, Msg, decode
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import InvalidMessage, Refusal

log = logging.getLogger(__name__)

# How far a time in an event may be ahead of when JetStream stored it. Hosts synced by NTP agree within
# milliseconds; a laptop whose clock is not synced drifts by seconds a day, and a minute ahead is common. Five
# minutes is the skew Kerberos tolerates by default and the events stream's duplicate window: a worker on a
# clock that far off is refused (and says so in the dead letters) rather than let a date decide the ceiling.
CLOCK_SKEW_S = 300.0
# How far a time in an event may be before when JetStream stored it. Every time the swarm publishes is its
# clock's now (a result's start: when its job began running; a spend entry reconciled late: when it was
# reconciled), so a real one is at most days old. The bound is far wider: it is there for dates no clock of
# this swarm gave (-1e13, a 1970 clock of a board without RTC), not to judge a slow clock; a date it lets through
# is harmless (it loses every "newest wins" comparison; times are shown clamped, ``engine/bus/timefmt.py``).
PAST_S = 3650 * 86400.0


# The field that names a log event on its subject: swarm.evt.<type>.<this field's value>
ID_FIELD = {
    "task": "id",
    "decision": "id",
    "approval": "decision_id",
    "worker": "worker_id",
    "result": "job_id",
    "spend": "id",
    "control": "what",
}


class DeadLetterBus(Protocol):
    """Where a dead letter is set aside: the bus's JetStream context, None while not connected."""

    @property
    def js(self) -> JetStreamContext | None: ...


class ReadingBus(DeadLetterBus, Protocol):
    """What ``read_event`` needs of the bus: its dead letters and its config (the largest scale allowed)."""

    @property
    def dead(self) -> DeadLetters: ...

    @property
    def cfg(self) -> Config: ...


def event_subject(m: Msg) -> str:
    """The one subject a log event belongs on: ``swarm.evt.<type>.<its id>``. KeyError for a job or a chunk."""
    kind = str(getattr(m, "type", ""))
    return S.evt(kind, str(getattr(m, ID_FIELD[kind])))


def refusal(subject: str, ev: Event, stored_at: float | None, *, max_scale: int) -> Refusal | None:
    """Why a decoded event read from ``subject`` must not be applied (None when it may be).

    ``stored_at``: when JetStream stored it (epoch seconds; None when unknown, then times are not checked)."""
    an = f"an {ev.type}" if ev.type[0] in "aeiou" else f"a {ev.type}"
    try:
        own = event_subject(ev)
    except KeyError:
        return Refusal(f"{an} is not a log event ({subject})")
    if own != subject:
        return Refusal(f"{an} on {subject} (its subject is {own})")
    for name, t in ev.times().items():
        if t < 0:
            return Refusal(f"{an} whose {name} is before 1970 ({t:g})")
        if stored_at is None:
            continue
        if t > stored_at + CLOCK_SKEW_S:
            ahead = t - stored_at
            return Refusal(f"{an} whose {name} is {ahead:.0f} s after it was stored (allowed: {CLOCK_SKEW_S:.0f} s)")
        if t < stored_at - PAST_S:
            days = (stored_at - t) / 86400
            return Refusal(f"{an} whose {name} is {days:.4g} days before it was stored (allowed: {PAST_S / 86400:.0f})")
    cost = getattr(ev, "cost_usd", None)
    if cost is not None and not cost < CEILING_LIMIT_USD:
        return Refusal(f"{an} costing {cost:g} USD (allowed: < {CEILING_LIMIT_USD:.0e}, the largest daily ceiling)")
    what = getattr(ev, "what", None)
    value = getattr(ev, "value", None)
    if what == "ceiling" and (value is None or not 0 <= value < CEILING_LIMIT_USD):
        return Refusal(f"a ceiling of {value} USD (allowed: 0 <= ceiling < {CEILING_LIMIT_USD:.0e})")
    if what == "scale" and (value is None or value != int(value) or not 0 <= value <= max_scale):
        return Refusal(f"a scale of {value} (allowed: a whole number 0..{max_scale}, swarm.max_scale)")
    return None


async def read_event(bus: ReadingBus, subject: str, data: bytes, stored_at: float | None, ident: str) -> Event | None:
    """A message of the event log as the state may apply it, or None: set aside with the reason."""
    try:
        ev = decode(data)
    except InvalidMessage as exc:
        await bus.dead.set_aside(bus, subject, data, str(exc), ident=ident)
        return None
    why = refusal(subject, ev, stored_at, max_scale=bus.cfg.swarm.max_scale)
    if why is not None:
        await bus.dead.set_aside(bus, subject, data, why, ident=ident)
        return None
    return ev


class DeadLetters:
    """Counts messages that did not decode or were refused, logs the first of each kind, and sets them aside."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._logged: set[str] = set()

    def kind_of(self, subject: str) -> str:
        parts = subject.split(".")
        return parts[2] if len(parts) > 2 else subject

    async def set_aside(
        self, bus: DeadLetterBus | None, subject: str, data: bytes, reason: str, ident: str = ""
    ) -> None:
        kind = self.kind_of(subject)
        self.counts[kind] += 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(
                "malformed message on %s set aside (%s); later ones of this kind are only counted",
                subject[:120],
                reason[:200],
            )
        if bus is not None and bus.js is not None:
            headers = {"Swarm-Reason": reason[:200], "Swarm-Subject": subject[:200]}
            if ident:
                headers["Nats-Msg-Id"] = ident
            with contextlib.suppress(Exception):  # a dead letter not stored is still counted and logged
                await bus.js.publish(S.dead(kind), data[:64_000], headers=headers, timeout=2)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

"""The daily ceiling as the bus holds it (KV bucket ``swarm_state``), for the processes that spend without a log.

- ``ceiling`` = {"usd", "at"}: the live override (``swarm-tui budget``), written with its ControlEvent by the
  engine's control verb (engine/control_requests.py);
- ``ceiling-base`` (``demo-ceiling-base`` in demo mode) = {"usd", "at"}: the ceiling the engine applies while no
  override is set, its configured ``budget.daily_usd``, published by its spend guard when it starts.

A process without the event log (``swarm-tui worker``) has no ceiling of its own: its configuration, on another
machine, may say anything (the default $1.00 where the engine was given $0.50). It reserves only under the
override, else the engine's base, as the engine itself does; while the bus holds neither, its jobs wait
(``NO_CEILING``). A worker's login cannot write this bucket (contrib/nats/hub.conf). The base has no date rank
against the override: as on the engine, an override in force wins whatever its date (the ranking of overrides
among themselves is the spend guard's, engine/guards/spend.py).
"""

from __future__ import annotations

import json
import logging
import math

from nats.js.errors import KeyNotFoundError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.ids import CEILING_LIMIT_USD
from swarm_tui.engine.config.load import Config

log = logging.getLogger(__name__)

OVERRIDE_KEY = "ceiling"
BASE_KEY = "ceiling-base"
NO_CEILING = (
    "no ceiling from an engine yet: a worker spends only under the daily ceiling its engine publishes on the bus "
    "(start the engine, or set one with `swarm-tui budget USD`)"
)


def base_key(demo: bool = False) -> str:
    return f"demo-{BASE_KEY}" if demo else BASE_KEY


def parse_ceiling(raw: bytes | None) -> tuple[float, float]:
    """(usd, at) of a stored ceiling; ValueError when it is unreadable or out of the budget verb's range."""
    try:
        doc = json.loads(raw or b"")
        v, at = float(doc["usd"]), float(doc.get("at", 0.0))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        raise ValueError("unreadable") from exc
    if not (math.isfinite(v) and 0 <= v < CEILING_LIMIT_USD and math.isfinite(at)):
        raise ValueError("out of range")
    return v, at


async def _read(bus: Bus, key: str) -> float | None:
    """The ceiling stored under ``key``; None when there is none or it cannot be believed. Bus trouble raises."""
    kv = await bus.kv(S.KV_STATE)
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    try:
        return parse_ceiling(entry.value)[0]
    except ValueError as exc:
        log.warning("the ceiling %s in %s is %s; ignoring it", key, S.KV_STATE, exc)
        return None


async def read_base(bus: Bus, *, demo: bool = False) -> float | None:
    """The engine's base ceiling on the bus, None when no engine published one (or it cannot be believed)."""
    return await _read(bus, base_key(demo))


async def publish_base(bus: Bus, usd: float, at: float, *, demo: bool = False) -> None:
    """An engine's configured ceiling, for the processes that spend without its log."""
    kv = await bus.kv(S.KV_STATE)
    await kv.put(base_key(demo), json.dumps({"usd": float(usd), "at": at}).encode())


async def ceiling_in_force(bus: Bus, cfg: Config) -> tuple[float | None, str]:
    """The ceiling a worker on this bus spends under and where it comes from (``doctor``, ``status`` with no
    engine): the override, else the engine's base; None when there is neither yet."""
    override = await _read(bus, OVERRIDE_KEY)
    if override is not None:
        return override, "the live override (`swarm-tui budget`)"
    base = await read_base(bus)
    own = cfg.budget.daily_usd
    if base is None:
        return None, f"no engine has published its ceiling on this bus yet (this config says ${own:.2f})"
    note = "" if math.isclose(base, own) else f"; this config's ${own:.2f} applies only to an engine started here"
    return base, f"the engine's budget.daily_usd, from the bus{note}"

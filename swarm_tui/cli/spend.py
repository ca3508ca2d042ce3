"""``swarm-tui spend``: where the money went over the last days, as lines or JSON. The log is read as ``status``
reads it; the price list is the running engine's, else the one cached on disk; nothing is published."""

from __future__ import annotations

import json

from swarm_tui.cli.commands import connected, engine_info, load_state
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.errors import UsageError
from swarm_tui.engine.guards.spend_view import MAX_DAYS, book_problem, info_problem, spend_lines, spend_view
from swarm_tui.engine.info import usable
from swarm_tui.textsafe import plain


def parse_days(raw: str | None, default: int) -> int:
    """``--days N``: 1..MAX_DAYS; anything else is bad usage (one line, exit 2)."""
    if raw is None:
        return default
    try:
        n = int(raw.strip())
    except ValueError:
        raise UsageError(f"--days {plain(raw)[:20]!r}: expected a whole number of days, 1..{MAX_DAYS}") from None
    if not 1 <= n <= MAX_DAYS:
        raise UsageError(f"--days {n}: expected 1..{MAX_DAYS} days")
    return n


async def spend(cfg: Config, *, as_json: bool, days: int) -> int:
    async with connected(cfg) as bus:
        state = await load_state(bus)
        info = await engine_info(bus) or {}
        from swarm_tui.engine.guards.reconcile_store import read_pending

        pending = await read_pending(bus)
    guard = usable(info.get("spend"))
    if guard is not None:
        problem = info_problem(guard)
    else:
        from swarm_tui.engine.guards.prices import PriceBook

        book = PriceBook(cfg.openrouter, cfg.paths, fetch=False)
        await book.load_cache()
        problem = book_problem(book)
    view = spend_view(state, state.clock(), days, pending=pending, problem=problem)
    if as_json:
        print(json.dumps(view, indent=2))
    else:
        print("\n".join(plain(line) for line in spend_lines(view)))
    return 0

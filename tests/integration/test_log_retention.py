"""The event log's limits come from ``log.max_age_days`` and ``log.max_bytes``; an existing stream is brought to
them when a process sets the bus up (``ensure_stream`` updates it)."""

from __future__ import annotations

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import Config


async def test_a_stream_made_with_one_limit_is_updated_to_the_new_one(cfg: Config) -> None:
    first = Bus(cfg.replace(log__max_age_days=30, log__max_bytes=64 * 1024 * 1024))
    await first.connect()
    try:
        made = (await first.jetstream.stream_info(S.EVENTS_STREAM)).config
        assert (made.max_age, made.max_bytes) == (30 * 86400.0, 64 * 1024 * 1024)
    finally:
        await first.close()
    second = Bus(cfg.replace(log__max_age_days=2, log__max_bytes=20_000_000))
    await second.connect()
    try:
        now = (await second.jetstream.stream_info(S.EVENTS_STREAM)).config
        assert (now.max_age, now.max_bytes) == (2 * 86400.0, 20_000_000)
    finally:
        await second.close()

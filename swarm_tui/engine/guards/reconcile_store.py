"""The attempt records of engine/guards/reconcile.py in the KV bucket ``swarm_reconcile``: reads, and writes
that are compare-and-set on a record's revision when the caller says which revision it read."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus

Record = dict[str, Any]


class RecordStore:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def kv(self) -> Any:
        return await self.bus.kv(S.KV_RECONCILE)

    async def keys(self) -> list[str]:
        try:
            return list(await (await self.kv()).keys())
        except NoKeysError:
            return []

    async def get(self, key: str) -> tuple[Record | None, int]:
        """The record and its revision; (None, 0) when there is none, (None, revision) when it is unreadable."""
        try:
            e = await (await self.kv()).get(key)
        except KeyNotFoundError:
            return None, 0
        try:
            doc = json.loads(e.value or b"")
        except (ValueError, RecursionError):  # a record a worker's login wrote badly: unreadable, never a crash
            return None, e.revision or 0
        return (doc if isinstance(doc, dict) else None), e.revision or 0

    async def revision(self, key: str) -> int | None:
        """The key's revision, None when it does not exist (or was deleted)."""
        try:
            e = await (await self.kv()).get(key)
        except KeyNotFoundError:
            return None
        return e.revision or 0

    async def put(self, key: str, doc: Record, last: int | None = None) -> int:
        """Write ``doc``; with ``last``, only over that revision. The new revision, 0 when another write won."""
        kv = await self.kv()
        try:
            if last is None:
                return int(await kv.put(key, json.dumps(doc).encode()) or 1)
            return int(await kv.update(key, json.dumps(doc).encode(), last=last) or 1)
        except KeyWrongLastSequenceError:
            return 0

    async def delete(self, key: str, last: int | None = None) -> bool:
        """Delete ``key``; with ``last``, only at that revision (False when another write won). Without it, purge
        and ignore errors (the record goes, or a scan finds it again: every step is repeatable)."""
        kv = await self.kv()
        if last is None:
            with contextlib.suppress(Exception):  # a record left is found again by a scan: every step repeats
                await kv.purge(key)
            return True
        try:
            await kv.delete(key, last=last)
        except KeyWrongLastSequenceError:
            return False
        return True


async def read_pending(bus: Bus) -> tuple[int, float]:
    """(attempts waiting for their cost, USD they hold) from the bucket, for ``status`` without an engine."""
    try:
        kv = await bus.kv(S.KV_RECONCILE)
        keys = await kv.keys()
    except Exception:  # noqa: BLE001 - no bucket or no keys
        return 0, 0.0
    n, usd = 0, 0.0
    for k in keys:
        if not k.startswith("a."):
            continue
        with contextlib.suppress(Exception):  # a record gone meanwhile or unreadable: not counted in a status
            doc = json.loads((await kv.get(k)).value or b"")
            if doc.get("state") in ("pending", "calling", "charging"):  # no engine: a "calling" one was cut off
                n += 1
                usd += float(doc.get("worst") or 0.0)
    return n, usd

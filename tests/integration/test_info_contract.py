"""The info contract (engine/info.py) against what a running engine really sends.

mypy checks each ``info()`` against its TypedDict, but not the whole: ``Engine.info()`` files each component's
info under the component's name at run time, and the JSON on the wire is what RemoteLink and ``status`` read.
So: a real engine (demo and not), asked over NATS like ``status`` asks it, must send for each part exactly the
keys of that part's TypedDict, with values of the declared types; and ``status --json`` must be ``StatusData``.
"""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from swarm_tui.cli.commands import connected, engine_info
from swarm_tui.cli.status import StatusData, status_data
from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Task
from swarm_tui.engine.info import (
    AttentionInfo,
    BusInfo,
    ConductorInfo,
    ControllerInfo,
    DemoInfo,
    EngineInfo,
    EngineMeta,
    EnvelopeSummary,
    LaneInfo,
    OfflineSpend,
    PoolInfo,
    RamInfo,
    RamSummary,
    ReconcileInfo,
    SpendInfo,
    usable,
)
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import make_config
from tests.support.polling import until, until_async


def shape_problems(value: Any, hint: Any, where: str = "info") -> list[str]:
    """What in ``value`` does not match the type ``hint`` (TypedDicts, unions, lists, dicts, scalars): [] if all."""
    origin = get_origin(hint)
    if hint is Any:
        return []
    if hint is None or hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{where}: {value!r} is not one of {get_args(hint)}"]
    if origin in (Union, types.UnionType):
        tries = [shape_problems(value, h, where) for h in get_args(hint)]
        return [] if any(not t for t in tries) else [f"{where}: matches no member of {hint}: {tries}"]
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a dict ({hint.__name__})"]
        hints = get_type_hints(hint)
        out = [f"{where}: {hint.__name__} lacks {k!r}" for k in sorted(hint.__required_keys__ - value.keys())]
        out += [f"{where}: {k!r} is not a key of {hint.__name__}" for k in sorted(value.keys() - hints.keys())]
        for k in sorted(value.keys() & hints.keys()):
            out += shape_problems(value[k], hints[k], f"{where}.{k}")
        return out
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, v in enumerate(value) for p in shape_problems(v, get_args(hint)[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a dict"]
        kt, vt = get_args(hint)
        return [
            p for k, v in value.items() for p in shape_problems(k, kt, where) + shape_problems(v, vt, f"{where}.{k}")
        ]
    if hint is float:  # JSON has one number type: 1536 is a fine float
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return [] if ok else [f"{where}: {value!r} is not a {getattr(hint, '__name__', hint)}"]


def test_the_checker_finds_what_does_not_match() -> None:
    good: LaneInfo = {"holder": "", "model": "", "since": None, "waiting": ["conductor"], "turns": 1}
    assert shape_problems(good, LaneInfo) == []
    assert shape_problems({**good, "since": "yesterday"}, LaneInfo)  # a wrong type
    assert shape_problems({k: v for k, v in good.items() if k != "turns"}, LaneInfo)  # a missing key
    assert shape_problems({**good, "paused": True}, LaneInfo)  # a key the contract does not have
    assert shape_problems({**good, "waiting": [1]}, LaneInfo)  # inside a list
    assert shape_problems({**good, "turns": True}, LaneInfo)  # a bool is not an int here


# the part each component files under its name in a running engine
PARTS: dict[str, Any] = {
    "engine": EngineMeta,
    "bus": BusInfo,
    "spend": SpendInfo,
    "ram": RamInfo,
    "lane": LaneInfo,
    "controller": ControllerInfo,
    "pool": PoolInfo,
    "conductor": ConductorInfo,
    "demo": DemoInfo,
    "attention": AttentionInfo,
}


@pytest.mark.parametrize("demo", [True, False])
async def test_a_running_engine_sends_the_typed_shape(tmp_path: Path, nats_server: EmbeddedServer, demo: bool) -> None:
    # nothing listens on the discard port: prices and Ollama are unreachable, as on a machine without them
    cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_BASE="http://127.0.0.1:9/api/v1")
    cfg = cfg.replace(heartbeat__debounce_s=0.05)
    bus = Bus(cfg)
    await bus.connect()
    engine = assemble(cfg, bus, demo=demo)
    await engine.start()
    try:
        task = Task(id="t-contract", text="check the info contract", created_at=time.time(), demo=demo)
        await bus.publish_event(task, msg_id=task.id)

        # one beat, so the conductor reports a real envelope (not the {} it has before its first beat)
        def beats() -> int:
            cond = usable(engine.info().get("conductor"))
            return cond["beats"] if cond else 0

        await until(lambda: beats() >= 1, 15, "a beat")
        async with connected(cfg) as observer:
            # read as plain JSON on purpose: shape_problems is what holds it to the types here
            info: Any = await until_async(lambda: engine_info(observer), 10, "the engine's info over NATS")
        expected = {k for k in PARTS if demo or k != "demo"}
        assert set(info) == expected
        assert shape_problems(info, EngineInfo) == []
        for name in expected:
            assert shape_problems(info[name], PARTS[name], name) == []
        assert shape_problems(info["conductor"]["envelope"], EnvelopeSummary, "envelope") == []
        assert shape_problems(info["pool"]["reconcile"], None if demo else ReconcileInfo, "pool.reconcile") == []

        data = await status_data(cfg)
        assert shape_problems(data, StatusData, "status") == []
        assert shape_problems(data["spend"], SpendInfo, "status.spend") == []
    finally:
        await engine.stop()


async def test_status_without_an_engine_is_status_data_too(cfg: Any) -> None:
    data = await status_data(cfg)
    assert data["engine"] is None and data["conductor"] is None and data["pool"] is None
    assert shape_problems(data, StatusData, "status") == []
    assert shape_problems(data["spend"], OfflineSpend, "status.spend") == []
    assert "reconciling" in data["spend"]  # status adds what the reconcile records hold
    assert shape_problems(data["ram"], RamSummary, "status.ram") == []
    # status --json prints the event log's projection key for key, between "bus" and "engine"
    keys = list(StatusData.__annotations__)
    assert keys[2:-7] == list(SwarmState().snapshot()) and list(data) == keys

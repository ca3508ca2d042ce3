"""nats_compat reaches into nats-py's private attributes: each one it names must exist on the installed classes,
and the installed nats-py must be the series it was written for. An upgrade of nats-py fails here, first."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport
from nats.js import JetStreamContext

from swarm_tui.engine.bus import nats_compat as compat


def test_the_installed_nats_py_is_the_supported_series() -> None:
    major, minor = (int(p) for p in version("nats-py").split(".")[:2])
    assert (major, minor) == compat.SUPPORTED


def test_the_pin_in_pyproject_is_the_supported_series() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    major, minor = compat.SUPPORTED
    assert f'"nats-py>={major}.{minor},<{major}.{minor + 1}"' in text


def missing(obj: object, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not hasattr(obj, n)]


def test_the_client_and_its_transport_have_what_compat_reads() -> None:
    assert missing(NATS(), compat.CLIENT_ATTRS) == []
    transport = TcpTransport()  # type: ignore[no-untyped-call]  # nats-py leaves its constructor unannotated
    assert missing(transport, compat.TRANSPORT_ATTRS) == []


def parts() -> tuple[NATS, JetStreamContext, Subscription]:
    nc = NATS()
    return nc, nc.jetstream(), Subscription(nc, 1, subject="s")


def test_subscriptions_have_what_compat_reads() -> None:
    nc, js, sub = parts()
    assert missing(sub, compat.SUBSCRIPTION_ATTRS) == []
    pull = JetStreamContext.PullSubscription(js, sub, "S", "c", b"inbox")
    assert missing(pull, compat.PULL_SUBSCRIPTION_ATTRS) == []
    push = JetStreamContext.PushSubscription(js, sub, "S", "c")
    assert missing(push, compat.PUSH_SUBSCRIPTION_ATTRS) == []
    assert missing(js, compat.JETSTREAM_ATTRS) == []  # the raw STREAM.INFO (first_ts, last_ts)


async def test_the_flow_control_state_has_what_compat_reads_and_is_replaced() -> None:
    nc, js, sub = parts()
    push = JetStreamContext.PushSubscription(js, sub, "S", "c")
    jsi = JetStreamContext._JSI(js, nc, "S", True, push, sub, None)  # type: ignore[arg-type]  # no config needed
    assert missing(jsi, compat.JSI_ATTRS) == []
    sub._jsi = jsi
    polling = asyncio.create_task(asyncio.sleep(3600), name="nats-py's poll")
    jsi._fctask = polling  # type: ignore[assignment]  # nats-py leaves it untyped (None until it starts one)
    compat.answer_flow_control_when_asked(push)
    task = compat.flow_control_task(push)
    try:
        await asyncio.sleep(0)
        assert polling.cancelled()
        assert task is not None and task.get_name() == "events-flow-control"
        compat.ask_flow_control(push, "fc.reply", after=2)
        assert (jsi._fcr, jsi._fcd) == ("fc.reply", 2)
        compat.count_delivered(push)
        assert jsi._fciseq == 1
    finally:
        assert task is not None
        task.cancel()


def test_take_parked_takes_every_parked_message_and_keeps_the_pending_size() -> None:
    nc, js, sub = parts()
    pull = JetStreamContext.PullSubscription(js, sub, "S", "c", b"inbox")
    msgs = [Msg(nc, subject="a", data=b"12345"), Msg(nc, subject="b", data=b"678")]
    for m in msgs:
        sub._pending_queue.put_nowait(m)
        sub._pending_size += len(m.data)
    assert compat.take_parked(pull) == msgs
    assert sub._pending_queue.empty() and sub._pending_size == 0
    assert compat.take_parked(pull) == []


def test_the_connection_helpers_on_a_client_that_never_connected() -> None:
    nc = NATS()
    assert compat.server_info(nc) == {} and compat.server_info(None) == {}
    assert compat.socket_writer(nc) is None
    compat.drop_pending(nc)
    compat.close_transport(nc)
    other: Any = object()
    assert compat.socket_writer(other) is None

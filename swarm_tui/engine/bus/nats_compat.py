"""The one module that reads or writes nats-py's private attributes; every other module asks it.

nats-py has no public way to read the server's INFO, to drop what it buffered for a server that turned out to be
a stranger, to find the socket under a connection, to take the messages a pull request left behind, or to
answer a push consumer's flow control without polling. Each of those is a function here, written for the
nats-py series ``pyproject.toml`` pins (``SUPPORTED``); ``tests/unit/test_nats_compat.py`` checks that every
attribute named here still exists on the installed classes, so an upgrade fails there and not in production.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

SUPPORTED: Final = (2, 16)  # the nats-py minor series whose private attributes this module was written for

# What each function below touches, by class (the compat test reads this)
CLIENT_ATTRS: Final = ("_server_info", "_pending", "_pending_data_size", "_transport")
TRANSPORT_ATTRS: Final = ("_io_writer",)
SUBSCRIPTION_ATTRS: Final = ("_pending_queue", "_pending_size", "_jsi")
PULL_SUBSCRIPTION_ATTRS: Final = ("_sub",)
PUSH_SUBSCRIPTION_ATTRS: Final = ("_sub", "_pending_queue")
JSI_ATTRS: Final = ("_fcr", "_fcd", "_fciseq", "_conn", "_fctask", "schedule_flow_control_response")
JETSTREAM_ATTRS: Final = ("_prefix", "_timeout", "_api_request")


# ---------------------------------------------------------------------------------------------- the connection
def server_info(nc: NATS | None) -> dict[str, Any]:
    """A copy of the INFO the connected server sent last (empty before the first one)."""
    return dict(getattr(nc, "_server_info", None) or {}) if nc is not None else {}


def drop_pending(nc: NATS) -> None:
    """Forget what nats-py buffered to send: it must go nowhere else."""
    nc._pending = []
    nc._pending_data_size = 0


def close_transport(nc: NATS) -> None:
    """Hang up the socket under the connection (nats-py then sees a closed link and reconnects or stops)."""
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):  # a transport already closed or half-built: nothing left to hang up
            transport.close()


def socket_writer(nc: NATS | None) -> asyncio.StreamWriter | None:
    """The stream writer of the connection's TCP socket (None before a connect, or on a websocket)."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    return writer if isinstance(writer, asyncio.StreamWriter) else None


# ---------------------------------------------------------------------------------------------- JetStream's API
async def stream_info_doc(js: JetStreamContext, name: str) -> dict[str, Any]:
    """The server's STREAM.INFO answer as JSON: its state keeps ``first_ts`` and ``last_ts``, which nats-py's
    ``StreamState`` drops. An error answer raises as ``stream_info`` does (``NotFoundError`` for no stream)."""
    doc: dict[str, Any] = await js._api_request(f"{js._prefix}.STREAM.INFO.{name}", b"", timeout=js._timeout)
    return doc


# ---------------------------------------------------------------------------------------------- pull subscriptions
def take_parked(psub: JetStreamContext.PullSubscription | None) -> list[Msg]:
    """Remove and return the messages parked in a pull subscription's queue (they arrived after the fetch that
    asked for them gave up), in arrival order, keeping nats-py's pending-size count right. Status messages of
    earlier pull requests are among them (a ``Status`` header): the caller skips those. No subscription (not
    bound yet): none."""
    sub = getattr(psub, "_sub", None)
    queue: asyncio.Queue[Msg] | None = getattr(sub, "_pending_queue", None)
    taken: list[Msg] = []
    while queue is not None and not queue.empty():
        m = queue.get_nowait()
        with contextlib.suppress(AttributeError, TypeError):  # no size kept, or a message without data
            sub._pending_size -= len(m.data)  # type: ignore[union-attr]  # sub holds the queue, so is not None
        taken.append(m)
    return taken


# ---------------------------------------------------------------------------------------------- flow control
def _jsi(psub: Any) -> Any:
    """nats-py's per-subscription JetStream state (``JetStreamContext._JSI``), or None."""
    return getattr(getattr(psub, "_sub", None), "_jsi", None)


def answer_flow_control_when_asked(psub: JetStreamContext.PushSubscription) -> None:
    """Replace nats-py's flow-control task, which wakes every 0.25 s for the consumer's whole life, with one that
    sleeps until the server asks for a flow-control reply, then answers it exactly as nats-py would (once the
    messages before it are handed to the callback, looking every 0.25 s). Another nats-py keeps its own."""
    jsi = _jsi(psub)
    polling = getattr(jsi, "_fctask", None)
    if jsi is None or not isinstance(polling, asyncio.Task) or not all(hasattr(jsi, a) for a in JSI_ATTRS):
        return
    asked = asyncio.Event()
    schedule = jsi.schedule_flow_control_response

    def schedule_and_wake(reply: str) -> None:
        schedule(reply)
        asked.set()

    async def answer() -> None:
        while True:
            await asked.wait()
            asked.clear()
            while jsi._fcr:
                if jsi._conn.is_closed:
                    return
                if jsi._fciseq - psub._pending_queue.qsize() >= jsi._fcd:  # nats-py's own test
                    with contextlib.suppress(Exception):  # a publish on a link going down: the server asks again
                        await jsi._conn.publish(jsi._fcr)
                    jsi._fcr, jsi._fcd = None, 0
                    break
                await asyncio.sleep(0.25)

    polling.cancel()
    jsi.schedule_flow_control_response = schedule_and_wake
    jsi._fctask = asyncio.create_task(answer(), name="events-flow-control")  # unsubscribe cancels it


def flow_control_task(psub: JetStreamContext.PushSubscription) -> asyncio.Task[None] | None:
    """The task that answers the subscription's flow control (ours once ``answer_flow_control_when_asked`` ran)."""
    task = getattr(_jsi(psub), "_fctask", None)
    return task if isinstance(task, asyncio.Task) else None


def ask_flow_control(psub: JetStreamContext.PushSubscription, reply: str, *, after: int = 0) -> None:
    """What the server does: ask for a flow-control reply on ``reply`` once ``after`` more messages than those
    delivered so far have been handed over (tests use it; the server's requests go the same way)."""
    jsi = _jsi(psub)
    jsi.schedule_flow_control_response(reply)
    jsi._fcd = jsi._fciseq + after


def count_delivered(psub: JetStreamContext.PushSubscription, n: int = 1) -> None:
    """Count ``n`` more messages as delivered to the subscription, as nats-py does for each one it receives."""
    _jsi(psub)._fciseq += n

"""nats-py's private parts the swarm relies on, in one place (nats-py 2.16).

``take_parked``: a pull subscription's ``fetch`` that gives up leaves the messages delivered after it in the
subscription's pending queue, where nobody would read them: the pool takes them out, keeping nats-py's count
of pending bytes (its slow-consumer limit) in step.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nats.aio.msg import Msg


def take_parked(psub: Any) -> list[Msg]:
    """Remove and return the messages parked in a pull subscription's pending queue (none when nats-py moved)."""
    sub = getattr(psub, "_sub", None)
    queue = getattr(sub, "_pending_queue", None)
    out: list[Msg] = []
    while queue is not None and not queue.empty():
        m = queue.get_nowait()
        with contextlib.suppress(AttributeError, TypeError):  # a nats-py without the count: none to keep in step
            sub._pending_size -= len(m.data)  # type: ignore[union-attr]
        out.append(m)
    return out

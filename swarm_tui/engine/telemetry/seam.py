"""Traces, opt-in: OpenTelemetry spans of tasks, heartbeat decisions, jobs and provider calls (docs/observability.md).

``seam`` is what the engine's hooks call: ``tracer()`` is a ``Noop`` (every method does nothing) until
``enable`` installs the real one (``telemetry/otel.py``). Nothing of OpenTelemetry is imported here: a swarm
without an endpoint never loads it (tests/unit/test_telemetry_off.py). Tracing is on when ``[otel] endpoint`` or
the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, and
``OTEL_SDK_DISABLED`` is not ``true``; the other ``OTEL_*`` variables are the SDK's own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(endpoint: str, env: Mapping[str, str] = os.environ) -> bool:
    """Whether traces are exported: an endpoint configured, and the SDK not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(endpoint.strip() or any(env.get(k, "").strip() for k in ENDPOINT_ENV))


class NoSpan:
    """What a hook holds when tracing is off: every call does nothing."""

    def job_done(self, run: Any) -> None:
        pass

    def chat_done(self, run: Any, *, error: BaseException | None) -> None:
        pass


NO_SPAN = NoSpan()


class JobSpanP(Protocol):
    def job_done(self, run: Any) -> None: ...


class ChatSpanP(Protocol):
    def chat_done(self, run: Any, *, error: BaseException | None) -> None: ...


class TracerP(Protocol):
    """What the hooks call: the ``Noop`` or ``otel.Tracer``."""

    on: bool
    closed: bool

    def job(self, job: Any) -> contextlib.AbstractContextManager[JobSpanP]: ...

    def chat(self, run: Any, model: str, provider: str) -> ChatSpanP: ...

    def decision(self, decision: Any, tokens: tuple[int, int]) -> None: ...

    def close(self, timeout: float = ...) -> None: ...


class Noop:
    """The tracer while tracing is off."""

    on = False
    closed = False

    @contextlib.contextmanager
    def job(self, job: Any) -> Iterator[NoSpan]:
        yield NO_SPAN

    def chat(self, run: Any, model: str, provider: str) -> NoSpan:
        return NO_SPAN

    def decision(self, decision: Any, tokens: tuple[int, int]) -> None:
        pass

    def close(self, timeout: float = 0.0) -> None:
        pass


_tracer: TracerP = Noop()


def tracer() -> TracerP:
    """The live tracer (``otel.Tracer``) or the ``Noop``: the hooks call it without knowing which."""
    return _tracer


def enable(endpoint: str) -> TracerP:
    """Install the OpenTelemetry tracer (once per process) and return it; the caller checked ``wanted``."""
    global _tracer
    if not _tracer.on or _tracer.closed:  # closed: an engine of this process stopped, another starts
        from swarm_tui.engine.telemetry.otel import Tracer

        _tracer = Tracer.create(endpoint, env_endpoint=any(os.environ.get(k, "").strip() for k in ENDPOINT_ENV))
    return _tracer


def disable() -> None:
    """Back to the ``Noop``, the live tracer's last spans sent (tests)."""
    global _tracer
    if _tracer.on:
        _tracer.close()
    _tracer = Noop()

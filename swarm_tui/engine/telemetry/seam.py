"""Traces, opt-in: OpenTelemetry spans of tasks, heartbeat decisions, jobs and provider calls (docs/observability.md).

``seam`` is what the engine's hooks call: ``tracer()`` is a ``Noop`` (every method does nothing) until
``enable`` installs the real one (``telemetry/otel.py``). Nothing of OpenTelemetry is imported here: a swarm
without an endpoint never loads it (tests/unit/test_telemetry_off.py). Tracing is on when ``[otel] endpoint`` or
the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
``OTEL_SDK_DISABLED`` is not ``true`` and ``OTEL_TRACES_EXPORTER`` (if set) names ``otlp`` (``none``: off); the
other ``OTEL_*`` variables are the SDK's own. Without the ``otel`` extra installed an endpoint is one warning line
and no traces, never a failed start (the variable is often set for a whole shell).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)
ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
MISSING_EXTRA = (
    "traces are off: an OTLP endpoint is set but the otel extra is not installed (pip install 'swarm-tui[otel]')"
)


def wanted(endpoint: str, env: Mapping[str, str] = os.environ) -> bool:
    """Whether traces are exported: an endpoint configured, the SDK not disabled, and the trace exporters
    (``OTEL_TRACES_EXPORTER``, a comma-separated list; unset means ``otlp``) include ``otlp``, the only one we have."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if exporters and "otlp" not in exporters:  # "none" (or only exporters we do not ship): off for this program
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
_warned = False  # the missing extra is said once per process


def tracer() -> TracerP:
    """The live tracer (``otel.Tracer``) or the ``Noop``: the hooks call it without knowing which."""
    return _tracer


def enable(endpoint: str) -> TracerP:
    """Install the OpenTelemetry tracer (once per process) and return it; the caller checked ``wanted``.
    Without the otel extra: the ``Noop`` (``on`` false) and one warning line."""
    global _tracer, _warned
    if not _tracer.on or _tracer.closed:  # closed: an engine of this process stopped, another starts
        try:
            from swarm_tui.engine.telemetry.otel import Tracer
        except ImportError:
            if not _warned:
                _warned = True
                log.warning(MISSING_EXTRA)
            _tracer = Noop()
            return _tracer
        _tracer = Tracer.create(endpoint, env_endpoint=any(os.environ.get(k, "").strip() for k in ENDPOINT_ENV))
    return _tracer


def disable() -> None:
    """Back to the ``Noop``, the live tracer's last spans sent (tests)."""
    global _tracer
    if _tracer.on:
        _tracer.close()
    _tracer = Noop()

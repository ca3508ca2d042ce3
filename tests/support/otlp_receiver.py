"""A real OTLP/HTTP trace receiver on 127.0.0.1: ``POST /v1/traces`` with a protobuf
``ExportTraceServiceRequest``, decoded with the official ``opentelemetry-proto``, answered with an empty
``ExportTraceServiceResponse``. Follows the OTLP specification's OTLP/HTTP section
(https://opentelemetry.io/docs/specs/otlp/#otlphttp: binary protobuf, ``Content-Type: application/x-protobuf``,
the default path ``/v1/traces``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class SpanRecord:
    name: str
    span_id: str
    parent_id: str
    trace_id: str
    kind: int
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    service: str


@dataclass
class Receiver:
    spans: list[SpanRecord] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.content_types.append(request.content_type)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            res = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        SpanRecord(
                            name=s.name,
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            trace_id=s.trace_id.hex(),
                            kind=s.kind,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attrs={a.key: value(a.value) for a in s.attributes},
                            events=[(e.name, {a.key: value(a.value) for a in e.attributes}) for e in s.events],
                            status=s.status.code,
                            service=str(res.get("service.name", "")),
                        )
                    )
        out = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=out, content_type="application/x-protobuf")

    def tree(self) -> str:
        """The spans as an indented tree with their attributes and events (for a person reading a failure)."""
        by_parent: dict[str, list[SpanRecord]] = {}
        ids = {s.span_id for s in self.spans}
        for s in sorted(self.spans, key=lambda s: s.start_ns):
            by_parent.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
        lines: list[str] = []

        def walk(parent: str, depth: int) -> None:
            for s in by_parent.get(parent, []):
                pad = "  " * depth
                lines.append(f"{pad}{s.name}  [{(s.end_ns - s.start_ns) / 1e6:.0f} ms]")
                for k, v in sorted(s.attrs.items()):
                    lines.append(f"{pad}    {k} = {v!r}")
                for name, attrs in s.events:
                    lines.append(f"{pad}    event {name}: {attrs}")
                walk(s.span_id, depth + 1)

        walk("", 0)
        return "\n".join(lines)

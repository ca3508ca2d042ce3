"""The OpenTelemetry tracer, imported only when tracing is on (``seam.enable``).

Spans and attributes follow the GenAI semantic conventions (development status:
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and gen-ai-agent-spans/); the cost attributes
(``gen_ai.usage.cost.*``) are the proposed ones, ``swarm.cost_usd`` ours. One task is one trace:

  invoke_workflow            the task (gen_ai.conversation.id = its id), from its creation to its end
  ├─ heartbeat decision      each decision for it (source, latency, tokens, clamps), ended by its approval (an event)
  └─ invoke_agent <role>     each job
     └─ chat <model>         each provider call (tokens, finish reasons, time to first chunk, cost)

The trace and the task span's ids are derived from the task id, so a pool in another process (``swarm-tui
worker``) parents its jobs under the same task span. Message contents only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. Never a key or a header in an attribute.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, StatusCode, TraceFlags

from swarm_tui.engine.bus.wire import Approval, Decision, Job, SpendEntry, Task
from swarm_tui.engine.info import TracingInfo
from swarm_tui.engine.projection.state import SwarmState

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENDED = ("done", "failed", "cancelled", "rejected")
MAX_CLAMPS = 10  # clamp reasons on a decision span
CLOSE_S = 2.0  # the longest a stop waits for the last spans to leave
_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("swarm_span_ids", default=None)


def ids_of(task_id: str) -> tuple[int, int]:
    """(trace id, span id) of a task's span: the same in every process."""
    h = hashlib.sha256(f"swarm-task:{task_id}".encode()).digest()
    return int.from_bytes(h[:16], "big") or 1, int.from_bytes(h[16:24], "big") or 1


def task_context(task_id: str) -> Context:
    tid, sid = ids_of(task_id)
    ctx = SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


class _Ids(RandomIdGenerator):
    """Random ids, except for a task's span (``ids_of``)."""

    def generate_trace_id(self) -> int:
        fixed = _ids.get()
        return fixed[0] if fixed else super().generate_trace_id()

    def generate_span_id(self) -> int:
        fixed = _ids.get()
        return fixed[1] if fixed else super().generate_span_id()


def ns(at: float) -> int:
    return int(at * 1e9)


def bare_model(model: str) -> str:
    """The model as the provider names it: ``openrouter/openai/gpt-4o`` -> ``openai/gpt-4o``."""
    return model.split("/", 1)[1] if model.startswith(("openrouter/", "ollama_chat/")) else model


def text_message(role: str, text: str, **more: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}], **more}


class JobSpan:
    def __init__(self, span: Span) -> None:
        self.span = span

    def job_done(self, run: Any) -> None:
        s = self.span
        s.set_attribute("swarm.job.state", str(run.state))
        s.set_attribute("swarm.cost_usd", round(float(run.cost), 9))
        if run.pending:  # calls whose cost OpenRouter tells later: an event on the task's span then
            s.set_attribute("swarm.cost_pending_calls", int(run.pending))
        if run.state == "failed":
            s.set_status(StatusCode.ERROR, str(run.reason)[:500])


class ChatSpan:
    def __init__(self, owner: Tracer, span: Span, run: Any) -> None:
        self.owner, self.span, self.run = owner, span, run
        self.cost0, self.pending0, self.attempt = float(run.cost), int(run.pending), str(run.attempt)

    def chat_done(self, run: Any, *, error: BaseException | None) -> None:
        s, pr = self.span, run.progress
        if pr.response_model:
            s.set_attribute("gen_ai.response.model", bare_model(pr.response_model))
        if pr.generation_id:
            s.set_attribute("gen_ai.response.id", pr.generation_id)
        s.set_attribute("gen_ai.usage.input_tokens", int(pr.prompt_tokens))
        s.set_attribute("gen_ai.usage.output_tokens", int(pr.completion_tokens or pr.tokens))
        s.set_attribute("gen_ai.usage.reasoning.output_tokens", int(pr.reasoning_tokens))
        if pr.finish_reason:
            s.set_attribute("gen_ai.response.finish_reasons", [pr.finish_reason])
        if pr.first_token_at and pr.started:
            s.set_attribute("gen_ai.response.time_to_first_chunk", round(pr.first_token_at - pr.started, 4))
        if run.pending > self.pending0:  # OpenRouter tells the cost later (GET /generation): an event then
            s.set_attribute("gen_ai.usage.cost.source", "pending")
            self.owner.cost_to_come(self.attempt, run.job.task_id)
        else:
            cost = round(float(run.cost) - self.cost0, 9)
            source = "estimate" if run.estimated else ("provider" if pr.cost is not None else "reconciled")
            for k, v in cost_attributes(cost, source).items():
                s.set_attribute(k, v)
        if self.owner.capture and pr.text:
            out = [text_message("assistant", pr.text, finish_reason=pr.finish_reason or "")]
            s.set_attribute("gen_ai.output.messages", json.dumps(out))
        if error is not None:
            s.set_status(StatusCode.ERROR, str(getattr(error, "reason", type(error).__name__))[:500])
            s.set_attribute("error.type", str(getattr(error, "kind", type(error).__name__)))
        s.end()


def cost_attributes(cost: float, source: str) -> dict[str, Any]:
    return {
        "gen_ai.usage.cost.amount": cost,
        "gen_ai.usage.cost.currency": "USD",
        "gen_ai.usage.cost.source": source,
        "swarm.cost_usd": cost,
    }


class Tracer:
    """The live tracer: the hooks' spans (jobs, calls, the conductor's decisions) and, as the ``tracing``
    component, the spans the log tells of (tasks, approvals, costs reconciled later)."""

    on = True
    name = "tracing"

    def __init__(self, provider: TracerProvider, *, capture: bool, endpoint: str) -> None:
        self.provider = provider
        self.otel = provider.get_tracer("swarm_tui")
        self.capture = capture
        self.endpoint = endpoint
        self.state: SwarmState | None = None
        self.live = False  # events replayed before start() are the past: no spans for them
        self.tasks: dict[str, Span] = {}  # open task spans
        self.decisions: dict[str, Span] = {}  # open decision spans, ended by their approval
        self.to_come: dict[str, str] = {}  # attempt id -> task id, its cost reconciled later
        self.closed = False

    @classmethod
    def create(cls, endpoint: str, *, env_endpoint: bool, env: Mapping[str, str] = os.environ) -> Tracer:
        """``env_endpoint``: the standard variables name the collector (they win over ``endpoint``)."""
        if env_endpoint:
            exporter = OTLPSpanExporter()  # the SDK reads OTEL_EXPORTER_OTLP_* itself
        else:
            exporter = OTLPSpanExporter(endpoint=endpoint.strip().rstrip("/") + "/v1/traces")
        named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
        resource = Resource.create({} if named else {"service.name": "swarm-tui"})
        # not the SDK's own exit hook: with the collector away it retried for ~8 s before the process could end
        provider = TracerProvider(resource=resource, id_generator=_Ids(), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        capture = env.get(CAPTURE_ENV, "").strip().lower() == "true"
        tracer = cls(provider, capture=capture, endpoint=endpoint)
        atexit.register(tracer.close)  # a pool without an engine (swarm-tui worker) sends its last spans too
        return tracer

    def close(self, timeout: float = CLOSE_S) -> None:
        """Send what is left and shut the exporter, waiting at most ``timeout``: a collector that is away
        delays a stop by that much, never by the exporter's retries."""
        if self.closed:
            return
        self.closed = True
        done = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        done.start()
        done.join(timeout)

    # ------------------------------------------------------------------ hooks (job.py, job_call.py, conductor.py)
    @contextlib.contextmanager
    def job(self, job: Job) -> Iterator[JobSpan]:
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": job.role,
            "gen_ai.agent.id": job.worker_id,
            "gen_ai.conversation.id": job.task_id,
            "gen_ai.request.model": bare_model(job.model),
            "swarm.job.id": job.id,
            "swarm.decision.id": job.decision_id,
        }
        span = self.otel.start_span(f"invoke_agent {job.role}", task_context(job.task_id), attributes=attrs)
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            yield JobSpan(span)

    def chat(self, run: Any, model: str, provider: str) -> ChatSpan:
        job = run.job
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": bare_model(model),
            "gen_ai.request.max_tokens": int(run.max_tokens or job.max_tokens),
            "gen_ai.conversation.id": job.task_id,
        }
        if self.capture:
            attrs["gen_ai.input.messages"] = json.dumps([text_message(m.role, m.content) for m in job.messages])
        span = self.otel.start_span(f"chat {bare_model(model)}", kind=SpanKind.CLIENT, attributes=attrs)
        return ChatSpan(self, span, run)

    def decision(self, d: Decision, tokens: tuple[int, int]) -> None:
        span = self.decisions.get(d.id) or self._decision_span(d)
        if span is not None:
            span.set_attribute("gen_ai.usage.input_tokens", tokens[0])
            span.set_attribute("gen_ai.usage.output_tokens", tokens[1])

    def cost_to_come(self, attempt: str, task_id: str) -> None:
        if attempt:
            self.to_come[attempt] = task_id

    # ------------------------------------------------------------------ the component
    async def start(self) -> None:
        self.live = True

    async def stop(self) -> None:
        for span in [*self.decisions.values(), *self.tasks.values()]:
            span.set_attribute("swarm.open_at_stop", True)
            span.end()
        self.decisions.clear()
        self.tasks.clear()
        await asyncio.to_thread(self.close)

    def info(self) -> TracingInfo:
        return {"open_tasks": len(self.tasks), "open_decisions": len(self.decisions)}

    def on_event(self, ev: Any) -> None:
        if not self.live:
            return
        if isinstance(ev, Task) and ev.id not in self.tasks:
            self._task_span(ev)
        elif isinstance(ev, Decision) and ev.id not in self.decisions:
            self._decision_span(ev)
        elif isinstance(ev, Approval):
            self._approval(ev)
        touched = self._touched(ev)
        if isinstance(ev, SpendEntry) and ev.id in self.to_come:
            tid = self.to_come.pop(ev.id)
            touched.append(tid)
            task = self.tasks.get(tid)
            if task is not None:
                attrs = {**cost_attributes(ev.cost_usd, "estimate" if ev.estimated else "reconciled")}
                attrs |= {"swarm.attempt.id": ev.id, "swarm.worker.id": ev.worker_id}
                task.add_event("gen_ai.usage.cost.reconciled", attrs, timestamp=ns(ev.at))
        self._end_tasks(touched)

    def _task_span(self, t: Task) -> None:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.conversation.id": t.id,
            "swarm.task.priority": t.priority,
            "swarm.task.source": t.source,
        }
        if self.capture:
            attrs["gen_ai.input.messages"] = json.dumps([text_message("user", t.text)])
        token = _ids.set(ids_of(t.id))
        try:
            self.tasks[t.id] = self.otel.start_span(
                "invoke_workflow", Context(), attributes=attrs, start_time=ns(t.created_at)
            )
        finally:
            _ids.reset(token)

    def _decision_span(self, d: Decision) -> Span | None:
        if not self.live or not d.task_ids:
            return None
        attrs: dict[str, Any] = {
            "gen_ai.conversation.id": d.task_ids[0],
            "swarm.decision.id": d.id,
            "swarm.decision.source": d.source,
            "swarm.decision.latency_ms": d.latency_ms,
            "swarm.decision.task_ids": list(d.task_ids),
            "swarm.decision.workers": len(d.plan),
            "swarm.decision.round": d.round,
            "swarm.decision.est_cost_min_usd": d.est_cost_min,
            "swarm.decision.est_cost_max_usd": d.est_cost_max,
            "swarm.decision.clamps": len(d.clamps),
        }
        if d.clamps:
            attrs["swarm.decision.clamp_reasons"] = [c.reason for c in d.clamps[:MAX_CLAMPS]]
        if d.error:
            attrs["swarm.decision.error"] = d.error[:500]
        start = ns(max(0.0, d.created_at - d.latency_ms / 1000))
        span = self.otel.start_span(
            "heartbeat decision", task_context(d.task_ids[0]), attributes=attrs, start_time=start
        )
        self.decisions[d.id] = span
        return span

    def _approval(self, a: Approval) -> None:
        span = self.decisions.get(a.decision_id)
        if span is None:
            return
        attrs: dict[str, Any] = {
            "swarm.approval.action": a.action,
            "swarm.approval.by": a.by,
            "swarm.approval.at": a.at,
        }
        if a.workers is not None:
            attrs["swarm.approval.workers"] = a.workers
        if a.reason:
            attrs["swarm.approval.reason"] = a.reason
        span.add_event("swarm.approval", attrs, timestamp=ns(a.at))
        if a.action != "edited":
            span.end(end_time=ns(a.at))
            del self.decisions[a.decision_id]

    def _touched(self, ev: Any) -> list[str]:
        """The tasks whose state an event may have moved (the fold's: state.py), or whose last cost it told:
        only those can have ended, so the cost of an event does not grow with the open tasks."""
        if isinstance(ev, Task):
            return [ev.id]
        if isinstance(ev, Decision):
            return list(ev.task_ids)
        if isinstance(ev, Approval):
            dv = self.state.decisions.get(ev.decision_id) if self.state is not None else None
            return list(dv.decision.task_ids) if dv is not None else []
        tid = getattr(ev, "task_id", None)
        return [tid] if isinstance(tid, str) else []

    def _end_tasks(self, touched: list[str]) -> None:
        if self.state is None or not self.tasks:
            return
        for tid in touched:
            view = self.state.tasks.get(tid)
            if tid not in self.tasks or view is None or view.state not in ENDED:
                continue
            if any(t == tid for t in self.to_come.values()):  # a cost still to come: its event ends it
                continue
            span = self.tasks.pop(tid)
            span.set_attribute("swarm.task.state", view.state)
            span.set_attribute("swarm.cost_usd", round(self.state.task_spend(tid), 9))
            if view.state == "failed":
                span.set_status(StatusCode.ERROR, view.reason[:500])
            span.end()

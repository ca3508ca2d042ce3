"""Traces are opt-in (engine/telemetry, docs/observability.md): off, nothing of OpenTelemetry is imported by the
engine's start-up path; on, the engine has its tracing component. Message contents only when asked; a cost
OpenRouter tells later is an event on the task's span, which waits for it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from swarm_tui.engine.bus.wire import ChatMessage, Job, SpendEntry, Task
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.telemetry import seam as telemetry
from tests.support.env import base_env

# the start-up path of `swarm-tui run --headless` and of the app's engine: the config, the bus, every component
START_UP = """
import sys
from swarm_tui.cli import main, runner
from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.config.load import load_config
cfg = load_config()
engine = assemble(cfg, Bus(cfg), demo=True)
names = [c.name for c in engine.components]
print("tracing" in names, sorted({m.split(".")[0] for m in sys.modules if m.startswith("opentelemetry")}))
"""


def start_up(tmp_path: Path, **env: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", START_UP], env=base_env(tmp_path, **env), capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_nothing_of_opentelemetry_is_imported_when_traces_are_off(tmp_path: Path) -> None:
    assert start_up(tmp_path) == "False []"


def test_an_endpoint_turns_traces_on(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (pip install -e '.[otel]')")
    assert start_up(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == "True ['opentelemetry']"
    conf = tmp_path / "config.toml"
    conf.write_text('[otel]\nendpoint = "http://127.0.0.1:9"\n')
    assert telemetry.wanted(load_config(conf, base_env(tmp_path)).otel.endpoint, {})


def test_wanted_follows_the_config_and_the_standard_variables() -> None:
    assert not telemetry.wanted("", {})
    assert telemetry.wanted("http://collector:4318", {})
    assert telemetry.wanted("", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not telemetry.wanted("http://collector:4318", {"OTEL_SDK_DISABLED": "TRUE"})
    # OTEL_TRACES_EXPORTER: a list; we ship the OTLP exporter only, so traces go out only when it names otlp
    assert telemetry.wanted("http://collector:4318", {"OTEL_TRACES_EXPORTER": "console, otlp"})
    assert not telemetry.wanted("http://collector:4318", {"OTEL_TRACES_EXPORTER": "None"})
    assert not telemetry.wanted("http://collector:4318", {"OTEL_TRACES_EXPORTER": "console"})


def test_an_endpoint_without_the_extra_is_one_warning_and_no_traces(monkeypatch: Any, caplog: Any) -> None:
    for m in list(sys.modules):
        if m.startswith("opentelemetry") or m == "swarm_tui.engine.telemetry.otel":
            monkeypatch.delitem(sys.modules, m)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # the default install
    monkeypatch.setattr(telemetry, "_tracer", telemetry.Noop())
    monkeypatch.setattr(telemetry, "_warned", False)
    with caplog.at_level("WARNING"):
        assert not telemetry.enable("http://127.0.0.1:4318").on
        assert not telemetry.enable("http://127.0.0.1:4318").on  # the pool's call after the engine's
    assert [r.getMessage() for r in caplog.records] == [telemetry.MISSING_EXTRA]


def test_a_bad_endpoint_is_one_line_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[otel]\nendpoint = "collector:4318"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg, base_env(tmp_path))
    assert "otel.endpoint" in str(e.value) and "\n" not in str(e.value)


def _tracer(capture: bool) -> tuple[Any, Any]:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed (pip install -e '.[otel]')")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from swarm_tui.engine.projection.state import SwarmState
    from swarm_tui.engine.telemetry.otel import Tracer, _Ids

    out = InMemorySpanExporter()
    provider = TracerProvider(id_generator=_Ids())
    provider.add_span_processor(SimpleSpanProcessor(out))
    t = Tracer(provider, capture=capture, endpoint="")
    t.state, t.live = SwarmState(), True
    return t, out


def _run(task: Task, attempt: str = "") -> Any:
    job = Job(
        id="d-1-j0",
        decision_id="d-1",
        task_id=task.id,
        worker_id="d-1-w0",
        role="research",
        model="openrouter/openai/gpt-4o-mini",
        max_tokens=300,
        messages=[ChatMessage(role="user", content=task.text)],
        created_at=time.time(),
    )
    progress = SimpleNamespace(
        response_model="openai/gpt-4o-mini-2024",
        generation_id="gen-1",
        prompt_tokens=12,
        completion_tokens=3,
        tokens=3,
        reasoning_tokens=0,
        finish_reason="stop",
        first_token_at=0.0,
        started=0.0,
        cost=None,
        text="the answer",
    )
    return SimpleNamespace(
        job=job, progress=progress, cost=0.0, pending=0, attempt=attempt, max_tokens=0, estimated=False, state="done"
    )


@pytest.mark.parametrize("capture", [False, True])
def test_message_contents_only_when_asked(capture: bool) -> None:
    t, out = _tracer(capture)
    task = Task(id="t-1", text="summarise the secret plan", created_at=time.time())
    t.on_event(task)
    run = _run(task)
    t.chat(run, run.job.model, "openrouter").chat_done(run, error=None)
    (chat,) = out.get_finished_spans()
    attrs = dict(chat.attributes or {})
    seen = "summarise the secret plan" in str(attrs)
    assert seen is capture and ("the answer" in str(attrs)) is capture
    assert attrs["gen_ai.response.model"] == "openai/gpt-4o-mini-2024"


def test_a_cost_told_later_is_an_event_on_the_task_span_which_waits_for_it() -> None:
    t, out = _tracer(False)
    task = Task(id="t-2", text="x", created_at=time.time())
    t.on_event(task)
    run = _run(task, attempt="a-1")
    chat = t.chat(run, run.job.model, "openrouter")
    run.pending = 1  # the reconciler will tell the cost (GET /generation)
    chat.chat_done(run, error=None)
    assert dict(out.get_finished_spans()[0].attributes or {})["gen_ai.usage.cost.source"] == "pending"
    t.state.tasks["t-2"] = SimpleNamespace(state="done", reason="", spend_usd=0.0, results=[])
    t.on_event(Task(id="t-3", text="y", created_at=time.time()))  # any event: the task is done, its cost to come
    assert [s.name for s in out.get_finished_spans()] == ["chat openai/gpt-4o-mini"]
    se = SpendEntry(
        id="a-1", model=run.job.model, worker_id="d-1-w0", decision_id="d-1", task_id="t-2", cost_usd=0.0021, at=1.0
    )
    t.on_event(se)
    (task_span,) = [s for s in out.get_finished_spans() if s.name == "invoke_workflow"]
    (event,) = task_span.events
    assert event.name == "gen_ai.usage.cost.reconciled"
    assert dict(event.attributes or {})["gen_ai.usage.cost.amount"] == 0.0021
    assert dict(event.attributes or {})["gen_ai.usage.cost.source"] == "reconciled"

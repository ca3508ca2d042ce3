"""Typed configuration sections: ``cfg.swarm.scale`` is an ``int``, ``cfg.ollama.timeout_s`` a ``float``.

One frozen dataclass per section of ``config_options.OPTIONS``, one field per option, named after the part of
the key after the dot and typed as the option's ``type``. The fields have no defaults on purpose: every value
comes from the validated ``Config.values`` (defaults, then the file, then the environment), so ``OPTIONS``
stays the one place that declares a default, an environment variable, a secret or a check.
``tests/unit/test_config_sections.py`` fails when a section and ``OPTIONS`` disagree on a name or a type.

Reading an option: ``self.cfg.budget.daily_usd`` (formerly ``float(self.cfg["budget.daily_usd"])``);
the value already has its declared type, so no cast is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from swarm_tui.engine.config_options import OPTION_BY_KEY


@dataclass(frozen=True, repr=False)
class Section:
    """Base of the section dataclasses: its ``repr`` never shows a secret (a traceback or a debug log of a
    config object must not leak a key)."""

    name: ClassVar[str]

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if OPTION_BY_KEY[f"{self.name}.{f.name}"].secret:
                value = "(set)" if value else "(not set)"
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class NatsSection(Section):
    name: ClassVar[str] = "nats"
    url: str
    probe_default: bool
    token: str
    user: str
    password: str
    creds: str
    nkey_seed: str
    tls_ca: str
    tls_cert: str
    tls_key: str
    embedded_memory_mb: int
    embedded_disk_mb: int
    events_max_age_days: int
    events_max_mb: int


@dataclass(frozen=True, repr=False)
class OpenRouterSection(Section):
    name: ClassVar[str] = "openrouter"
    api_key: str
    api_base: str
    price_cache_hours: float
    fallback_prompt_usd_per_mtok: float
    fallback_completion_usd_per_mtok: float
    key_poll_s: float
    referer: str
    title: str
    reconcile_max_s: float
    min_afford_tokens: int


@dataclass(frozen=True, repr=False)
class OllamaSection(Section):
    name: ClassVar[str] = "ollama"
    host: str
    model: str
    num_ctx: int
    timeout_s: float
    keep_alive: str


@dataclass(frozen=True, repr=False)
class HeartbeatSection(Section):
    name: ClassVar[str] = "heartbeat"
    debounce_s: float
    interval_s: float
    review_s: float
    max_tasks_per_beat: int
    max_workers_per_task: int


@dataclass(frozen=True, repr=False)
class ApprovalSection(Section):
    name: ClassVar[str] = "approval"
    mode: str  # "manual" or "auto" (the check in OPTIONS)
    auto_max_usd: float
    expire_s: float


@dataclass(frozen=True, repr=False)
class BudgetSection(Section):
    name: ClassVar[str] = "budget"
    daily_usd: float
    per_decision_usd: float
    task_max_usd: float
    task_max_followups: int


@dataclass(frozen=True, repr=False)
class SwarmSection(Section):
    name: ClassVar[str] = "swarm"
    scale: int
    max_scale: int
    request_timeout_s: float
    first_token_timeout_s: float
    first_content_timeout_s: float
    max_retries: int
    chunk_flush_ms: int
    ack_wait_s: float
    context_max_chars: int


@dataclass(frozen=True, repr=False)
class RamSection(Section):
    name: ClassVar[str] = "ram"
    headroom_mb: int
    sample_s: float


@dataclass(frozen=True, repr=False)
class UiSection(Section):
    name: ClassVar[str] = "ui"
    refresh_ms: int


@dataclass(frozen=True, repr=False)
class DemoSection(Section):
    name: ClassVar[str] = "demo"
    tokens_per_s: float
    tokens: int
    usd_per_mtok: float


@dataclass(frozen=True, repr=False)
class LogSection(Section):
    name: ClassVar[str] = "log"
    level: str


@dataclass(frozen=True, repr=False)
class PathsSection(Section):
    name: ClassVar[str] = "paths"
    data_dir: str


SECTION_TYPES: tuple[type[Section], ...] = (
    NatsSection,
    OpenRouterSection,
    OllamaSection,
    HeartbeatSection,
    ApprovalSection,
    BudgetSection,
    SwarmSection,
    RamSection,
    UiSection,
    DemoSection,
    LogSection,
    PathsSection,
)

S = TypeVar("S", bound=Section)


def build_section(cls: type[S], values: Mapping[str, Any]) -> S:
    """The section ``cls`` filled from validated dotted values (``{"swarm.scale": 10, ...}``)."""
    prefix = cls.name + "."
    return cls(**{f.name: values[prefix + f.name] for f in fields(cls)})

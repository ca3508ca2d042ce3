"""Typed configuration sections: ``cfg.swarm.scale`` is an ``int``, ``cfg.ollama.timeout_s`` a ``float``.

One frozen class per section of ``options.OPTIONS``, one field per option, named after the part of
the key after the dot and typed as the option's ``type``. The fields have no defaults on purpose: every value
comes from the validated ``Config.values`` (defaults, then the file, then the environment), so ``OPTIONS``
stays the one place that declares a default, an environment variable, a secret or a check.
``tests/unit/test_config_sections.py`` fails when a section and ``OPTIONS`` disagree on a name or a type.

Reading an option: ``self.cfg.budget.daily_usd``; the value already has its declared type, so no cast is
needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar, TypeVar, dataclass_transform

from swarm_tui.engine.config.options import OPTION_BY_KEY
from swarm_tui.engine.states import ApprovalMode, NeedKind


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Section:
    """Base of the sections: frozen, keyword-built, and its ``repr`` never shows a secret (a traceback or a
    debug log of a config object must not leak a key).

    Not ``@dataclass``: generating twelve dataclasses cost ~5 ms of the app's start-up (their ``__init__`` and
    ``__eq__`` are compiled from source). ``dataclass_transform`` gives mypy the same view of a section (typed
    keyword construction, no assignment), and ``fields`` is read from the class's annotations once.
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        notes = cls.__dict__.get("__annotations__", {})
        cls.fields = tuple(k for k, v in notes.items() if not str(v).startswith(("ClassVar", "typing.ClassVar")))

    def __init__(self, **values: Any) -> None:
        if set(values) != set(self.fields):
            wrong = sorted(set(values) ^ set(self.fields))
            raise TypeError(f"{type(self).__name__}: missing or unknown fields {wrong}")
        for k in self.fields:
            object.__setattr__(self, k, values[k])

    def __setattr__(self, key: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {key!r}")

    def __delattr__(self, key: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {key!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        parts = []
        for k in self.fields:
            value = getattr(self, k)
            if OPTION_BY_KEY[f"{self.name}.{k}"].secret:
                value = "(set)" if value else "(not set)"
            parts.append(f"{k}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


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
    replicas: int
    leaf_url: str
    leaf_creds: str
    leaf_domain: str
    leaf_tls_ca: str
    embedded_memory_mb: int
    embedded_disk_mb: int


class OpenRouterSection(Section):
    name: ClassVar[str] = "openrouter"
    api_key: str
    management_key: str
    api_base: str
    via_litellm: bool
    price_cache_hours: float
    fallback_prompt_usd_per_mtok: float
    fallback_completion_usd_per_mtok: float
    key_poll_s: float
    referer: str
    title: str
    reconcile_max_s: float
    min_afford_tokens: int


class OllamaSection(Section):
    name: ClassVar[str] = "ollama"
    host: str
    model: str
    num_ctx: int
    timeout_s: float
    keep_alive: str


class HeartbeatSection(Section):
    name: ClassVar[str] = "heartbeat"
    debounce_s: float
    interval_s: float
    review_s: float
    max_tasks_per_beat: int
    max_workers_per_task: int
    learn: bool


class ApprovalSection(Section):
    name: ClassVar[str] = "approval"
    mode: ApprovalMode  # the check in OPTIONS lets no other value through
    auto_max_usd: float
    expire_s: float


class BudgetSection(Section):
    name: ClassVar[str] = "budget"
    daily_usd: float
    alerts: tuple[float, ...]  # sorted, each 0 < a <= 1
    per_decision_usd: float
    task_max_usd: float
    task_max_followups: int


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


class RamSection(Section):
    name: ClassVar[str] = "ram"
    headroom_mb: int
    sample_s: float


class UiSection(Section):
    name: ClassVar[str] = "ui"
    refresh_ms: int


class NotifySection(Section):
    name: ClassVar[str] = "notify"
    bell: bool
    desktop: bool
    tmux_passthrough: bool
    command: str
    approval: bool
    failed: bool
    spend: bool
    ceiling: bool
    credit: bool
    bus: bool
    bus_grace_s: float

    def kinds(self) -> frozenset[NeedKind]:
        """The attention kinds whose alerts are on."""
        on: dict[NeedKind, bool] = {"approval": self.approval, "failed": self.failed, "ceiling": self.ceiling}
        on |= {"spend": self.spend, "credit": self.credit, "bus": self.bus}
        return frozenset(k for k, v in on.items() if v)


class DemoSection(Section):
    name: ClassVar[str] = "demo"
    tokens_per_s: float
    tokens: int
    usd_per_mtok: float


class LogSection(Section):
    name: ClassVar[str] = "log"
    level: str
    max_age_days: int
    max_bytes: int


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
    NotifySection,
    UiSection,
    DemoSection,
    LogSection,
    PathsSection,
)

S = TypeVar("S", bound=Section)


def build_section(cls: type[S], values: Mapping[str, Any]) -> S:
    """The section ``cls`` filled from validated dotted values (``{"swarm.scale": 10, ...}``)."""
    prefix = cls.name + "."
    return cls(**{k: values[prefix + k] for k in cls.fields})

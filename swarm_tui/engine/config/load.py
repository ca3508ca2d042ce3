"""Configuration: a TOML file, then environment variables, which win.

Every option is declared once in ``options.OPTIONS`` with its type, default, allowed values, environment
variable and whether it is a secret. Validation happens at load time: a bad value raises ``ConfigError`` whose
message is one line naming the key, the file (or variable) and what is allowed; the CLI turns it into exit
code 2.

Reading an option: through its typed section, built from the validated values whenever a ``Config`` is made
(``load_config`` and ``Config.replace`` alike)::

    cfg.swarm.scale             # int
    cfg.budget.daily_usd        # float
    cfg.openrouter.api_key      # str (a secret: never log it)

The sections are frozen (``sections``); a value already has its declared type, so call sites need no casts
(``self.cfg.budget.daily_usd`` is a float), and ``int(...)``/``float(...)``/``str(...)`` stays only where it
changes the type (``float(cfg.ram.headroom_mb)``).
There is no ``cfg["swarm.scale"]`` on purpose (mypy then flags an untyped read); code that walks ``OPTIONS`` by
key (``masked``, ``secrets``) reads ``cfg.values``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm_tui.engine.config.keys import parse_keys
from swarm_tui.engine.config.option import Option
from swarm_tui.engine.config.options import OPTION_BY_KEY, OPTIONS
from swarm_tui.engine.config.roles import role_options
from swarm_tui.engine.config.sections import (
    ApprovalSection,
    BudgetSection,
    DemoSection,
    HeartbeatSection,
    LogSection,
    NatsSection,
    NotifySection,
    OllamaSection,
    OpenRouterSection,
    PathsSection,
    RamSection,
    SwarmSection,
    UiSection,
    build_section,
)
from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.paths import config_path

__all__ = ["SECTIONS", "Config", "Role", "load_config"]

# The tables a config file may have: one per option section, plus [roles.*] and [keys].
SECTIONS = sorted({o.key.split(".")[0] for o in OPTIONS} | {"roles", "keys"})

DEFAULT_ROLES: dict[str, dict[str, Any]] = {
    # A cheap fast model for research, another for analysis, a code model. No ":nitro" variants.
    "research": {"model": "openrouter/google/gemini-2.5-flash-lite", "max_tokens": 800},
    "analysis": {"model": "openrouter/deepseek/deepseek-chat-v3.1", "max_tokens": 1200},
    "code": {"model": "openrouter/qwen/qwen3-coder", "max_tokens": 1500},
}


@dataclass(frozen=True)
class Role:
    name: str
    model: str
    max_tokens: int
    # optional (roles.role_options): the limit to the first content token (None: swarm.first_content_timeout_s)
    # and what goes to OpenRouter with the call (routing.extras)
    first_token_timeout_s: float | None = None
    reasoning: dict[str, Any] | None = field(default=None, hash=False)
    provider: dict[str, Any] | None = field(default=None, hash=False)
    fallback_models: tuple[str, ...] = ()


@dataclass
class Config:
    """The effective configuration: validated dotted ``values``, roles and key bindings, and one typed section
    per option section (built from ``values`` on construction, so they cannot disagree with it).

    Treat a ``Config`` as read-only: to change an option make a copy with ``replace`` (which rebuilds the
    sections); writing into ``values`` would leave the sections stale.
    """

    values: dict[str, Any]
    roles: dict[str, Role]
    keys: dict[str, str] = field(default_factory=dict)
    source: str = "defaults"
    # The typed sections (sections.py). Not init arguments: always built from ``values``.
    nats: NatsSection = field(init=False, repr=False, compare=False)
    openrouter: OpenRouterSection = field(init=False, repr=False, compare=False)
    ollama: OllamaSection = field(init=False, repr=False, compare=False)
    heartbeat: HeartbeatSection = field(init=False, repr=False, compare=False)
    approval: ApprovalSection = field(init=False, repr=False, compare=False)
    budget: BudgetSection = field(init=False, repr=False, compare=False)
    swarm: SwarmSection = field(init=False, repr=False, compare=False)
    ram: RamSection = field(init=False, repr=False, compare=False)
    ui: UiSection = field(init=False, repr=False, compare=False)
    notify: NotifySection = field(init=False, repr=False, compare=False)
    demo: DemoSection = field(init=False, repr=False, compare=False)
    log: LogSection = field(init=False, repr=False, compare=False)
    paths: PathsSection = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v = self.values
        self.nats = build_section(NatsSection, v)
        self.openrouter = build_section(OpenRouterSection, v)
        self.ollama = build_section(OllamaSection, v)
        self.heartbeat = build_section(HeartbeatSection, v)
        self.approval = build_section(ApprovalSection, v)
        self.budget = build_section(BudgetSection, v)
        self.swarm = build_section(SwarmSection, v)
        self.ram = build_section(RamSection, v)
        self.ui = build_section(UiSection, v)
        self.notify = build_section(NotifySection, v)
        self.demo = build_section(DemoSection, v)
        self.log = build_section(LogSection, v)
        self.paths = build_section(PathsSection, v)

    def replace(self, **changes: Any) -> Config:
        """A copy with some options replaced (keys given with ``__`` for the dot: ``replace(swarm__scale=3)``),
        its sections rebuilt.

        An unknown key or a value of the wrong type is a programming error (TypeError). The options' checks are
        not applied, as before: the callers (tests, ``--demo``'s data dir, ``--attach URL``) pass values that
        are meant to be used as given, and a bad ``--attach`` URL still fails when the bus connects.
        """
        vals = dict(self.values)
        for k, v in changes.items():
            key = k.replace("__", ".")
            opt = OPTION_BY_KEY.get(key)
            if opt is None:
                raise TypeError(f"Config.replace: unknown option {key!r}")
            if not _has_type(v, opt.type):
                raise TypeError(f"Config.replace: {key} takes a {opt.type.__name__}, got {v!r}")
            vals[key] = float(v) if opt.type is float else v
        return Config(vals, dict(self.roles), dict(self.keys), self.source)

    @property
    def secrets(self) -> list[str]:
        out = [str(self.values[o.key]) for o in OPTIONS if o.secret and self.values.get(o.key)]
        command = str(self.values.get("notify.command") or "")
        if command:  # a token or webhook URL is one argument of it: each longer argument is redacted on its own
            import shlex

            out += [a for a in shlex.split(command)[1:] if len(a) >= 8]
        return out

    def masked(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for o in OPTIONS:
            v = self.values[o.key]
            if o.secret:
                v = "(set)" if v else "(not set)"
            elif o.login:
                v = hide_login(v)
            out[o.key] = v
        for r in self.roles.values():
            out[f"roles.{r.name}"] = {"model": r.model, "max_tokens": r.max_tokens}
            for opt in ("first_token_timeout_s", "reasoning", "provider", "fallback_models"):
                if getattr(r, opt):
                    out[f"roles.{r.name}"][opt] = getattr(r, opt)
        for k, v in sorted(self.keys.items()):
            out[f"keys.{k}"] = v
        return out


def hide_login(url: str) -> str:
    """A URL (or a comma-separated list of them) without the login it may carry (``nats://user:pass@host`` ->
    ``nats://(login)@host``). Everything before a server's LAST "@" goes: a password may hold "@" or "/"
    (urllib, under nats-py and httpx, splits at the last "@"), and the scheme may be any case or missing."""
    out = []
    for part in url.split(","):
        if "@" in part:
            head, _, host = part.rpartition("@")
            scheme = head.split("://", 1)[0] + "://" if "://" in head else ""
            part = f"{scheme}(login)@{host}"
        out.append(part)
    return ",".join(out)


def _has_type(value: Any, t: type) -> bool:
    """Whether ``value`` may stand for an option of type ``t`` (an int may stand for a float; a bool is not an
    int here, as in ``_coerce``)."""
    if t is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def _coerce(opt: Option, raw: Any, where: str) -> Any:
    def bad() -> ConfigError:
        allowed = opt.allowed or f"a {opt.type.__name__}"
        shown = "(hidden)" if opt.secret else repr(hide_login(raw) if opt.login and isinstance(raw, str) else raw)
        return ConfigError(f"bad value {shown} for {opt.key} in {where}: expected {allowed}")

    try:
        if opt.type is bool:
            if isinstance(raw, bool):
                val: Any = raw
            elif isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
                val = True
            elif isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
                val = False
            else:
                raise bad()
        elif opt.type is int:
            if isinstance(raw, bool) or isinstance(raw, float):
                raise bad()
            val = int(raw)
        elif opt.type is float:
            if isinstance(raw, bool):
                raise bad()
            val = float(raw)
            if val != val or val in (float("inf"), float("-inf")):
                raise bad()
        elif opt.type is tuple:  # a list of numbers: TOML's array, or "0.5,0.8" from the environment
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list | tuple) or any(isinstance(x, bool) for x in items):
                raise bad()
            val = tuple(sorted(float(x) for x in items))
        else:
            if not isinstance(raw, str):
                raise bad()
            val = raw
    except (TypeError, ValueError):
        raise bad() from None
    if opt.check is not None and not opt.check(val):
        raise bad()
    return val


# Keys that moved: refused with a line naming the new one (a stale file fails loudly rather than being half-read).
RENAMED = {
    "nats.events_max_age_days": "log.max_age_days (the same days)",
    "nats.events_max_mb": "log.max_bytes, in bytes (256 MiB is 268435456)",
}

ROLE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
ROLE_KEYS = {"model", "max_tokens", "first_token_timeout_s", "reasoning", "provider", "fallback_models"}


def _parse_roles(raw: Any, where: str) -> dict[str, Role]:
    roles = {n: Role(n, d["model"], d["max_tokens"]) for n, d in DEFAULT_ROLES.items()}
    if raw is None:
        return roles
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"bad value for roles in {where}: expected a table of roles, each with model and max_tokens")
    roles = {}
    for name, d in raw.items():
        if not ROLE_NAME.fullmatch(name):  # a plan holds a role name of at most 32 characters, shown as it is
            raise ConfigError(f"bad role name {name[:40]!r} in {where}: use 1-32 letters, digits, '-', '_' or '.'")
        if not isinstance(d, dict):
            raise ConfigError(f"bad value for roles.{name} in {where}: expected a table with model and max_tokens")
        unknown = sorted(set(d) - ROLE_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key roles.{name}.{unknown[0]} in {where}: a role takes " + ", ".join(sorted(ROLE_KEYS))
            )
        model = d.get("model")
        mt = d.get("max_tokens", 1000)
        if not isinstance(model, str) or not model.startswith(("openrouter/", "ollama_chat/")):
            raise ConfigError(
                f"bad value {model!r} for roles.{name}.model in {where}: expected "
                "openrouter/<vendor>/<model> or ollama_chat/<model>"
            )
        if model.endswith(":nitro"):
            raise ConfigError(
                f"bad value {model!r} for roles.{name}.model in {where}: :nitro variants are "
                "billed at priority rates; name the plain model"
            )
        if isinstance(mt, bool) or not isinstance(mt, int) or not 1 <= mt <= 200000:
            raise ConfigError(f"bad value {mt!r} for roles.{name}.max_tokens in {where}: expected an integer 1..200000")
        roles[name] = Role(name, model, mt, **role_options(name, d, where, model))
    return roles


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load defaults, then the TOML file, then the environment. Raises ConfigError on any bad value."""
    env = os.environ if env is None else env
    explicit = path is not None
    p = Path(path) if path is not None else config_path(env)
    data: dict[str, Any] = {}
    where = str(p)
    if p.exists():
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # tomllib decodes the bytes itself: an editor saved it as Latin-1
            raise ConfigError(f"{p} is not UTF-8 text (byte {exc.start} is not UTF-8); save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"config file {p} does not exist")

    values: dict[str, Any] = {o.key: o.default for o in OPTIONS}
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {where}: allowed are {', '.join(SECTIONS)}")
        if section in ("roles", "keys"):
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"bad value for {section} in {where}: expected a [{section}] table")
        for name, raw in body.items():
            key = f"{section}.{name}"
            opt = OPTION_BY_KEY.get(key)
            if key in RENAMED:
                raise ConfigError(f"{key} in {where} is now {RENAMED[key]}: rename it")
            if opt is None:
                known = ", ".join(o.key.split(".")[1] for o in OPTIONS if o.key.startswith(section + "."))
                raise ConfigError(f"unknown key {key} in {where}: [{section}] allows {known}")
            values[key] = _coerce(opt, raw, where)
    for opt in OPTIONS:
        if opt.env and env.get(opt.env) not in (None, ""):
            values[opt.key] = _coerce(opt, env[opt.env], f"environment variable {opt.env}")
    roles = _parse_roles(data.get("roles"), where)
    keys = parse_keys(data.get("keys"), where)
    if values["swarm.scale"] > values["swarm.max_scale"]:
        raise ConfigError(
            f"bad value {values['swarm.scale']} for swarm.scale in {where}: expected at most "
            f"swarm.max_scale ({values['swarm.max_scale']})"
        )
    return Config(values, roles, keys, where if p.exists() else "defaults")

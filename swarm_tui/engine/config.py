"""Configuration: a TOML file, then environment variables, which win.

Every option is declared once in ``OPTIONS`` with its type, default, allowed values, environment variable and
whether it is a secret. Validation happens at load time: a bad value raises ``ConfigError`` whose message is one
line naming the key, the file (or variable) and what is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.paths import config_path
from swarm_tui.engine.swarm.routing import role_options

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Option:
    key: str  # "section.name"
    type: type
    default: Any
    help: str
    env: str | None = None
    secret: bool = False
    allowed: str = ""  # human text for the error message
    check: Check | None = None


def _pos(v: Any) -> bool:
    return v > 0


def _nonneg(v: Any) -> bool:
    return v >= 0


def _range(lo: float, hi: float) -> Check:
    return lambda v: lo <= v <= hi


def _one_of(*choices: str) -> Check:
    return lambda v: v in choices


DEFAULT_ROLES: dict[str, dict[str, Any]] = {
    # A cheap fast model for research, another for analysis, a code model. No ":nitro" variants.
    "research": {"model": "openrouter/google/gemini-2.5-flash-lite", "max_tokens": 800},
    "analysis": {"model": "openrouter/deepseek/deepseek-chat-v3.1", "max_tokens": 1200},
    "code": {"model": "openrouter/qwen/qwen3-coder", "max_tokens": 1500},
}

OPTIONS: list[Option] = [
    # --- bus
    Option(
        "nats.url",
        str,
        "",
        "NATS URL; empty: a server at the default URL, else an embedded one",
        env="SWARM_NATS_URL",
        allowed="a nats:// or tls:// URL, or empty",
        check=lambda v: (
            v == ""
            or all(u.strip().split("://", 1)[0] in ("nats", "tls", "ws", "wss") and "://" in u for u in v.split(","))
        ),
    ),
    Option(
        "nats.probe_default",
        bool,
        True,
        "try nats://127.0.0.1:4222 before starting an embedded server",
        env="SWARM_NATS_PROBE_DEFAULT",
    ),
    Option("nats.token", str, "", "NATS auth token", env="SWARM_NATS_TOKEN", secret=True),
    Option("nats.user", str, "", "NATS user name", env="SWARM_NATS_USER"),
    Option("nats.password", str, "", "NATS password", env="SWARM_NATS_PASSWORD", secret=True),
    Option("nats.creds", str, "", "path to a NATS .creds file (JWT + nkey seed)", env="SWARM_NATS_CREDS"),
    Option("nats.nkey_seed", str, "", "path to an nkey seed file", env="SWARM_NATS_NKEY_SEED"),
    Option("nats.tls_ca", str, "", "CA file to verify the NATS server", env="SWARM_NATS_TLS_CA"),
    Option("nats.tls_cert", str, "", "client certificate for NATS TLS", env="SWARM_NATS_TLS_CERT"),
    Option("nats.tls_key", str, "", "client key for NATS TLS", env="SWARM_NATS_TLS_KEY"),
    Option(
        "nats.embedded_memory_mb",
        int,
        64,
        "embedded JetStream memory store cap (MB)",
        allowed="an integer 8..4096",
        check=_range(8, 4096),
    ),
    Option(
        "nats.embedded_disk_mb",
        int,
        1024,
        "embedded JetStream file store cap (MB)",
        allowed="an integer 64..1048576",
        check=_range(64, 1048576),
    ),
    Option(
        "nats.events_max_age_days",
        int,
        30,
        "how long the event log is kept",
        allowed="an integer 1..3650",
        check=_range(1, 3650),
    ),
    Option(
        "nats.events_max_mb",
        int,
        256,
        "event log size cap (MB); keep it under the server's disk cap",
        allowed="an integer 16..1048576",
        check=_range(16, 1048576),
    ),
    # --- OpenRouter
    Option("openrouter.api_key", str, "", "OpenRouter API key", env="OPENROUTER_API_KEY", secret=True),
    Option(
        "openrouter.api_base",
        str,
        "https://openrouter.ai/api/v1",
        "OpenRouter API base (ends in /api/v1)",
        env="OPENROUTER_API_BASE",
        allowed="an http(s) URL ending in /api/v1",
        check=lambda v: v.startswith(("http://", "https://")) and v.rstrip("/").endswith("/api/v1"),
    ),
    Option(
        "openrouter.price_cache_hours",
        float,
        24.0,
        "age after which the model price list is refreshed",
        allowed="a number > 0",
        check=_pos,
    ),
    Option(
        "openrouter.fallback_prompt_usd_per_mtok",
        float,
        2.0,
        "conservative prompt price when no price list is known (USD per million tokens)",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "openrouter.fallback_completion_usd_per_mtok",
        float,
        8.0,
        "conservative completion price when no price list is known (USD per million tokens)",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "openrouter.key_poll_s",
        float,
        60.0,
        "how often GET /api/v1/key is polled",
        allowed="a number >= 5",
        check=lambda v: v >= 5,
    ),
    Option(
        "openrouter.referer",
        str,
        "https://github.com/swarm-tui/swarm-tui",
        "HTTP-Referer sent with every OpenRouter call (app attribution)",
        allowed="an http(s) URL",
        check=lambda v: v.startswith(("http://", "https://")) and len(v) <= 500,
    ),
    Option(
        "openrouter.title",
        str,
        "swarm-tui",
        "X-Title sent with every OpenRouter call (app attribution)",
        allowed="a non-empty name of at most 100 characters",
        check=lambda v: 0 < len(v.strip()) <= 100,
    ),
    Option(
        "openrouter.reconcile_max_s",
        float,
        300.0,
        "an attempt that ended without usage.cost keeps its "
        "worst-case reservation until GET /api/v1/generation answers; after this long it is charged the "
        "worst case, marked estimated",
        allowed="a number >= 1",
        check=lambda v: v >= 1,
    ),
    Option(
        "openrouter.min_afford_tokens",
        int,
        256,
        'after a 402 "can only afford N tokens" the job is '
        "retried with max_tokens N when N is at least this (or half the job's max_tokens), else it fails",
        allowed="an integer 1..100000",
        check=_range(1, 100000),
    ),
    # --- Ollama / the conductor's model
    Option(
        "ollama.host",
        str,
        "http://127.0.0.1:11434",
        "Ollama server",
        env="OLLAMA_HOST",
        allowed="host[:port] or an http(s) URL",
        check=lambda v: bool(v.strip()),
    ),
    Option(
        "ollama.model",
        str,
        "gemma2:2b",
        "the heartbeat's local model",
        env="SWARM_OLLAMA_MODEL",
        allowed="an Ollama model name",
        check=lambda v: bool(v.strip()),
    ),
    Option(
        "ollama.num_ctx",
        int,
        4096,
        "fixed context size (a change makes Ollama reload the model)",
        allowed="an integer 512..131072",
        check=_range(512, 131072),
    ),
    Option("ollama.timeout_s", float, 60.0, "time limit of one conductor call", allowed="a number > 0", check=_pos),
    Option(
        "ollama.keep_alive",
        str,
        "10m",
        "keep_alive while RAM headroom allows",
        allowed="an Ollama duration such as 10m",
        check=lambda v: bool(v.strip()),
    ),
    # --- heartbeat
    Option(
        "heartbeat.debounce_s",
        float,
        2.0,
        "wait after a new task so a burst makes one decision",
        env="SWARM_DEBOUNCE_S",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "heartbeat.interval_s",
        float,
        30.0,
        "beat interval",
        env="SWARM_INTERVAL_S",
        allowed="a number >= 1",
        check=lambda v: v >= 1,
    ),
    Option(
        "heartbeat.review_s",
        float,
        3600.0,
        "scheduled review interval",
        allowed="a number >= 1",
        check=lambda v: v >= 1,
    ),
    Option(
        "heartbeat.max_tasks_per_beat",
        int,
        8,
        "tasks considered in one decision",
        allowed="an integer 1..100",
        check=_range(1, 100),
    ),
    Option(
        "heartbeat.max_workers_per_task",
        int,
        3,
        "workers one decision may give a single task",
        allowed="an integer 1..20",
        check=_range(1, 20),
    ),
    # --- approval
    Option(
        "approval.mode",
        str,
        "manual",
        "manual: every decision waits for a person; auto: approve "
        "decisions whose estimated cost is at most approval.auto_max_usd",
        env="SWARM_APPROVAL",
        allowed="manual or auto",
        check=_one_of("manual", "auto"),
    ),
    Option(
        "approval.auto_max_usd",
        float,
        0.05,
        "auto-approve limit (estimated worst case, USD)",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "approval.expire_s",
        float,
        900.0,
        "a pending decision expires after this",
        allowed="a number >= 1",
        check=lambda v: v >= 1,
    ),
    # --- budget
    Option(
        "budget.daily_usd",
        float,
        1.0,
        "hard spend ceiling per UTC day",
        env="SWARM_BUDGET_USD",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "budget.per_decision_usd",
        float,
        0.0,
        "hard ceiling per decision (0: none)",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "budget.task_max_usd",
        float,
        0.5,
        "total spend allowed for one task, follow-ups included",
        allowed="a number >= 0",
        check=_nonneg,
    ),
    Option(
        "budget.task_max_followups",
        int,
        2,
        "follow-up rounds allowed for one task",
        allowed="an integer 0..20",
        check=_range(0, 20),
    ),
    # --- swarm
    Option(
        "swarm.scale",
        int,
        10,
        "concurrent workers at start",
        env="SWARM_SCALE",
        allowed="an integer 0..200",
        check=_range(0, 200),
    ),
    Option("swarm.max_scale", int, 50, "upper limit of the scale", allowed="an integer 1..200", check=_range(1, 200)),
    Option(
        "swarm.request_timeout_s", float, 180.0, "time limit of one worker call", allowed="a number > 0", check=_pos
    ),
    Option(
        "swarm.first_token_timeout_s",
        float,
        30.0,
        "stall limit: a call that receives no byte at all for "
        "this long is retried (OpenRouter's keepalive comments count)",
        allowed="a number > 0",
        check=_pos,
    ),
    Option(
        "swarm.first_content_timeout_s",
        float,
        150.0,
        "time limit from the request to the first content "
        "token (reasoning models think first); roles.<name>.first_token_timeout_s overrides it; never more "
        "than swarm.request_timeout_s, which bounds the whole call (and how long a reservation is held)",
        allowed="a number > 0",
        check=_pos,
    ),
    Option(
        "swarm.max_retries", int, 3, "retries of a 5xx or a timeout", allowed="an integer 0..10", check=_range(0, 10)
    ),
    Option(
        "swarm.chunk_flush_ms",
        int,
        50,
        "chunks are coalesced for this long",
        allowed="an integer 5..2000",
        check=_range(5, 2000),
    ),
    Option(
        "swarm.ack_wait_s",
        float,
        30.0,
        "a job held this long without a sign of life from its worker is "
        "redelivered (workers send in-progress every third of it)",
        env="SWARM_ACK_WAIT_S",
        allowed="a number 3..600",
        check=_range(3, 600),
    ),
    Option(
        "swarm.context_max_chars",
        int,
        6000,
        "earlier result passed to a chained role, at most",
        allowed="an integer 200..200000",
        check=_range(200, 200000),
    ),
    # --- RAM
    Option(
        "ram.headroom_mb",
        int,
        1536,
        "RAM to keep available",
        env="SWARM_HEADROOM_MB",
        allowed="an integer 0..1048576",
        check=_range(0, 1048576),
    ),
    Option("ram.sample_s", float, 2.0, "RAM sampling period", allowed="a number 0.2..60", check=_range(0.2, 60)),
    # --- UI
    Option(
        "ui.refresh_ms",
        int,
        50,
        "screen refresh of streaming output (raise it on slow ssh links)",
        env="SWARM_REFRESH_MS",
        allowed="an integer 20..5000",
        check=_range(20, 5000),
    ),
    # --- demo
    Option(
        "demo.tokens_per_s",
        float,
        40.0,
        "demo endpoint's streaming rate per worker",
        env="SWARM_DEMO_TPS",
        allowed="a number 0.1..10000",
        check=_range(0.1, 10000),
    ),
    Option(
        "demo.tokens", int, 300, "tokens in one demo answer", allowed="an integer 1..100000", check=_range(1, 100000)
    ),
    Option(
        "demo.usd_per_mtok", float, 0.4, "demo price (USD per million tokens)", allowed="a number >= 0", check=_nonneg
    ),
    # --- misc
    Option(
        "log.level",
        str,
        "INFO",
        "log level",
        env="SWARM_LOG_LEVEL",
        allowed="DEBUG, INFO, WARNING or ERROR",
        check=_one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Option(
        "paths.data_dir", str, "", "data dir (embedded NATS store, caches); empty: XDG data dir", env="SWARM_DATA_DIR"
    ),
]

OPTION_BY_KEY = {o.key: o for o in OPTIONS}
SECTIONS = sorted({o.key.split(".")[0] for o in OPTIONS} | {"roles", "keys"})


@dataclass(frozen=True)
class Role:
    name: str
    model: str
    max_tokens: int
    # optional (routing.role_options): the limit to the first content token (None: swarm.first_content_timeout_s)
    # and what goes to OpenRouter with the call (routing.extras)
    first_token_timeout_s: float | None = None
    reasoning: dict[str, Any] | None = field(default=None, hash=False)
    provider: dict[str, Any] | None = field(default=None, hash=False)
    fallback_models: tuple[str, ...] = ()


@dataclass
class Config:
    values: dict[str, Any]
    roles: dict[str, Role]
    keys: dict[str, str] = field(default_factory=dict)
    source: str = "defaults"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def replace(self, **changes: Any) -> Config:
        """A copy with some dotted keys replaced (keys given with ``__`` for the dot)."""
        vals = dict(self.values)
        for k, v in changes.items():
            vals[k.replace("__", ".")] = v
        return Config(vals, dict(self.roles), dict(self.keys), self.source)

    @property
    def secrets(self) -> list[str]:
        return [str(self.values[o.key]) for o in OPTIONS if o.secret and self.values.get(o.key)]

    def masked(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for o in OPTIONS:
            v = self.values[o.key]
            if o.secret:
                v = "(set)" if v else "(not set)"
            out[o.key] = v
        for r in self.roles.values():
            out[f"roles.{r.name}"] = {"model": r.model, "max_tokens": r.max_tokens}
            for opt in ("first_token_timeout_s", "reasoning", "provider", "fallback_models"):
                if getattr(r, opt):
                    out[f"roles.{r.name}"][opt] = getattr(r, opt)
        for k, v in sorted(self.keys.items()):
            out[f"keys.{k}"] = v
        return out


def _coerce(opt: Option, raw: Any, where: str) -> Any:
    def bad() -> ConfigError:
        allowed = opt.allowed or f"a {opt.type.__name__}"
        shown = "(hidden)" if opt.secret else repr(raw)
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
        else:
            if not isinstance(raw, str):
                raise bad()
            val = raw
    except (TypeError, ValueError):
        raise bad() from None
    if opt.check is not None and not opt.check(val):
        raise bad()
    return val


ROLE_KEYS = {"model", "max_tokens", "first_token_timeout_s", "reasoning", "provider", "fallback_models"}


def _parse_roles(raw: Any, where: str) -> dict[str, Role]:
    roles = {n: Role(n, d["model"], d["max_tokens"]) for n, d in DEFAULT_ROLES.items()}
    if raw is None:
        return roles
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"bad value for roles in {where}: expected a table of roles, each with model and max_tokens")
    roles = {}
    for name, d in raw.items():
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
            if opt is None:
                known = ", ".join(o.key.split(".")[1] for o in OPTIONS if o.key.startswith(section + "."))
                raise ConfigError(f"unknown key {key} in {where}: [{section}] allows {known}")
            values[key] = _coerce(opt, raw, where)
    for opt in OPTIONS:
        if opt.env and env.get(opt.env) not in (None, ""):
            values[opt.key] = _coerce(opt, env[opt.env], f"environment variable {opt.env}")
    roles = _parse_roles(data.get("roles"), where)
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()):
        raise ConfigError(f'bad value for keys in {where}: expected action = "key" pairs')
    if values["swarm.scale"] > values["swarm.max_scale"]:
        raise ConfigError(
            f"bad value {values['swarm.scale']} for swarm.scale in {where}: expected at most "
            f"swarm.max_scale ({values['swarm.max_scale']})"
        )
    return Config(values, roles, dict(keys), where if p.exists() else "defaults")

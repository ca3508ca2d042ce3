"""The one declaration of every configuration option: its type, default, environment variable, secret flag
and check.

``config.load_config`` validates a file and the environment against this table, and ``config_sections`` has
one typed field per entry (a unit test keeps the two in step). A new option is added here first, with its
default and check, then as a field of its section's dataclass; nothing else restates the default.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    return bool(v > 0)


def _nonneg(v: Any) -> bool:
    return bool(v >= 0)


def _range(lo: float, hi: float) -> Check:
    return lambda v: lo <= v <= hi


def _splits(v: str) -> bool:
    import shlex

    try:
        shlex.split(v)
    except ValueError:
        return False
    return True


def _one_of(*choices: str) -> Check:
    return lambda v: v in choices


OPTIONS: list[Option] = [
    # --- bus
    Option(
        "nats.url",
        str,
        "",
        "NATS URL; empty: the embedded server of the data dir",
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
        False,
        "with nats.url empty: use a server already answering on nats://127.0.0.1:4222 (it may be another user's)",
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
        "nats.replicas",
        int,
        1,
        "JetStream replicas of the streams, the work queue and the KV buckets (3 on a cluster)",
        env="SWARM_NATS_REPLICAS",
        allowed="an integer 1..5",
        check=_range(1, 5),
    ),
    Option(
        "nats.leaf_url",
        str,
        "",
        "join this hub as a leaf node: the embedded server links to it and the app attaches to the hub's engine",
        env="SWARM_NATS_LEAF_URL",
        secret=True,  # a leaf URL may carry user:password
        allowed="a nats://, nats-leaf://, tls:// or ws(s):// URL, or empty",
        check=lambda v: v == "" or (v.split("://", 1)[0] in ("nats", "nats-leaf", "tls", "ws", "wss") and "://" in v),
    ),
    Option("nats.leaf_creds", str, "", "path to a .creds file for the leaf link", env="SWARM_NATS_LEAF_CREDS"),
    Option(
        "nats.leaf_domain",
        str,
        "hub",
        "the hub's JetStream domain (its `jetstream { domain }`): a leaf reaches the hub's streams through it",
        env="SWARM_NATS_LEAF_DOMAIN",
        allowed="letters, digits, - and _",
        check=lambda v: bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v)),
    ),
    Option("nats.leaf_tls_ca", str, "", "CA file to verify the hub on the leaf link", env="SWARM_NATS_LEAF_TLS_CA"),
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
        "openrouter.via_litellm",
        bool,
        False,
        "call OpenRouter through litellm (default: directly over HTTP; litellm stays for ollama_chat/ models)",
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
    # --- needs-you alerts (engine/attention.py; the terminal side in tui/alerts.py)
    Option("notify.bell", bool, True, "ring the terminal bell when something needs you", env="SWARM_NOTIFY_BELL"),
    Option(
        "notify.desktop",
        bool,
        True,
        "a desktop notification (OSC 9 and OSC 777) when something needs you",
        env="SWARM_NOTIFY_DESKTOP",
    ),
    Option(
        "notify.tmux_passthrough",
        bool,
        True,
        "inside tmux, send the desktop notification through tmux's passthrough when allow-passthrough is on",
    ),
    Option(
        "notify.command",
        str,
        "",
        "a command run (no shell) with the event as JSON on stdin when something needs you, e.g. to ping a phone",
        env="SWARM_NOTIFY_COMMAND",
        secret=True,  # a webhook URL or token in its arguments: shown as (set), logged by its program name only
        allowed="a command line (split like a shell does, not run by one)",
        check=lambda v: _splits(v),
    ),
    Option("notify.approval", bool, True, "alert when a decision waits for approval"),
    Option("notify.failed", bool, True, "alert when a job fails"),
    Option("notify.ceiling", bool, True, "alert when spend reaches the daily ceiling"),
    Option("notify.credit", bool, True, "alert when OpenRouter says the key is out of credit"),
    Option("notify.bus", bool, True, "alert when the bus is lost"),
    Option(
        "notify.bus_grace_s",
        float,
        3.0,
        "how long the bus may be down before it counts as lost (reconnects are usually quicker)",
        allowed="a number 0..600",
        check=_range(0, 600),
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

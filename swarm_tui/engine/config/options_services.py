"""The options of the services the swarm uses: the bus (NATS), OpenRouter and Ollama (the conductor's model).

Part of the one table of options (``options.OPTIONS`` puts the parts together in this order).
"""

from __future__ import annotations

import re

from swarm_tui.engine.config.option import Option, in_range, nonneg, positive

# keep_alive as the Ollama API takes it (docs.ollama.com/api/chat, "keep_alive"): a Go duration string ("30m",
# "1h30m", "-1m") or a number of seconds ("0" unloads at once, a negative number keeps the model loaded)
OLLAMA_DURATION = re.compile(r"-?(\d+(\.\d+)?|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)")

SERVICE_OPTIONS: list[Option] = [
    # --- bus
    Option(
        "nats.url",
        str,
        "",
        "NATS URL; empty: the embedded server of the data dir",
        env="SWARM_NATS_URL",
        login=True,
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
        check=in_range(1, 5),
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
        check=in_range(8, 4096),
    ),
    Option(
        "nats.embedded_disk_mb",
        int,
        1024,
        "embedded JetStream file store cap (MB)",
        allowed="an integer 64..1048576",
        check=in_range(64, 1048576),
    ),
    # --- OpenRouter
    Option("openrouter.api_key", str, "", "OpenRouter API key", env="OPENROUTER_API_KEY", secret=True),
    Option(
        "openrouter.management_key",
        str,
        "",
        "OpenRouter management key: the engine makes a runtime key limited to the daily ceiling (reset daily) "
        "and gives it to the workers, a second stop on OpenRouter's side; empty: off",
        env="OPENROUTER_MANAGEMENT_KEY",
        secret=True,
    ),
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
        check=positive,
    ),
    Option(
        "openrouter.fallback_prompt_usd_per_mtok",
        float,
        2.0,
        "conservative prompt price when no price list is known (USD per million tokens)",
        allowed="a number >= 0",
        check=nonneg,
    ),
    Option(
        "openrouter.fallback_completion_usd_per_mtok",
        float,
        8.0,
        "conservative completion price when no price list is known (USD per million tokens)",
        allowed="a number >= 0",
        check=nonneg,
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
        check=in_range(1, 100000),
    ),
    # --- Ollama / the conductor's model
    Option(
        "ollama.host",
        str,
        "http://127.0.0.1:11434",
        "Ollama server",
        env="OLLAMA_HOST",
        login=True,
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
        check=in_range(512, 131072),
    ),
    Option("ollama.timeout_s", float, 60.0, "time limit of one conductor call", allowed="a number > 0", check=positive),
    Option(
        "ollama.keep_alive",
        str,
        "30m",
        "how long Ollama keeps the heartbeat's model loaded after a call, while RAM headroom allows (0 when it "
        "does not): long enough that a beat finds it loaded",
        allowed="an Ollama duration such as 30m, 1h30m or 0 (a number alone is seconds; negative: keep loaded)",
        check=lambda v: bool(OLLAMA_DURATION.fullmatch(v.strip())),
    ),
]

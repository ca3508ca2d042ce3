"""The options of the swarm itself: heartbeat, approval, budget, workers, RAM, UI, alerts, demo, log and paths.

Part of the one table of options (``options.OPTIONS`` puts the parts together, after the services' options).
"""

from __future__ import annotations

from swarm_tui.engine.config.option import Option, alert_levels, in_range, nonneg, one_of, positive, splits

SCALE_LIMIT = 200  # swarm.max_scale's own upper bound
# log.max_bytes: a plain byte count (default 256 MiB); JetStream's max_bytes is an int64, a file store at least 16 MiB
LOG_MAX_BYTES = 256 * 1024 * 1024
LOG_MIN_BYTES = 16 * 1024 * 1024
LOG_TOP_BYTES = 1024**4


def scale_refusal(n: object, max_scale: int, what: str = "scale") -> str | None:
    """Why ``n`` cannot be the live scale (or a decision's worker count) under ``swarm.max_scale``, in the one
    wording the CLI, the control server and the app use; None when it can."""
    if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= max_scale:
        return None
    return (
        f"{what} must be a whole number 0..{max_scale} (swarm.max_scale; the config may raise it up to {SCALE_LIMIT})"
    )


SWARM_OPTIONS: list[Option] = [
    # --- heartbeat
    Option(
        "heartbeat.debounce_s",
        float,
        2.0,
        "wait after a new task so a burst makes one decision",
        env="SWARM_DEBOUNCE_S",
        allowed="a number >= 0",
        check=nonneg,
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
        check=in_range(1, 100),
    ),
    Option(
        "heartbeat.max_workers_per_task",
        int,
        3,
        "workers one decision may give a single task",
        allowed="an integer 1..20",
        check=in_range(1, 20),
    ),
    Option(
        "heartbeat.learn",
        bool,
        True,
        "learn from the person's recent approvals, rejections and edits (examples in the model's prompt, and the "
        "worker count they settle on for a role)",
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
        check=one_of("manual", "auto"),
    ),
    Option(
        "approval.auto_max_usd",
        float,
        0.05,
        "auto-approve limit (estimated worst case, USD)",
        allowed="a number >= 0",
        check=nonneg,
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
        check=nonneg,
    ),
    Option(
        "budget.alerts",
        tuple,
        (0.5, 0.8, 1.0),
        "spend alerts, as parts of the daily ceiling (1.0: the ceiling itself, always shown)",
        env="SWARM_BUDGET_ALERTS",
        allowed="a list of up to 8 numbers above 0 and at most 1, e.g. [0.5, 0.8, 1.0]",
        check=alert_levels,
    ),
    Option(
        "budget.per_decision_usd",
        float,
        0.0,
        "hard ceiling per decision (0: none)",
        allowed="a number >= 0",
        check=nonneg,
    ),
    Option(
        "budget.task_max_usd",
        float,
        0.5,
        "total spend allowed for one task, follow-ups included",
        allowed="a number >= 0",
        check=nonneg,
    ),
    Option(
        "budget.task_max_followups",
        int,
        2,
        "follow-up rounds allowed for one task",
        allowed="an integer 0..20",
        check=in_range(0, 20),
    ),
    # --- swarm
    Option(
        "swarm.scale",
        int,
        10,
        "concurrent workers at start",
        env="SWARM_SCALE",
        allowed=f"an integer 0..swarm.max_scale (at most {SCALE_LIMIT})",  # load_config checks it against max_scale
        check=in_range(0, SCALE_LIMIT),
    ),
    Option(
        "swarm.max_scale",
        int,
        50,
        "upper limit of the scale",
        allowed=f"an integer 1..{SCALE_LIMIT}",
        check=in_range(1, SCALE_LIMIT),
    ),
    Option(
        "swarm.request_timeout_s", float, 180.0, "time limit of one worker call", allowed="a number > 0", check=positive
    ),
    Option(
        "swarm.first_token_timeout_s",
        float,
        30.0,
        "stall limit: a call that receives no byte at all for "
        "this long is retried (OpenRouter's keepalive comments count)",
        allowed="a number > 0",
        check=positive,
    ),
    Option(
        "swarm.first_content_timeout_s",
        float,
        150.0,
        "time limit from the request to the first content "
        "token (reasoning models think first); roles.<name>.first_token_timeout_s overrides it; never more "
        "than swarm.request_timeout_s, which bounds the whole call (and how long a reservation is held)",
        allowed="a number > 0",
        check=positive,
    ),
    Option(
        "swarm.max_retries", int, 3, "retries of a 5xx or a timeout", allowed="an integer 0..10", check=in_range(0, 10)
    ),
    Option(
        "swarm.chunk_flush_ms",
        int,
        50,
        "chunks are coalesced for this long",
        allowed="an integer 5..2000",
        check=in_range(5, 2000),
    ),
    Option(
        "swarm.ack_wait_s",
        float,
        30.0,
        "a job held this long without a sign of life from its worker is "
        "redelivered (workers send in-progress every third of it)",
        env="SWARM_ACK_WAIT_S",
        allowed="a number 3..600",
        check=in_range(3, 600),
    ),
    Option(
        "swarm.context_max_chars",
        int,
        6000,
        "earlier result passed to a chained role, at most",
        allowed="an integer 200..200000",
        check=in_range(200, 200000),
    ),
    # --- RAM
    Option(
        "ram.headroom_mb",
        int,
        1536,
        "RAM to keep available",
        env="SWARM_HEADROOM_MB",
        allowed="an integer 0..1048576",
        check=in_range(0, 1048576),
    ),
    Option("ram.sample_s", float, 2.0, "RAM sampling period", allowed="a number 0.2..60", check=in_range(0.2, 60)),
    # --- UI
    Option(
        "ui.refresh_ms",
        int,
        50,
        "screen refresh of streaming output (raise it on slow ssh links)",
        env="SWARM_REFRESH_MS",
        allowed="an integer 20..5000",
        check=in_range(20, 5000),
    ),
    # --- needs-you alerts (engine/attention/; the terminal side in tui/attention/)
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
        check=lambda v: splits(v),
    ),
    Option("notify.approval", bool, True, "alert when a decision waits for approval"),
    Option("notify.failed", bool, True, "alert when a job fails"),
    Option("notify.spend", bool, True, "alert when spend passes one of budget.alerts below the ceiling"),
    Option("notify.ceiling", bool, True, "alert when spend reaches the daily ceiling"),
    Option("notify.credit", bool, True, "alert when OpenRouter says the key is out of credit"),
    Option("notify.bus", bool, True, "alert when the bus is lost"),
    Option(
        "notify.bus_grace_s",
        float,
        3.0,
        "how long the bus may be down before it counts as lost (reconnects are usually quicker)",
        allowed="a number 0..600",
        check=in_range(0, 600),
    ),
    # --- demo
    Option(
        "demo.tokens_per_s",
        float,
        40.0,
        "demo endpoint's streaming rate per worker",
        env="SWARM_DEMO_TPS",
        allowed="a number 0.1..10000",
        check=in_range(0.1, 10000),
    ),
    Option(
        "demo.tokens", int, 300, "tokens in one demo answer", allowed="an integer 1..100000", check=in_range(1, 100000)
    ),
    Option(
        "demo.usd_per_mtok", float, 0.4, "demo price (USD per million tokens)", allowed="a number >= 0", check=nonneg
    ),
    # --- misc
    Option(
        "log.level",
        str,
        "INFO",
        "log level",
        env="SWARM_LOG_LEVEL",
        allowed="DEBUG, INFO, WARNING or ERROR",
        check=one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Option(
        "log.max_age_days",
        int,
        30,
        "how long the event log keeps an event (days): older ones are dropped",
        allowed="an integer 1..3650",
        check=in_range(1, 3650),
    ),
    Option(
        "log.max_bytes",
        int,
        LOG_MAX_BYTES,
        "the event log's size cap in bytes (268435456 is 256 MiB); the oldest events go first; keep it under "
        "the server's disk cap",
        allowed=f"a whole number of bytes {LOG_MIN_BYTES}..{LOG_TOP_BYTES} (16 MiB..1 TiB)",
        check=in_range(LOG_MIN_BYTES, LOG_TOP_BYTES),
    ),
    Option(
        "paths.data_dir", str, "", "data dir (embedded NATS store, caches); empty: XDG data dir", env="SWARM_DATA_DIR"
    ),
]

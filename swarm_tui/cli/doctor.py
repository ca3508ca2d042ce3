"""`swarm-tui doctor`: one line per check; required checks decide the exit code. With ``--demo`` it checks the
demo's setup: its own store and the built-in endpoint instead of the OpenRouter key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.topology import describe, one_line
from swarm_tui.engine.config.load import Config, hide_login
from swarm_tui.engine.errors import BusError
from swarm_tui.engine.guards.ceiling_kv import ceiling_in_force
from swarm_tui.engine.guards.memory import ram_snapshot
from swarm_tui.engine.models import is_local_chat, ollama_url


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        return f"{mark} {self.name:<11} {self.detail}"


async def _get_json(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as resp:
        try:
            body = await resp.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            body = None
        return resp.status, body


async def check_nats(cfg: Config, notes: list[Check] | None = None) -> Check:
    """The bus; with ``notes``, the checks read from it while connected are added there (the daily ceiling)."""
    bus = Bus(cfg)
    try:
        await bus.connect(connect_timeout=3)
    except BusError as exc:
        return Check("nats", False, str(exc))
    kind, why = bus.kind, bus.why
    if bus.pin is not None:  # the data dir's embedded server: other local users' logins are refused
        why += "; a token of its own: this user's alone"
    try:
        shape = one_line(await describe(bus))
        if notes is not None:
            notes.append(await check_ceiling(bus, cfg))
            notes.append(await check_log(bus))
    finally:
        await bus.close()
    extra = " (started for this check, stopped again)" if kind == "embedded" else ""
    # which bus and why: a server nobody configured is never used silently (nats.probe_default)
    return Check("nats", True, f"{kind} server reachable ({why}), JetStream streams ready{extra}; bus: {shape}")


async def check_ceiling(bus: Bus, cfg: Config) -> Check:
    """The daily ceiling a worker on this bus spends under, and where it comes from (a worker never uses its
    own config's: engine/guards/ceiling_kv.py)."""
    try:
        usd, why = await ceiling_in_force(bus, cfg)
    except Exception as exc:  # noqa: BLE001 - the bucket cannot be read: say so, the bus check says why
        return Check("ceiling", False, f"not read from the bus ({type(exc).__name__})", required=False)
    if usd is None:
        return Check("ceiling", False, f"{why}: a worker here waits until an engine starts", required=False)
    return Check("ceiling", True, f"${usd:.2f} a day: {why}", required=False)


async def check_log(bus: Bus) -> Check:
    """The event log's size and oldest event against its limits (log.max_bytes, log.max_age_days)."""
    from swarm_tui.engine.history.usage import log_usage, nearly_full, usage_line

    try:
        u = await log_usage(bus)
    except Exception as exc:  # noqa: BLE001 - the stream cannot be read: say so, the bus check says why
        return Check("log", False, f"not read from the bus ({type(exc).__name__})", required=False)
    if nearly_full(u):
        line = usage_line(u) + ": nearly full, the oldest events go first (raise log.max_bytes to keep more)"
        return Check("log", False, line, required=False)
    return Check("log", True, usage_line(u), required=False)


async def check_ollama(cfg: Config, session: aiohttp.ClientSession) -> Check:
    base = ollama_url(cfg.ollama.host)
    shown = hide_login(base)  # OLLAMA_HOST may carry a login (httpx sends it as Basic auth): never printed
    model = cfg.ollama.model
    try:
        status, body = await _get_json(session, f"{base}/api/tags")
    except (TimeoutError, aiohttp.ClientError, OSError):
        why = f"not reachable at {shown}: the conductor decides by rules alone (model {model}, keep_alive "
        return Check(
            "ollama",
            False,
            why + f"{cfg.ollama.keep_alive} and num_ctx {cfg.ollama.num_ctx} once it is)",
            required=False,
        )
    if status != 200 or not isinstance(body, dict):
        return Check("ollama", False, f"{shown} answered HTTP {status}", required=False)
    names = {m.get("name", "") for m in body.get("models", []) if isinstance(m, dict)}
    want = model if ":" in model else model + ":latest"
    if model in names or want in names:
        window = await loaded_window(session, base, {model, want}, cfg.ollama.num_ctx)
        detail = f"{shown}, model {model} is pulled; keep_alive {cfg.ollama.keep_alive}, {window}"
        return Check("ollama", True, detail, required=False)
    return Check(
        "ollama", False, f"{shown} reachable but model {model} is not pulled: run `ollama pull {model}`", required=False
    )


async def loaded_window(session: aiohttp.ClientSession, base: str, names: set[str], num_ctx: int) -> str:
    """The window the heartbeat's prompts are sized for, in words: num_ctx, or the smaller context_length that
    Ollama's /api/ps reports for the loaded model (docs.ollama.com/api/ps; newer Ollama reports it)."""
    try:
        status, body = await _get_json(session, f"{base}/api/ps")
    except (TimeoutError, aiohttp.ClientError, OSError):
        status, body = 0, None
    models = body.get("models") if status == 200 and isinstance(body, dict) else None
    if not isinstance(models, list):
        return f"num_ctx {num_ctx} (/api/ps not read: the window is checked after each call)"
    ours = [m for m in models if isinstance(m, dict) and {m.get("name"), m.get("model")} & names]
    if not ours:
        return f"num_ctx {num_ctx} (the model is not loaded now: its window is read after its first call)"
    ctx = ours[0].get("context_length")
    if not isinstance(ctx, int) or isinstance(ctx, bool) or ctx <= 0:
        return f"num_ctx {num_ctx} (loaded; this Ollama does not report its window)"
    if ctx < num_ctx:
        return f"num_ctx {num_ctx}, but the model is loaded with a {ctx}-token window: prompts are sized for {ctx}"
    return f"num_ctx {num_ctx}, loaded with a {ctx}-token window"


async def check_openrouter(cfg: Config, session: aiohttp.ClientSession) -> Check:
    key = cfg.openrouter.api_key
    cloud = sorted(r.name for r in cfg.roles.values() if not is_local_chat(r.model))
    if not key and cfg.openrouter.management_key:  # the provider cap's check below says whether it can make one
        return Check("openrouter", True, "OPENROUTER_API_KEY is not set: the workers use the provider cap's key")
    if not key and not cloud:  # a fully local swarm (swarm-tui init --local): the key is never used
        return Check("openrouter", True, "OPENROUTER_API_KEY is not set: not needed, every role is local (Ollama)")
    if not key:
        local = len(cfg.roles) - len(cloud)
        also = f"; the {local} local role(s) run without it" if local else ""
        why = f"OPENROUTER_API_KEY is not set: cloud roles ({', '.join(cloud)[:80]}) cannot run{also} (try --demo)"
        return Check("openrouter", False, why)
    base = cfg.openrouter.api_base.rstrip("/")
    try:
        status, body = await _get_json(session, f"{base}/key", headers={"Authorization": f"Bearer {key}"})
    except (TimeoutError, aiohttp.ClientError, OSError):
        return Check("openrouter", True, "key present; OpenRouter not reachable to verify it")
    if status == 200 and isinstance(body, dict):
        data = body.get("data", body)
        left = data.get("limit_remaining") if isinstance(data, dict) else None
        # the key's own limit (null: none), not the account's credit
        extra = f", key limit left ${left:.2f}" if isinstance(left, int | float) else ", no key limit"
        return Check("openrouter", True, f"key valid{extra}")
    if status in (401, 403):
        return Check("openrouter", False, f"key rejected by OpenRouter (HTTP {status})")
    return Check("openrouter", True, f"key present; OpenRouter answered HTTP {status}")


async def check_provider_cap(cfg: Config, session: aiohttp.ClientSession) -> list[Check]:
    """With a management key: whether OpenRouter takes it (``GET /keys``, "List API keys") and the runtime key the
    engine makes or reuses (guards/provider_cap.py), by its name. Without one: no line."""
    mkey = cfg.openrouter.management_key
    if not mkey:
        return []
    import socket

    name = f"swarm-tui {socket.gethostname()}"[:100]
    url = cfg.openrouter.api_base.rstrip("/") + "/keys"
    own = "the engine's own ceiling still holds"
    if any(c in mkey for c in "\r\n\0"):  # a .env saved with CRLF: the key is wrong, not the network
        return [Check("provider", False, f"OPENROUTER_MANAGEMENT_KEY holds a line break or NUL: remove it; {own}")]
    try:
        status, body = await _get_json(session, url, headers={"Authorization": f"Bearer {mkey}"})
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return [Check("provider", False, f"management API not reachable ({type(exc).__name__}): {own}", False)]
    if status in (401, 403):
        why = f"management key rejected by OpenRouter (HTTP {status}): check OPENROUTER_MANAGEMENT_KEY; {own}"
        return [Check("provider", False, why)]
    keys = body.get("data") if status == 200 and isinstance(body, dict) else None
    if not isinstance(keys, list):
        return [Check("provider", False, f"management API answered HTTP {status}: {own}", False)]
    ours = [k for k in keys if isinstance(k, dict) and k.get("name") == name and not k.get("disabled")]
    limit = ours[0].get("limit") if ours else None
    if ours and isinstance(limit, int | float) and not isinstance(limit, bool):
        return [Check("provider", True, f"key {name!r}: provider cap ${limit:.2f}/day ({ours[0].get('limit_reset')})")]
    return [Check("provider", True, f"management key valid; the engine makes {name!r} at start, limited daily")]


def check_ram(cfg: Config) -> Check:
    r = ram_snapshot(cfg)
    ok = not r["low"]
    detail = f"{r['available_mb']} MB available of {r['total_mb']} MB, headroom {r['headroom_mb']} MB"
    if not ok:
        detail += ": below headroom, local inference will be deferred"
    return Check("ram", ok, detail, required=False)


async def check_demo(cfg: Config, session: aiohttp.ClientSession) -> list[Check]:
    """With ``--demo`` the workers call the built-in endpoint, not OpenRouter: it is started here and asked what a
    pool asks first (``GET /key``), and the OpenRouter key is not needed (said, not failed)."""
    from swarm_tui.engine.swarm.demo_endpoint import DemoEndpoint

    demo = DemoEndpoint(cfg.demo)
    try:
        await demo.start()
        status, _ = await _get_json(session, f"{demo.base}/key", headers={"Authorization": f"Bearer {demo.KEY}"})
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        status, why = 0, f"{type(exc).__name__}: {exc}"
    else:
        why = f"HTTP {status}"
    finally:
        await demo.stop()
    d = cfg.demo
    if status == 200:
        demo_c = Check(
            "demo",
            True,
            f"the built-in endpoint answers on 127.0.0.1 (started for this check, stopped again): workers stream "
            f"synthetic answers at {d.tokens_per_s:g} tokens/s, up to {d.tokens} tokens, ${d.usd_per_mtok:g} per "
            "million tokens; no key needed",
        )
    else:
        demo_c = Check("demo", False, f"the built-in endpoint did not answer ({why}): demo workers cannot run")
    key = "set, not used" if cfg.openrouter.api_key else "not set: needed only without --demo"
    orr = Check("openrouter", True, f"not used with --demo (OPENROUTER_API_KEY {key})", required=False)
    return [demo_c, orr]


async def check_prices(cfg: Config) -> Check:
    """The roles' models whose price is unknown (priced at the fallback) or partial (refused under a ceiling), as
    the cached price list tells it (``swarm-tui spend`` names the ones that were spent on)."""
    from swarm_tui.engine.guards.prices import PriceBook
    from swarm_tui.engine.guards.spend_view import book_problem, price_gaps

    book = PriceBook(cfg.openrouter, cfg.paths, fetch=False)
    if not await book.load_cache():
        return Check("prices", False, "no price list cached yet: the engine fetches it at start", required=False)
    models = [r.model for r in cfg.roles.values()] + [m for r in cfg.roles.values() for m in r.fallback_models]
    gaps = price_gaps(models, book_problem(book))
    if not gaps:
        return Check("prices", True, f"every role's model is in the price list ({book.price_source()})", required=False)
    named = "; ".join(f"{g['model']} {g['price']}" for g in gaps[:4]) + (" ..." if len(gaps) > 4 else "")
    return Check("prices", False, f"price unknown or partial: {named} (swarm-tui spend says why)", required=False)


async def run_doctor(cfg: Config, *, demo: bool = False) -> list[Check]:
    timeout = aiohttp.ClientTimeout(total=4)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        notes: list[Check] = []
        workers = check_demo(cfg, session) if demo else _one(check_openrouter(cfg, session))
        cap = check_provider_cap(cfg, session) if not demo else _none()
        nats_c, oll, worker_checks, cap_checks = await asyncio.gather(
            check_nats(cfg, notes), check_ollama(cfg, session), workers, cap
        )
    prices = [] if demo else [await check_prices(cfg)]  # the demo prices its own models
    return [nats_c, *notes, oll, *worker_checks, *cap_checks, *prices, check_ram(cfg)]


async def _one(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _none() -> list[Check]:
    return []

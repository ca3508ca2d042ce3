"""Adversary 4 against issue 27: the provider-side cap, spend alerts, the spend view, traces.

Each test is a finding: it fails on the code as merged (a983b14) and says what breaks and why it matters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from swarm_tui.engine.guards.provider_cap import KEY_FILE
from tests.support.env import make_config
from tests.support.fake_openrouter_keys import MANAGEMENT_KEY, FakeOpenRouterKeys, cap_config, capped_engine, new_cap

pytestmark = pytest.mark.fault


def live_keys(fo: FakeOpenRouterKeys, name: str = "swarm-tui h1") -> list[dict[str, Any]]:
    return [k for k in fo.by_name(name) if not k["disabled"]]


def reroute_create(fo: FakeOpenRouterKeys, handler: Any, method: str = "POST", path: str = "/api/v1/keys") -> None:
    """POST /keys (or ``method`` ``path``) answered by ``handler`` (the route was bound at __aenter__)."""
    assert fo._runner is not None
    for r in fo._runner.app.router.routes():
        if r.method == method and r.resource is not None and r.resource.canonical == path:
            r._handler = handler


async def test_a_lost_key_file_gives_a_second_full_days_limit(tmp_path: Path) -> None:
    """MONEY. The provider cap is the stop that holds "if our engine dies, is misconfigured or is tricked". Spend the
    whole $5 ceiling through the runtime key, then lose provider_key.json (corrupt, deleted, a data dir restored from
    a backup, or the runtime key revoked by hand mid-run): the engine makes a NEW runtime key whose limit is the
    full ceiling again, with a fresh usage_daily of 0. OpenRouter now lets another $5 through today: the
    provider-side total for one day is ceiling x (keys made), not the ceiling. The old key's usage_daily is known to
    the management API (GET /keys) and today's spend to the engine; the new key's limit ignores both
    (provider_cap.py: _load_or_create's POST body is {"limit": self.wanted()}, and sync PATCHes it back to wanted())."""
    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        cap = new_cap(cfg, [5.0])
        await cap.start()
        await cap.stop()
        (old,) = fo.by_name("swarm-tui h1")
        for u in ("usage", "usage_daily", "usage_weekly", "usage_monthly"):
            old[u] = 5.0  # today's ceiling, all spent through the capped key
        (Path(cfg.paths.data_dir) / KEY_FILE).write_text("{corrupt")
        cap2 = new_cap(cfg, [5.0])
        await cap2.start()
        await cap2.stop()
        new = [k for k in fo.by_name("swarm-tui h1") if k is not old]
        assert len(new) == 1
        room_today = sum(float(k["limit"]) - fo.spent(k) for k in live_keys(fo) if k["limit"] is not None)
        assert room_today <= 0.0, f"the provider lets ${room_today:.2f} more through today past a $5.00 ceiling"


async def test_a_tampered_key_file_runs_the_workers_on_a_key_that_is_not_ours(tmp_path: Path) -> None:
    """MONEY/TRUST. The module's doc says a stored key is reused "when GET /key with it answers 200 and its name is
    ours"; the code never checks the name (GET /key has none: only a label) nor that the stored hash is the key's.
    provider_key.json naming another key of the account (an uncapped one: here made with no limit) with a hash
    the API does not know: GET /key answers 200, so the engine adopts the key, its PATCH of the limit answers 404,
    and the state is 'failed' while the workers keep calling with the UNCAPPED key forever (a 404 never makes the
    engine drop the key and make its own). The provider-side stop is gone without anyone asked."""
    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        cap0 = new_cap(cfg, [5.0], host="other")  # any other key of the account: give it no limit
        await cap0.start()
        await cap0.stop()
        (other,) = fo.by_name("swarm-tui other")
        other["limit"] = None
        path = Path(cfg.paths.data_dir) / KEY_FILE
        doc = json.loads(path.read_text())
        doc.update(name="swarm-tui h1", hash="0" * 64)  # names us; a hash the API does not have
        path.write_text(json.dumps(doc))
        cap = new_cap(cfg, [5.0])
        await cap.start()
        await cap.sync()
        await cap.stop()
        uses_other = cap.worker_key() == other["secret"]
        assert not uses_other, (
            f"the workers call with an uncapped key not made by this engine; cap says {cap.info()['line']!r}"
        )


async def test_a_create_answer_without_the_key_leaks_a_live_key_at_every_sync(tmp_path: Path) -> None:
    """TRUST (a key leak at the provider). POST /keys succeeds at OpenRouter (the key exists, limit = ceiling, enabled)
    but the answer lacks `key` (a proxy, a changed API, a truncated body), or storing provider_key.json fails
    (disk full: OSError after the POST). The engine raises CapError without disabling the key it just made (it has
    its hash in `data`), and the next sync (every key_poll_s, and every `budget`) makes another: an hour at the
    default poll leaves dozens of live, unmanaged keys in the account, each allowed the full daily ceiling."""
    async with FakeOpenRouterKeys() as fo:
        create = fo._create

        async def no_key(request: web.Request) -> web.Response:
            resp = await create(request)
            body = json.loads(resp.body)  # type: ignore[arg-type]
            body.pop("key", None)
            return web.json_response(body, status=resp.status)

        reroute_create(fo, no_key)
        cfg = cap_config(tmp_path, fo)
        cap = new_cap(cfg, [5.0])
        await cap.start()
        for _ in range(3):
            await cap.sync()
        await cap.stop()
        assert cap.info()["state"] == "failed"
        assert len(live_keys(fo)) <= 1, f"{len(live_keys(fo))} live keys made and left enabled at the provider"


def test_a_small_ceiling_alerts_at_zero_spend() -> None:
    """WRONG TEXT (a false alarm). alert_level counts a level as passed at `spent >= a * ceiling - CEILING_SLACK_USD`
    (engine/attention/needs.py): the $0.0001 slack that makes sense for the ceiling itself (no call is cheaper) is
    subtracted from every level. With a $0.0002 ceiling (or budget.alerts = [0.01, ...] on a $0.01 one) nothing has
    been spent and the need says "spend passed 50% of the daily ceiling ($0.0000 of $0.0002)": it rings the bell,
    the desktop notification and notify.command for money that was never spent."""
    from swarm_tui.engine.attention.needs import alert_level

    tiny: Any = {"today_usd": 0.0, "ceiling_usd": 0.0002}
    cent: Any = {"today_usd": 0.0, "ceiling_usd": 0.01}
    assert alert_level(tiny, (0.5, 0.8, 1.0)) is None
    assert alert_level(cent, (0.01, 0.5, 1.0)) is None


async def test_notify_command_inherits_the_management_key(tmp_path: Path, monkeypatch: Any) -> None:
    """SECRET. notify.command (a user's webhook script, a third-party notifier) is started with the app's whole
    environment (engine/attention/notifier.py: create_subprocess_exec with no env=): OPENROUTER_MANAGEMENT_KEY, the
    key that can make keys with any limit, and OPENROUTER_API_KEY are handed to it on every spend alert. The issue
    says the management key is a secret everywhere; a notification hook needs the need on stdin, not the keys."""
    import sys

    from swarm_tui.engine.attention import notifier as notify
    from swarm_tui.engine.info import Need
    from swarm_tui.engine.projection.state import SwarmState

    monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", MANAGEMENT_KEY)
    out = tmp_path / "env.txt"
    script = "import os,sys; open(sys.argv[1],'w').write(repr(dict(os.environ))); sys.stdin.read()"
    import shlex

    cfg = make_config(tmp_path).replace(notify__command=f"{sys.executable} -c {shlex.quote(script)} {out}")
    n = notify.Notifier(cfg.notify, None, SwarmState())  # type: ignore[arg-type]  # run_command needs no bus
    need: Need = {"kind": "spend", "what": "spend passed 50%", "since": 1.0, "latest": 1.0, "count": 1, "seen": False}
    assert await n.run_command(need) is True
    assert MANAGEMENT_KEY not in out.read_text(), "notify.command's environment holds OPENROUTER_MANAGEMENT_KEY"


async def test_the_provider_limit_is_rounded_up_past_the_ceiling(tmp_path: Path) -> None:
    """MONEY (small amounts, but the promise broken). ProviderCap.wanted() sends round(ceiling, 2) as the key's limit:
    a ceiling of $0.016 becomes a provider limit of $0.02 (25% over the ceiling the provider was meant to enforce),
    and $0.004 becomes $0.00 (the provider refuses every call the engine allows). A second stop must never be looser
    than the first: the limit wants rounding DOWN (or no rounding: OpenRouter takes decimals), and
    _limit_of/`self.limit != want` compare at the same precision."""
    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo)
        cap = new_cap(cfg, [0.016])
        await cap.start()
        await cap.stop()
        (k,) = fo.by_name("swarm-tui h1")
        assert k["limit"] <= 0.016, f"the provider-side limit is ${k['limit']} for a ${0.016} ceiling"


def test_spend_view_total_counts_an_entry_no_day_holds() -> None:
    """WRONG TEXT (the figures disagree). spend_view keeps the entries with utc_day(at) >= the window's first day but
    no upper bound, while its days column (the fold's spend_days) stops at today. Trust lets an entry be stored up
    to CLOCK_SKEW_S (300 s) after it was stored, so a worker whose clock runs 2 minutes ahead, or any entry stamped
    a moment past midnight while the viewer's clock reads 23:58 UTC, is in `total_usd` / "billed" and in by_model,
    by_role and by_task, but in no day: `swarm-tui spend` prints a total that is not the sum of its days, and whose
    today is not what status and the Spend panel show."""
    from swarm_tui.engine.guards.spend_view import spend_view
    from tests.unit.test_projection import fold, spend, task

    midnight = 1_750_032_000.0  # 2025-06-16 00:00:00 UTC
    now = midnight - 120  # 23:58 on the viewer's clock
    st = fold([task(at=now - 600), spend("d-a", 0, 0.25, at=now - 60), spend("d-a", 1, 0.5, at=midnight + 10)])
    view = spend_view(st, now, 7)
    days_sum = round(sum(d["usd"] for d in view["days"]), 6)
    assert view["total_usd"] == days_sum, f"total {view['total_usd']} but the days add up to {days_sum}"


def test_the_spend_screen_holds_the_loop_every_two_seconds_on_a_long_log() -> None:
    """SLOW. The $ screen redraws every REDRAW_S (2 s) by recomputing the whole spend view from every spend entry
    of the log (tui/screens/spend.py: redraw -> view_of -> spend_view, then spend_lines), on the app's event loop,
    even when nothing was spent since (it compares the text only after building it). A log of 10,000 tasks (3 calls
    each) takes ~0.2 s a redraw here: while the screen is open the UI stalls that long every 2 s, and the streaming
    chunk-to-screen p99 (< 100 ms, docs/performance.md) cannot hold. The fold already keeps spend_days and totals;
    the view wants the same (or a recompute only when the spend entries changed)."""
    import time

    from swarm_tui.tui.screens.spend import spend_text, view_of
    from tests.unit.test_projection import NOW, fold, spend, task

    evs: list[Any] = []
    for i in range(10_000):
        evs.append(task(f"t-{i}", at=NOW - 100))
        evs.extend(spend(f"d-{i}", j, 0.001, tid=f"t-{i}", model=f"openrouter/m/{j}") for j in range(3))
    st = fold(evs)
    info: Any = {"reconciling": 0, "reconciling_usd": 0.0}
    spend_text(view_of(st, info, NOW + 60))  # warm
    t0 = time.perf_counter()
    spend_text(view_of(st, info, NOW + 60))
    took = time.perf_counter() - t0
    assert took < 0.05, f"one redraw of the $ screen with nothing new held the loop {took * 1000:.0f} ms"


async def test_an_otel_endpoint_in_the_environment_without_the_extra_crashes_the_engine(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """CRASH. Traces are opt-in through the STANDARD variable OTEL_EXPORTER_OTLP_ENDPOINT, which people who run a
    collector set for the whole shell (every OTel-instrumented program reads it). Without the optional extra
    (`pip install 'swarm-tui[otel]'`, the default install has no OpenTelemetry) seam.wanted() says yes and
    assemble() (the app, run --headless) and build_pool() (swarm-tui worker) import telemetry/otel.py, which
    imports opentelemetry: ModuleNotFoundError, so the engine never starts ('internal error'), for a variable meant
    for other programs. Expected: one line saying traces are off because the extra is missing (or a usage error
    naming the extra), never a crash."""
    import sys

    from swarm_tui.engine.assemble import assemble
    from swarm_tui.engine.bus.client import Bus
    from swarm_tui.engine.telemetry import seam

    for m in list(sys.modules):
        if m.startswith("opentelemetry") or m == "swarm_tui.engine.telemetry.otel":
            monkeypatch.delitem(sys.modules, m)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # the default install: no [otel] extra
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setattr(seam, "_tracer", seam.Noop())
    cfg = make_config(tmp_path)
    try:
        assemble(cfg, Bus(cfg), conductor=False)
    except ModuleNotFoundError as exc:
        raise AssertionError(f"the engine does not start: {exc}") from None


def test_tracing_scans_every_open_task_at_every_event() -> None:
    """SLOW (tracing on). Tracer.on_event ends with _end_tasks(), which looks up EVERY open task span in the state at
    EVERY event of the log (engine/telemetry/otel.py), on the engine's loop. With 10,000 tasks queued (a batch
    submit, a backlog) each event costs ~1 ms more, and the submit itself is quadratic (the n-th task scans n-1
    spans): the loop that serves the app's frames and the workers' chunks stalls for seconds. Only the tasks the
    event touches can have ended; turning traces on must not change the engine's cost per event with the backlog."""
    import time

    from opentelemetry.sdk.trace import TracerProvider

    from swarm_tui.engine.telemetry.otel import Tracer
    from tests.unit.test_projection import NOW, fold, spend, task

    tr = Tracer(TracerProvider(), capture=False, endpoint="")
    tasks: list[Any] = [task(f"t-{i}", at=NOW) for i in range(4_000)]  # 10,000: ~1.3 ms an event, a 7 s submit
    tr.state, tr.live = fold(tasks), True
    t0 = time.perf_counter()
    for ev in tasks:
        tr.on_event(ev)
    submit = time.perf_counter() - t0
    entry = spend("d-x", 0, 0.001, tid="t-1")
    t0 = time.perf_counter()
    for _ in range(200):
        tr.on_event(entry)
    per_event_ms = (time.perf_counter() - t0) / 200 * 1000
    assert per_event_ms < 0.1 and submit < 0.4, (
        f"with 4,000 open tasks: {per_event_ms:.2f} ms of tracing per event; the submit took {submit:.1f} s"
    )


def test_otel_traces_exporter_none_is_not_honoured() -> None:
    """TRUST (a standard variable ignored). The issue asks for "the standard OTEL_* variables honoured". The SDK's
    standard way to turn trace export off for ONE program while OTEL_EXPORTER_OTLP_ENDPOINT is set for the shell
    is OTEL_TRACES_EXPORTER=none; seam.wanted() reads only OTEL_SDK_DISABLED and the endpoint variables, and
    Tracer.create builds an OTLPSpanExporter whatever OTEL_TRACES_EXPORTER says: the spans (task ids, models,
    costs, and with the capture flag the prompts) still go to the collector the user switched off for this app."""
    from swarm_tui.engine.telemetry.seam import wanted

    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}
    assert not wanted("", env)


async def test_a_runtime_key_revoked_mid_run_fails_work_until_the_next_poll(
    tmp_path: Path, nats_server: Any, monkeypatch: Any
) -> None:
    """TRUST (work lost). The runtime key is disabled at OpenRouter by hand (or by another engine of the same name)
    while the engine runs. The README promises a new key "when it is lost or disabled", but ProviderCap only looks
    at each openrouter.key_poll_s (60 s): the workers' next calls are refused 401, which fails the job in hand for
    good (a 401 is 'fatal') and stops cloud work as a rejected key, though the engine holds a management key that
    could make a new key at once. A 401 on the runtime key should make the cap sync now (and the job wait for it)."""
    import time as _time

    from swarm_tui.engine.bus import subjects as S
    from swarm_tui.engine.bus.wire import ChatMessage, Job
    from swarm_tui.engine.guards import credit
    from tests.support.polling import until

    monkeypatch.setattr(credit, "RECHECK_GAP_S", 0.2)
    async with capped_engine(tmp_path, nats_server.url) as (fo, bus, engine):
        (k,) = fo.by_name(f"swarm-tui {engine.host}")
        k["disabled"] = True  # revoked by hand at openrouter.ai
        j = Job(
            id="d-1-j0", worker_id="d-1-w0", decision_id="d-1", task_id="t-1", role="research",
            model="openrouter/google/gemini-2.5-flash-lite", max_tokens=800,
            messages=[ChatMessage(role="user", content="x" * 300)], created_at=_time.time(),
        )  # fmt: skip
        await bus.publish(S.job("cloud", j.id), j.to_bytes(), msg_id=j.id)
        state = engine.state
        await until(lambda: j.id in state.results or len(fo.by_name(k["name"])) > 1, 15, "an answer or a new key")
        await _sleep(3.0)
        res = state.results.get(j.id)
        assert res is not None and res.state == "done", (
            f"the job: {res.state if res else 'no result'} ({res.reason if res else ''}); "
            f"runtime keys made: {len(fo.by_name(k['name']))}"
        )


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


async def test_doctor_calls_a_management_key_with_a_carriage_return_an_unreachable_api(tmp_path: Path) -> None:
    """WRONG TEXT. OPENROUTER_MANAGEMENT_KEY read from a .env saved with CRLF ends in '\\r'. The engine's cap says
    "a key holds a line break or NUL: check OPENROUTER_MANAGEMENT_KEY", but doctor (check_provider_cap) lets
    aiohttp refuse the header and reports "warn provider management API not reachable (ValueError)": a network
    warning, not a failed check, sending the user to look at the network instead of the key."""
    from swarm_tui.cli.doctor import run_doctor

    async with FakeOpenRouterKeys() as fo:
        cfg = cap_config(tmp_path, fo, OPENROUTER_MANAGEMENT_KEY=MANAGEMENT_KEY + "\r")
        (check,) = [c for c in await run_doctor(cfg) if c.name == "provider"]
        assert "reachable" not in check.line() and "OPENROUTER_MANAGEMENT_KEY" in check.line(), check.line()
        assert not check.ok


async def test_a_slow_create_leaks_a_live_key_at_every_retry(tmp_path: Path) -> None:
    """TRUST (keys pile up at the provider). The management API is slow: POST /keys makes the key at OpenRouter but
    its answer comes after the client's timeout (10 s in ProviderCap._session; 0.3 s here). The engine reports
    "management API unreachable (TimeoutError)" and at the next sync (every key_poll_s, every `budget`) POSTs
    again: each try leaves one more enabled key named 'swarm-tui <host>' with the full daily limit, which it never
    looks for (GET /keys by name) nor disables. A flaky hour leaves dozens, each a live key with a full day's
    limit that no later `budget` lowers."""
    import asyncio

    import aiohttp

    async with FakeOpenRouterKeys() as fo:
        create = fo._create

        async def slow(request: web.Request) -> web.Response:
            resp = await create(request)  # made at the provider...
            await asyncio.sleep(0.6)  # ...answered too late
            return resp

        reroute_create(fo, slow)
        cfg = cap_config(tmp_path, fo)
        cap = new_cap(cfg, [5.0])
        cap._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
        for _ in range(3):
            await cap.sync()
        await cap.stop()
        await asyncio.sleep(0.7)
        assert cap.info()["state"] == "failed"
        assert len(live_keys(fo)) <= 1, f"{len(live_keys(fo))} live keys made and left enabled at the provider"


async def test_a_key_whose_reset_stays_lifetime_is_called_a_daily_cap(tmp_path: Path) -> None:
    """WRONG TEXT, then work stopped. The API answers the create and the PATCH with limit_reset null (a lifetime
    limit: another API version, a proxy that drops the field, an account policy). sync() checks only the limit
    after its PATCH and sets _stale = False whatever limit_reset reads, so status and the Spend panel say
    "provider cap $5.00/day" while OpenRouter holds a $5 LIFETIME limit: after the first day's spend every cloud
    call is refused 402 for good, and the engine never PATCHes the reset again while it runs."""

    async with FakeOpenRouterKeys() as fo:
        create, update = fo._create, fo._update

        def lifetime(h: str) -> web.Response:
            fo.runtime[h]["limit_reset"] = None
            return web.json_response({"data": fo.public(fo.runtime[h])})

        async def lying_create(request: web.Request) -> web.Response:
            resp = await create(request)
            body = json.loads(resp.body)  # type: ignore[arg-type]
            h = body["data"]["hash"]
            fo.runtime[h]["limit_reset"] = None
            body["data"] = fo.public(fo.runtime[h])
            return web.json_response(body, status=201)

        async def lying_update(request: web.Request) -> web.Response:
            await update(request)
            return lifetime(request.match_info["hash"])

        reroute_create(fo, lying_create)
        reroute_create(fo, lying_update, "PATCH", "/api/v1/keys/{hash}")
        cap = new_cap(cap_config(tmp_path, fo), [5.0])
        await cap.start()
        await cap.sync()
        await cap.stop()
        (k,) = fo.by_name("swarm-tui h1")
        assert k["limit_reset"] is None  # the provider's truth: a lifetime limit
        assert not (cap.info()["state"] == "on" and "/day" in cap.info()["line"]), cap.info()["line"]

"""Issue 25, adversary round 1: the CLI and the shared figures (config's resolved places, [keys], status's
worker lines and pool figures, an edited decision's estimate).

Each test fails on 19af59d and says in its docstring what breaks and why it matters. They run the CLI as a user
runs it (tests/support/env.py) against a real nats-server where a bus is needed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task, WorkerEvent
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.errors import ConfigError
from swarm_tui.engine.projection.figures import decision_estimate
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import base_env, run_cli

pytestmark = pytest.mark.fault

MODEL = "openrouter/deepseek/deepseek-chat-v3.1"
CHEAP = "openrouter/qwen/qwen3-coder"
NOW = 1_750_000_000.0


def _strict_json(text: str) -> Any:
    """JSON as any other program reads it: NaN and Infinity are not JSON (RFC 8259; jq, JavaScript refuse them)."""

    def refuse(c: str) -> Any:
        raise ValueError(f"{c} is not JSON")

    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------------ secrets
@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize(
    ("url", "secret"),
    [
        # a password with "@" in it: nats-py (urllib) splits the login at the LAST "@", the mask at the first
        ("nats://alice:hunter2@XyZzY-9k@127.0.0.1:4222", "XyZzY-9k"),
        # a password with "/" in it: the mask stops at the "/" and hides nothing
        ("nats://alice:s3/cr3t-Pw@127.0.0.1:4222", "cr3t-Pw"),
    ],
    ids=["at-sign", "slash"],
)
def test_config_never_prints_a_login_in_nats_url(tmp_path: Path, url: str, secret: str, as_json: bool) -> None:
    """SECRET. `config` (and `config --json`) promise "secrets masked" and print nats.url through
    ``config.load.hide_login``, whose pattern ``//[^/@,]*@`` stops at the first "@" or "/". A password holding
    "@" (``hunter2@XyZzY-9k``, which nats-py reads whole: urllib splits the login at the last "@") is printed
    from its "@" on as ``nats://(login)@XyZzY-9k@127.0.0.1:4222``; one holding "/" is printed whole. Both lines
    (plain: ``nats.url =`` and ``# bus:``; JSON: ``values.nats.url`` and ``resolved.bus``) carry it. The config
    is what people paste into issues; ``bus/reasons.safe_url`` (urlparse, host and port only) does it right."""
    if "@XyZzY" in url:
        assert urlparse(url).password == "hunter2@XyZzY-9k"  # the password nats-py sends
    res = run_cli(["config", *(["--json"] if as_json else [])], base_env(tmp_path, SWARM_NATS_URL=url))
    assert res.returncode == 0, res.stderr
    assert secret not in res.stdout + res.stderr, res.stdout


@pytest.mark.parametrize(
    "url",
    [
        "nats://alice:s3cretPw0rd@h1:4222,h2:4222",  # the second server without its scheme
        "NATS://alice:s3cretPw0rd@h1:4222",  # an upper-case scheme
    ],
)
def test_a_refused_nats_url_does_not_print_its_login(tmp_path: Path, url: str) -> None:
    """SECRET (older than issue 25, in scope of "anything secret must never print"). A nats.url the check refuses
    is one line and exit 2, as it should be, but the line is ``bad value 'nats://alice:s3cretPw0rd@h1:4222,...'
    for nats.url``: ``config.load._coerce`` hides the value only for options marked secret, and nats.url is not
    one although it may carry a login (``masked`` and ``hide_login`` exist for exactly that). Any command
    prints it, before the log exists, to a terminal or a CI log."""
    res = run_cli(["config"], base_env(tmp_path, SWARM_NATS_URL=url))
    assert res.returncode == 2 and "nats.url" in res.stderr, res.stderr
    assert "s3cretPw0rd" not in res.stderr, res.stderr


@pytest.mark.parametrize("args", [["config"], ["config", "--json"], ["doctor"]], ids=["config", "json", "doctor"])
def test_the_ollama_hosts_login_never_prints(tmp_path: Path, args: list[str]) -> None:
    """SECRET. OLLAMA_HOST may carry a login (``http://bob:0llamaPW@host:11434``: httpx, under ollama-python,
    sends it as Basic auth), and the heartbeat hides it when it names the host (``local_model._display``: "the
    host without user info"). `config`, whose header promises secrets masked, prints ``ollama.host`` whole
    (``Config.masked`` hides only options marked secret, and nats.url); `doctor` prints ``not reachable at
    http://bob:0llamaPW@...`` (cli/doctor.check_ollama uses ``ollama_url`` as is)."""
    env = base_env(tmp_path, OLLAMA_HOST="http://bob:0llamaPW@127.0.0.1:9")
    res = run_cli(args, env, timeout=120)
    assert "ollama" in res.stdout.lower(), res.stdout + res.stderr
    assert "0llamaPW" not in res.stdout + res.stderr, [
        line for line in (res.stdout + res.stderr).splitlines() if "0llamaPW" in line
    ]


# ------------------------------------------------------------------------------------------ [keys]
def _keys_file(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "keys.toml"
    p.write_text("[keys]\n" + body, encoding="utf-8")
    return p


def test_a_keys_error_line_carries_no_escape_sequence(tmp_path: Path) -> None:
    """WRONG TEXT / terminal. Two actions given the same odd key are refused (exit 2, one line) but the line
    prints the key raw: ``key \\x1b]0;pwned\\x07 is bound twice`` (``config/keys._check_screen`` formats
    ``key.strip()``, not its repr as the "bad value" lines do), so the error retitles the terminal window
    (OSC 0), and an ``\\x1b[2J`` clears the screen the error was to be read on. The "kept for" line has the same
    ``{key.strip()}``."""
    osc = "\\u001b]0;pwned\\u0007"
    p = _keys_file(tmp_path, f'approve = "{osc}"\nreject = "{osc}"\n')
    res = run_cli(["--config", str(p), "config"], base_env(tmp_path))
    assert res.returncode == 2, res.stderr
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr, repr(res.stderr)


class _Keys(App[None]):
    """The room's approve binding alone, remapped as the app remaps it (``SwarmApp``: ``set_keymap``)."""

    BINDINGS = [Binding("a", "hit", id="approve")]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self.hits = 0
        self.set_keymap(keymap)

    def compose(self) -> ComposeResult:
        yield Static("keys")

    def action_hit(self) -> None:
        self.hits += 1


async def _fires(keymap: dict[str, str], press: str) -> bool:
    app = _Keys(keymap)
    async with app.run_test() as pilot:
        await pilot.press(press)
        await pilot.pause()
    return app.hits > 0


@pytest.mark.parametrize(
    ("value", "press"),
    [
        ("Ctrl+K", "ctrl+k"),  # Textual's names are lower case: this binding never fires
        ("CTRL+K", "ctrl+k"),
        ("ctrl+", ""),  # a modifier and no key
        ("\\u001b[2J", ""),  # an escape sequence: no key is called that
        ("\\u200b", ""),  # a zero-width space: invisible in the help and hints, no key
        ("x" * 300, ""),  # no key has a 300-character name
    ],
    ids=["Ctrl+K", "CTRL+K", "ctrl+", "escape-seq", "zero-width", "300-chars"],
)
async def test_a_key_textual_cannot_match_is_refused_at_load(tmp_path: Path, value: str, press: str) -> None:
    """WRONG TEXT. The brief: a [keys] value Textual cannot parse is one clear line and exit 2.
    ``config/keys.parse_keys`` only refuses empty parts, spaces and clashes, so ``approve = "Ctrl+K"`` loads,
    the help and the hints say "Ctrl+K approve", and pressing ctrl+k does nothing (Textual matches key names
    as given, lower case: the binding is dead and approve has no key at all). The same for a modifier with no
    key, an escape sequence, a zero-width space and a 300-character name. Where a value loads, it must at least
    work: the test presses the key it names in a Textual app remapped the way ``SwarmApp`` remaps."""
    p = _keys_file(tmp_path, f'approve = "{value}"\n')
    try:
        cfg = load_config(p, base_env(tmp_path))
    except ConfigError:
        res = run_cli(["--config", str(p), "config"], base_env(tmp_path))
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        return
    assert press, f"approve = {value!r} loaded: a key no keyboard can press ({cfg.keys})"
    assert await _fires(cfg.keys, press), f"approve = {value!r} loaded, but pressing {press} does not approve"


@pytest.mark.parametrize("key", ["down", "up", "home", "end", "pagedown"])
async def test_a_key_the_tables_keep_is_refused_or_works(tmp_path: Path, key: str) -> None:
    """WRONG TEXT. ``config/keys.RESERVED`` lists the keys the app keeps (ctrl+p, tab, escape ...) but not the
    ones its tables keep: the room focuses the decision table, and a DataTable answers up, down, home, end,
    pageup and pagedown itself before any screen binding. ``approve = "down"`` loads, the hints and the help say
    "down approve", and pressing down moves the cursor (or nothing) and never approves: approve has no key. The
    loader should refuse it ("kept for moving in the tables", exit 2) as it refuses tab."""
    from swarm_tui.tui.app import SwarmApp
    from swarm_tui.tui.scenes import _clock, build
    from tests.support.polling import until

    p = _keys_file(tmp_path, f'approve = "{key}"\n')
    try:
        keys = load_config(p, base_env(tmp_path)).keys
    except ConfigError:
        return  # refused at load: what the brief asks
    link, rings, hist = build("pending")
    link.cfg.keys.update(keys)
    app = SwarmApp(link, clock=_clock, deterministic=True, rings=rings, ram_history=hist)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 10, "the room")
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause(0.3)
    assert [verb for verb, _ in link.controls] == ["approve"], (
        f"approve = {key!r} loaded; pressing {key} did not approve"
    )


# ------------------------------------------------------------------------------------------ status and the pool
async def _answer_engine_info(bus: Bus, info: dict[str, Any]) -> None:
    """A running engine's ``ENGINE_INFO`` answer, as another version of the engine may give it."""
    assert bus.nc is not None

    async def answer(msg: Any) -> None:
        await msg.respond(json.dumps(info).encode())

    await bus.nc.subscribe(S.ENGINE_INFO, cb=answer)
    await bus.nc.flush()


async def _a_running_worker(bus: Bus) -> None:
    now = time.time()
    await bus.publish_event(Task(id="t-run1", text="write a haiku about tea", created_at=now), msg_id="t-run1")
    plan = [PlanItem(task_id="t-run1", role="analysis", model=MODEL, max_tokens=100)]
    dec = Decision(id="d-run1", task_ids=["t-run1"], plan=plan, source="rules", created_at=now, expires_at=now + 900)
    await bus.publish_event(dec, msg_id="d-run1")
    await bus.publish_event(Approval(decision_id="d-run1", action="approved", at=now), msg_id="d-run1-final")
    ev = {"decision_id": "d-run1", "task_id": "t-run1", "model": MODEL, "role": "analysis"}
    await bus.publish_event(
        WorkerEvent.model_validate(
            ev | {"worker_id": "d-run1-w0", "job_id": "d-run1-j0", "state": "running", "tokens": 7, "at": now}
        )
    )


@pytest.mark.parametrize("tokens", [None, [191], "191"], ids=["null", "list", "string"])
@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
async def test_status_survives_a_pool_whose_tokens_are_not_a_table(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus, tokens: Any, as_json: bool
) -> None:
    """CRASH. status reads a live worker's streamed tokens from the running engine's pool info:
    ``streamed = pool.get("tokens", {})`` then ``streamed.get(w["id"])`` (cli/status.status_data). The info
    comes back as JSON from another process (another version: ``usable`` promises "a reader must never crash on
    it", and ``_count`` guards the number), but a ``tokens`` that is null, a list or a string is used as a dict:
    AttributeError, and `status` (plain and --json) is "internal error" and exit 1 for as long as that engine
    runs, exactly when someone wants to see its workers."""
    await _a_running_worker(bus)
    await _answer_engine_info(bus, {"pool": {"scale": 4, "running": 1, "held": 0, "states": {}, "tokens": tokens}})
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = await asyncio.to_thread(run_cli, ["status", *(["--json"] if as_json else [])], env)
    assert res.returncode == 0, res.stderr
    assert "d-run1-w0" in res.stdout


# ------------------------------------------------------------------------------------------ an edited estimate
def _decision(models: tuple[str, ...], lo: float, hi: float, item_costs: list[tuple[float, float]]) -> Decision:
    plan = [PlanItem(task_id="t-e1", role="research", model=m, max_tokens=100) for m in models]
    return Decision(
        id="d-e1",
        task_ids=["t-e1"],
        plan=plan,
        est_cost_min=lo,
        est_cost_max=hi,
        item_costs=item_costs,
        source="rules",
        created_at=NOW,
        expires_at=NOW + 900,
    )


@pytest.mark.parametrize(
    "dec",
    [
        _decision((MODEL,), 1e308, 1e308, [(1e308, 1e308)]),  # item costs as the wire allows them (no upper bound)
        _decision((MODEL, CHEAP), 1e308, 1e308, []),  # no item costs, mixed plan: whole copies of its worst case
    ],
    ids=["item-costs", "no-item-costs"],
)
async def test_an_edited_estimate_stays_a_number_and_status_json_stays_json(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus, dec: Decision
) -> None:
    """WRONG TEXT (status --json is not JSON). ``wire.Decision`` refuses inf and NaN but bounds neither
    ``est_cost_max`` nor ``item_costs`` from above, and ``figures.decision_estimate`` multiplies and sums them:
    a decision worth 1e308 edited to 2 or 3 workers is estimated at inf. ``status --json`` then prints
    ``"est_cost_usd": [Infinity, Infinity]`` (json.dumps allows it), which is not JSON: jq and every non-Python
    reader refuse the whole status, and plain status and the screen say "$inf". An estimate must stay finite
    (clamped, or such a decision set aside by the reader like a ceiling of 1e12 is)."""
    await bus.publish_event(Task(id="t-e1", text="find three papers", created_at=time.time()), msg_id="t-e1")
    dec = dec.model_copy(update={"created_at": time.time(), "expires_at": time.time() + 900})
    await bus.publish_event(dec, msg_id=dec.id)
    await bus.publish_event(Approval(decision_id=dec.id, action="edited", workers=3, at=time.time()))
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = await asyncio.to_thread(run_cli, ["status", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert "Infinity" not in res.stdout and "NaN" not in res.stdout, res.stdout[:2000]
    data = _strict_json(res.stdout)
    assert [d["workers"] for d in data["decisions"]] == [3]


def test_more_workers_never_cost_less_than_the_proposal() -> None:
    """WRONG TEXT (low: needs a decision whose ``item_costs`` disagree with its totals, as a forged one, or one
    from an engine that prices items another way, has). ``decision_estimate`` trusts ``item_costs`` whenever
    their number matches the plan and never relates them to ``est_cost_min/max``: a one-worker decision that
    says "worst case $0.50" shows, after an edit to two of the same worker, a worst case of $0.00, and status
    --json, the row and the detail all print it. Twice the same job can never be bounded by less than once;
    the proposal's own worst case is a floor the edit could keep (max of the two)."""
    d = _decision((MODEL,), 0.25, 0.5, [(0.0, 0.0)])
    st = SwarmState(session_start=NOW, clock=lambda: NOW + 1)
    st.apply(Task(id="t-e1", text="find three papers", created_at=NOW))
    st.apply(d)
    st.apply(Approval(decision_id="d-e1", action="edited", workers=2, at=NOW + 1))
    lo, hi = st.snapshot()["decisions"][0]["est_cost_usd"]
    assert hi >= d.est_cost_max, f"2 workers of a $0.50 worker shown as worst case ${hi}"
    assert decision_estimate(d, 2)[1] >= d.est_cost_max


async def test_plain_status_prints_the_engines_words_inert(
    tmp_path: Path, nats_server: EmbeddedServer, bus: Bus
) -> None:
    """WRONG TEXT / terminal (older than issue 25; the brief asks that plain status print what comes from the
    bus safely, and its new worker lines do, through ``plain``). The lines around them do not: ``conductor:``
    joins every value of the engine's ``Conductor.info()`` raw (``f"{k}={v}"``), and ``ollama_error`` there is
    ``Ollama answered HTTP 500: <Ollama's error body>[:200]`` (heartbeat/local_model.py) or the review's
    ``result.error``; the ``pool: scale`` and ``prices:`` figures are printed as the JSON gave them. An error body
    from a remote OLLAMA_HOST (or whatever answers ``swarm.engine.info`` on the bus) holding ``\\x1b]0;..\\x07``
    or ``\\x1b[2J`` retitles or clears the terminal of whoever runs `swarm-tui status`."""
    await _a_running_worker(bus)
    evil = "\x1b]0;pwned\x07\x1b[2J"
    await _answer_engine_info(
        bus,
        {
            "conductor": {"source": "rules", "state": "idle", "ollama_error": f"Ollama answered HTTP 500: {evil}"},
            "pool": {"scale": evil, "running": 1, "held": 0, "states": {}, "tokens": {}},
            "spend": {"today_usd": 0.0, "ceiling_usd": 1.0, "reserved_usd": 0.0, "price_source": evil},
        },
    )
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = await asyncio.to_thread(run_cli, ["status"], env)
    assert res.returncode == 0, res.stderr
    assert "d-run1-w0" in res.stdout
    bad = [line for line in res.stdout.splitlines() if "\x1b" in line or "\x07" in line]
    assert not bad, bad


async def test_a_standalone_workers_tokens_agree_in_status_and_on_its_card(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """WRONG TEXT (the shared figure "a worker's tokens"). ``figures.worker_tokens`` takes a running worker's
    tokens from its chunks on screen and from the ENGINE's pool (``info()["pool"]["tokens"]``) in status. A job
    taken by a `swarm-tui worker` process (documented: several share the queue beside the engine's pool) is in
    no engine pool's info: its card says 191 tok while ``status --json`` (and plain status) says 0 for as long
    as it runs, the very disagreement issue 25 closed for the engine's own pool. Here the engine has no pool of
    its own and one standalone pool (build_pool, as ``cli/runner._worker`` builds it) runs the job."""
    from swarm_tui.engine.engine import Engine
    from swarm_tui.engine.swarm.build import build_pool
    from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
    from swarm_tui.tui.app import SwarmApp
    from swarm_tui.tui.link import LocalLink
    from swarm_tui.tui.widgets.worker_card import WorkerCard
    from tests.integration.test_tui import _render_plain
    from tests.support.env import make_config
    from tests.support.fake_openrouter import Answer, FakeOpenRouter
    from tests.support.polling import until
    from tests.support.swarm_kit import KEY, approve, swarm_config
    from tests.support.tui import SIZE, started

    streamed = 191
    async with FakeOpenRouter() as fo:
        fo.default = Answer(tokens=400, tps=0, stall_after=streamed, stall_s=60, keepalive_s=1)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, swarm__scale=10)
        env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, OPENROUTER_API_BASE=fo.base, OPENROUTER_API_KEY=KEY)
        bus = await Bus(cfg).connect()
        engine = Engine(cfg, bus)
        engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, host="test"))
        wbus = await Bus(cfg).connect()  # the standalone worker's own connection
        pool = build_pool(cfg, wbus, host="worker-host")
        app = SwarmApp(LocalLink(engine, connect=False), refresh_ms=20)
        try:
            await pool.start()
            async with app.run_test(size=SIZE) as pilot:
                await started(app, pilot)
                d = await approve(bus, 1, text="streams, then its provider stalls")
                wid = f"{d.id}-w0"
                await until(lambda: wid in app.rings and app.rings[wid].tokens == streamed, 20, "streamed tokens")
                await pilot.pause(0.2)
                card = _render_plain(app.query_one(f"#w_{wid}", WorkerCard), 100)
                assert f"{streamed} tok" in card, card
                res = await asyncio.to_thread(run_cli, ["status", "--json"], env)
                assert res.returncode == 0, res.stderr
                worker = next(w for w in json.loads(res.stdout)["workers"] if w["id"] == wid)
                assert worker["state"] == "running"
                assert worker["tokens"] == streamed, f"card: {streamed} tok, status --json: {worker['tokens']}"
        finally:
            await pool.stop()
            await engine.stop()
            await wbus.close()
            await bus.close()

"""The adversary's suite for issue 22: promises of docs/security.md and docs/reliability.md broken on purpose.

Each test fails on the code it was written against, and says which promise it breaks and with what figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from swarm_tui.cli.status import status_data
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Decision, Job, PlanItem, SpendEntry, Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.demo_prices import DemoPrices
from swarm_tui.engine.guards.ledger import read_ledger
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.swarm.build import build_pool
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from tests.support.env import base_env, make_config, run_cli
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, approve, events, swarm_config

pytestmark = pytest.mark.fault


# ---------------------------------------------------------------------------------------------- 1. the log's readers
async def test_a_deeply_nested_message_from_a_worker_login_is_a_dead_letter_and_stops_no_reader(
    cfg: Config, bus: Bus
) -> None:
    """A worker's login may publish on ``swarm.evt.worker.>``. ``wire.decode`` catches ValueError and
    UnicodeDecodeError from ``json.loads``, not RecursionError, which 2,000 nested ``[`` (2 KB) raise. The
    error escapes ``trust.read_event`` and the follower's callback (nats-py swallows it): no dead letter, not
    counted, and when it is the newest message of the log the replay never catches up, so ``swarm-tui status``
    (and ``result``, and a control verb with no engine) hangs until someone else publishes. Promise broken:
    "a malformed message never stops a consumer"; bad input gets one line, never a hang: nothing applied."""
    t = Task(id=new_id("t"), text="an honest task", created_at=time.time())
    await bus.publish_event(t, msg_id=t.id)
    assert bus.js is not None
    await bus.js.publish("swarm.evt.worker.x", b"[" * 2000)  # what a worker's login may publish on
    try:
        data = await asyncio.wait_for(status_data(cfg), 10)
    except TimeoutError:
        data = None
    print(f"\nstatus after a 2 KB nested message: {'hung (10 s)' if data is None else data['bus']['malformed']}")
    assert data is not None, "swarm-tui status hangs on the log"
    assert data["bus"]["malformed"].get("worker") == 1
    assert [x["id"] for x in data["tasks"]] == [t.id]


# ---------------------------------------------------------------------------------------------- 2. which ceiling
BARE = MODEL.removeprefix("openrouter/")


async def recorded_and_ledger(cfg: Config) -> tuple[float, float]:
    """(the spend entries of the log, the daily ledger's spent today)."""
    entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
    bus = await Bus(cfg).connect()
    try:
        doc = await read_ledger(bus, cfg, time.time())
    finally:
        await bus.close()
    assert doc is not None
    return round(sum(e.cost_usd for e in entries), 9), round(float(doc["spent"]), 9)


async def test_a_standalone_worker_spends_under_the_engines_ceiling_not_its_own_default(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The person sets ``budget.daily_usd = 0.50`` in the engine's config and starts ``swarm-tui worker`` on
    another machine (docs/security.md, "Running the bus beyond loopback": point every process at the bus). The
    worker reads its own config, whose ``budget.daily_usd`` is the default $1.00: a standalone worker's spend
    guard has no log (state None), so without a ``swarm-tui budget`` override it reserves under its own
    configuration's ceiling. Three jobs of $0.29 (worst case $0.30): billed $0.87 under the engine's $0.50
    ceiling (status shows "today $0.87 of $0.50"). Promise broken: nothing is spent past the daily ceiling,
    recorded = billed <= ceiling."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")  # worst case of 100 tokens: $0.30
        fo.default = Answer(tokens=100, cost=0.29)
        cfg = swarm_config(make_config, tmp_path, nats_server.url, fo.base, budget__daily_usd=0.5)
        wcfg = swarm_config(make_config, tmp_path / "worker-host", nats_server.url, fo.base)  # defaults: $1.00
        bus = await Bus(cfg).connect()
        wbus = await Bus(wcfg).connect()
        engine = Engine(cfg, bus)
        prices = PriceBook(cfg.openrouter, cfg.paths)
        await prices.load()
        spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, prices))
        engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=spend, host="engine"))
        await engine.start()
        wprices = PriceBook(wcfg.openrouter, wcfg.paths)
        await wprices.load()
        wspend = SpendGuard(SpendSettings.of(wcfg), wbus, None, wprices)  # as runner._worker builds it
        pool = build_pool(wcfg, wbus, spend=wspend, host="worker-host")
        await wspend.start()
        await pool.start()
        try:
            ds = [await approve(wbus, 1, max_tokens=100) for _ in range(3)]

            def quiet() -> bool:
                st = [w.state for w in engine.state.workers.values() if w.decision_id in {d.id for d in ds}]
                return len(st) == 3 and all(s in ("done", "failed", "over_budget") for s in st)

            await until(quiet, 40, "three jobs done or over budget")
            await asyncio.sleep(1.5)
            billed = round(fo.billed, 9)
            ceiling = spend.ceiling()
        finally:
            await pool.stop()
            await wspend.stop()
            await engine.stop()
            await wbus.close()
            await bus.close()
        recorded, ledger = await recorded_and_ledger(cfg)
    print(
        f"\nengine ceiling ${ceiling:.2f}, worker's own ${wcfg.budget.daily_usd:.2f}: billed ${billed:.2f}, "
        f"recorded ${recorded:.2f}, ledger ${ledger:.2f}"
    )
    assert recorded == billed
    assert billed <= ceiling, f"billed ${billed:.2f} past the ${ceiling:.2f} ceiling"


# ---------------------------------------------------------------------------------------------- 3. odd input
def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    """A config written by an editor in Latin-1 (one ``é`` in a comment). ``tomllib.load`` decodes the bytes itself
    and raises UnicodeDecodeError, which ``load_config`` does not catch (it catches TOMLDecodeError and OSError);
    the CLI's catch-all runs before logging is set up, so Python's last-resort handler prints the whole traceback
    on stderr, then "internal error: UnicodeDecodeError (details in the log ...)": no log was written, and the
    file is not named. Promise broken: bad input gets one clear line, never a traceback."""
    conf = tmp_path / "config.toml"
    conf.write_bytes(b"[budget]\ndaily_usd = 0.5\n# caf\xe9 au lait\n")
    res = run_cli(["--config", str(conf), "config"], base_env(tmp_path))
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    print(f"\nexit {res.returncode}, {len(lines)} stderr line(s): {lines[:1]} ... {lines[-1:]}")
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and str(conf) in lines[0] and "internal error" not in lines[0]


def test_a_data_dir_that_cannot_be_made_is_one_line_naming_it(tmp_path: Path) -> None:
    """``SWARM_DATA_DIR`` under a regular file (a typo, a stale path): ``setup_logging`` fails making it, before
    any log handler exists, and the same last-resort handler prints the traceback of NotADirectoryError with
    "internal error ... (details in the log under the data dir)", the dir that could not be made. Promise
    broken: bad input gets one clear line, never a traceback."""
    (tmp_path / "afile").write_text("x")
    env = base_env(tmp_path, SWARM_DATA_DIR=str(tmp_path / "afile" / "data"))
    res = run_cli(["config"], env)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    print(f"\nexit {res.returncode}, {len(lines)} stderr line(s), last: {lines[-1:]}")
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and "internal error" not in lines[0]


# ---------------------------------------------------------------------------------------------- 4. the embedded bus
def listening_loopback_ports() -> set[int]:
    """What any local user sees of every user's listening TCP sockets on 127.0.0.1 (/proc/net/tcp is world-readable:
    ``ss -ltn`` shows the same)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port = local.split(":")
        if state == "0A" and addr == "0100007F":  # LISTEN on 127.0.0.1
            ports.add(int(port, 16))
    return ports


async def test_another_local_user_cannot_drive_the_embedded_server(tmp_path: Path) -> None:
    """docs/security.md: "On loopback (the embedded server of the data dir) that means this user only". It is not:
    the embedded nats-server listens on 127.0.0.1 with no authorization block (bus/embedded.py ``_write_conf``),
    and its port is in /proc/net/tcp for every local user to read. The data dir is 0700, the TCP port is open to
    all. Another local user connects with no credentials and asks ``swarm.ctl.ceiling`` for $99,999 and
    ``swarm.ctl.approve`` for a pending decision: both applied (ceiling $0.50 -> $99,999; the decision approved
    by a stranger, its job queued). The same login reads every task and purges the log. Promises broken: no
    worker starts unless a person (of this swarm) said so; nothing is spent past the ceiling this user set:
    nothing applied."""
    cfg = make_config(tmp_path, "", SWARM_BUDGET_USD="0.5")  # nats.url empty: the embedded server of the data dir
    assert not cfg.nats.url
    bus = await Bus(cfg).connect()
    assert bus.kind == "embedded"
    engine = Engine(cfg, bus, demo=True)
    spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, DemoPrices(cfg.demo)))
    engine.add(Controller(ControllerSettings.of(cfg, demo=True), bus, engine.state, spend=spend, host="victim"))
    await engine.start()
    try:
        now = time.time()
        task = Task(id=new_id("t"), text="the victim's private task", created_at=now, demo=True)
        await bus.publish_event(task, msg_id=task.id)
        plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=100)]
        d = Decision(
            id=new_id("d"),
            task_ids=[task.id],
            plan=plan,
            source="rules",
            created_at=now,
            expires_at=now + 900,
            demo=True,
        )
        await bus.publish_event(d, msg_id=d.id)
        await until(lambda: d.id in engine.state.decisions, 10, "the decision")
        port = int(bus.url.rsplit(":", 1)[1])
        assert port in listening_loopback_ports()  # what the stranger sees without reading the data dir
        answers: list[Any] = []
        try:  # no user, no token, no creds; one try (nats-py would otherwise retry a refused login)
            stranger = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False, connect_timeout=3)
        except Exception as exc:  # noqa: BLE001 - the server refused the login
            answers.append(f"login refused: {exc}")
        else:
            try:
                for subject, body in (
                    ("swarm.ctl.ceiling", {"usd": 99999, "by": "stranger"}),
                    ("swarm.ctl.approve", {"id": d.id, "by": "stranger"}),
                ):
                    answers.append(json.loads((await stranger.request(subject, json.dumps(body).encode(), 3)).data))
            finally:
                await stranger.close()
        await asyncio.sleep(0.5)
        ceiling, status = spend.ceiling(), engine.state.decisions[d.id].status
        jobs = (await bus.jetstream.stream_info("SWARM_JOBS")).state.messages
    finally:
        await engine.stop()
    print(
        f"\nstranger on 127.0.0.1:{port} with no credentials: ceiling $0.50 -> ${ceiling:,.2f}, decision {status} "
        f"by {engine.state.decisions[d.id].by!r}, {jobs} job(s) queued; the server said {answers}"
    )
    assert ceiling == 0.5 and status == "pending" and jobs == 0


async def test_a_dead_embedded_server_s_port_taken_by_a_stranger_is_not_used(tmp_path: Path) -> None:
    """The embedded server of the data dir dies while the swarm-tui process that started it lives (the kernel's
    OOM killer picks nats-server, the largest process, or it crashes). Another local user, who saw its port in
    /proc/net/tcp, listens there now. ``EmbeddedLease.discover`` trusts ``nats.json`` when the *owner's* pid is
    alive and the port answers: it never checks ``server_pid`` (which it writes) nor who listens. So the next
    ``swarm-tui submit`` connects to the stranger's server, creates the streams there and stores the task in it;
    the owner's own connection reconnects there too. Promise broken: a stranger's server is never used silently:
    nothing applied (the stranger's server holds the task text)."""
    cfg = make_config(tmp_path, "")
    owner = await Bus(cfg).connect()  # this process starts the embedded server and writes nats.json
    assert owner.kind == "embedded" and owner.lease is not None and owner.lease.server is not None
    port = owner.lease.server.port
    owner.lease.server.kill()  # the server dies, its owner lives
    stranger = EmbeddedServer(tmp_path / "stranger-store", port=port).run()  # another user's, on that port
    try:
        res = await asyncio.to_thread(run_cli, ["submit", "the quarterly numbers are confidential"], base_env(tmp_path))
        nc = await nats.connect(stranger.url)
        try:
            js = nc.jetstream()
            try:
                held = (await js.stream_info("SWARM_EVENTS")).state.messages
            except Exception:  # noqa: BLE001 - no stream: nothing came
                held = 0
        finally:
            await nc.close()
    finally:
        await owner.close()
        stranger.stop()
    print(
        f"\nsubmit exit {res.returncode} ({res.stdout.strip()!r}); the stranger's server on port {port} holds "
        f"{held} event(s)"
    )
    assert held == 0, "the task went to a server nobody configured"


# ---------------------------------------------------------------------------------------------- 5. one job, two runs
class Link:
    """A TCP relay between a worker host and the NATS server that can stop forwarding for a while (a Wi-Fi drop,
    a partition): connections stay open, bytes wait."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = asyncio.Event()
        self.open.set()
        self.server: Any = None
        self.port = 0

    async def start(self) -> Link:
        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    await self.open.wait()
                    w.write(data)
                    await w.drain()
            except Exception:  # noqa: BLE001
                pass
            finally:
                w.close()

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(pipe(r, uw), pipe(ur, w))

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def cut(self, seconds: float) -> None:
        self.open.clear()
        asyncio.get_running_loop().call_later(seconds, self.open.set)

    async def stop(self) -> None:
        self.open.set()
        self.server.close()


class HeldSpend(SpendGuard):
    """The spend guard, noting what each attempt held when its call started, and calling ``after_reserve``."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.held: list[float | None] = []
        self.after_reserve: Any = None

    async def reserve(self, job: Job) -> Any:
        res = await super().reserve(job)
        if res.ok and self.after_reserve is not None:
            self.after_reserve()
            self.after_reserve = None
        return res

    async def begin_attempt(self, job: Job, attempt_id: str, keys: tuple[str, ...]) -> float | None:
        held = await super().begin_attempt(job, attempt_id, keys)
        self.held.append(held)
        return held


async def test_a_job_redelivered_during_a_partition_never_calls_with_nothing_held(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Worker host A reserves job J, then its link to the hub drops for 6 s (ack_wait 3 s) before its call. JetStream
    redelivers J to worker B (at-least-once, by design). The ledger keys a job's reservation by the job id, and
    ``reserve_change`` treats a second reservation of a held id as the holder refreshing its own: B "holds" A's
    reservation, and ``begin_attempt`` moves it to B's attempt. A's link comes back, its ``begin_attempt`` finds
    nothing under J (0.0 held) and A calls anyway (``Reconciler.begin`` only records the difference). Two calls,
    $0.30 held: reliability.md rule 1, "no call without a hold", broken; with others reserving the room A's call
    does not hold: $0.58 billed under a $0.50 ceiling (a second hold would not have fit). Promise: every call
    held, recorded = billed <= ceiling. (Now B needs a hold of its own, which does not fit beside A's: B waits
    "over budget" until A's result is stored, then ends without a call.)"""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = ("0", "0.003")  # worst case $0.30
        fo.default = Answer(tokens=5, tps=5, cost=0.29)
        cfg = swarm_config(
            make_config, tmp_path, nats_server.url, fo.base, swarm__ack_wait_s=3.0, budget__daily_usd=0.5
        )
        link = await Link(int(nats_server.url.rsplit(":", 1)[1])).start()
        acfg = swarm_config(
            make_config,
            tmp_path / "host-a",
            f"nats://127.0.0.1:{link.port}",
            fo.base,
            swarm__ack_wait_s=3.0,
            budget__daily_usd=0.5,
        )
        bus = await Bus(cfg).connect()
        engine = Engine(cfg, bus)
        prices = PriceBook(cfg.openrouter, cfg.paths)
        await prices.load()
        espend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, prices))
        engine.add(Controller(ControllerSettings.of(cfg), bus, engine.state, spend=espend, host="engine"))
        await engine.start()
        abus, bbus = await Bus(acfg).connect(), await Bus(cfg).connect()
        aspend = HeldSpend(SpendSettings.of(acfg), abus, None, PriceBook(acfg.openrouter, acfg.paths))
        bspend = HeldSpend(SpendSettings.of(cfg), bbus, None, PriceBook(cfg.openrouter, cfg.paths))
        for sp in (aspend, bspend):
            await sp.prices.load()
            await sp.start()
        apool = build_pool(acfg, abus, spend=aspend, host="host-a")
        bpool = build_pool(cfg, bbus, spend=bspend, host="host-b")
        aspend.after_reserve = lambda: link.cut(6.0)
        await apool.start()
        try:
            await approve(bus, 1, max_tokens=100)
            await until(lambda: not link.open.is_set(), 15, "host A to reserve J")
            await bpool.start()  # B takes the job when JetStream redelivers it
            await until(lambda: bpool.counts["already_done"] or len(bspend.held) >= 1, 30, "host B to run J")
            await until(lambda: fo.chats() and not apool.runs and not bpool.runs, 30, "both runs of J to end")
            await asyncio.sleep(3)
            held = aspend.held + bspend.held
            calls, billed = len(fo.chats()), round(fo.billed, 9)
        finally:
            await bpool.stop()
            await apool.stop()
            for sp in (aspend, bspend):
                await sp.stop()
            await engine.stop()
            await abus.close()
            await bbus.close()
            await bus.close()
            await link.stop()
        recorded, ledger = await recorded_and_ledger(cfg)
    print(
        f"\none job, two runs: {calls} calls, billed ${billed:.2f}, recorded ${recorded:.2f}, ledger ${ledger:.2f}; "
        f"held at each call: {held}"
    )
    assert all(h is not None and h > 0 for h in held), "a call started with nothing held"
    assert recorded == ledger == billed
    assert billed <= 0.5

"""The adversary's suite for issue 22: promises of docs/security.md and docs/reliability.md broken on purpose.

Each test fails on the code it was written against, and says which promise it breaks and with what figures.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from swarm_tui.cli_commands import status_data
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import SpendEntry, Task, new_id
from swarm_tui.engine.config import Config
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.ledger import read_ledger
from swarm_tui.engine.guards.prices import PriceBook
from swarm_tui.engine.guards.spend import SpendGuard
from swarm_tui.engine.swarm.dispatcher import Controller
from swarm_tui.engine.swarm.pool import Pool
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
        prices = PriceBook(cfg)
        await prices.load()
        spend = engine.add(SpendGuard(cfg, bus, engine.state, prices))
        engine.add(Controller(cfg, bus, engine.state, spend=spend, host="engine"))
        await engine.start()
        wprices = PriceBook(wcfg)
        await wprices.load()
        wspend = SpendGuard(wcfg, wbus, None, wprices)  # as runner._worker builds it
        pool = Pool(wcfg, wbus, spend=wspend, host="worker-host")
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
    print(f"\nengine ceiling ${ceiling:.2f}, worker's own ${wcfg.budget.daily_usd:.2f}: billed ${billed:.2f}, "
          f"recorded ${recorded:.2f}, ledger ${ledger:.2f}")
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

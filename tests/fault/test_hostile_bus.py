"""The bus as a hostile place: forged events, non-finite and far-future values, what a worker's login can reach, a
stranger's server on the default port, other users' eyes on the data dir, and messages too large to send.

One test per case; each ends with the promise it holds ("nothing applied": the state, the ceiling in force and
the work queue are as if the hostile message had never been sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError

from swarm_tui.cli.commands import submit
from swarm_tui.cli.doctor import check_nats
from swarm_tui.engine.attention.needs import Attention
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import (
    Approval,
    ControlEvent,
    Decision,
    PlanItem,
    Result,
    Task,
    WorkerEvent,
    new_id,
)
from swarm_tui.engine.config.load import Config, load_config
from swarm_tui.engine.control_requests import request
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.errors import BusError
from swarm_tui.engine.guards.demo_prices import DemoPrices
from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.swarm.controller import Controller, ControllerSettings
from tests.support.env import ROOT, base_env, make_config
from tests.support.polling import until
from tests.support.swarm_kit import MODEL, approve

pytestmark = pytest.mark.fault

CONTRIB = ROOT / "contrib" / "nats"


# ---------------------------------------------------------------------------------------------- helpers
async def pending_decision(bus: Bus) -> Decision:
    """A task and a decision of one worker for it, waiting for a person."""
    now = time.time()
    task = Task(id=new_id("t"), text="summarise the report", created_at=now, demo=True)
    await bus.publish_event(task, msg_id=task.id)
    plan = [PlanItem(task_id=task.id, role="research", model=MODEL, max_tokens=100)]
    d = Decision(
        id=new_id("d"), task_ids=[task.id], plan=plan, source="rules", created_at=now, expires_at=now + 900, demo=True
    )
    await bus.publish_event(d, msg_id=d.id)
    return d


async def read_past(bus: Bus, state: SwarmState) -> None:
    """Wait until the engine has read everything published so far: a task published now is in its state (the log
    is read in order, so whatever came before it has been applied or refused)."""
    t = Task(id=new_id("t"), text="sentinel", created_at=time.time())
    await bus.publish_event(t, msg_id=t.id)
    await until(lambda: t.id in state.tasks, 10, "the engine to read the log up to now")


async def dead_reason(bus: Bus, kind: str) -> str:
    """The reason of the newest dead letter on swarm.dead.<kind> ("" when there is none)."""
    try:
        raw = await bus.jetstream.get_last_msg(S.DEAD_STREAM, S.dead(kind))
    except NotFoundError:
        return ""
    return str((raw.headers or {}).get("Swarm-Reason", ""))


async def engine_with_spend(cfg: Config, bus: Bus) -> tuple[Engine, SpendGuard]:
    engine = Engine(cfg, bus)
    spend = engine.add(SpendGuard(SpendSettings.of(cfg), bus, engine.state, DemoPrices(cfg.demo)))
    await engine.start()
    return engine, spend


# ---------------------------------------------------------------------------------------------- 1. subjects
async def test_an_approval_on_a_worker_subject_is_a_dead_letter_not_an_approval(cfg: Config, bus: Bus) -> None:
    engine = Engine(cfg, bus, demo=True)
    engine.add(Controller(ControllerSettings.of(cfg, demo=True), bus, engine.state, host="test"))
    await engine.start()
    try:
        d = await pending_decision(bus)
        forged = Approval(decision_id=d.id, action="approved", workers=50, by="tui", at=time.time())
        assert bus.js is not None
        await bus.js.publish("swarm.evt.worker.x", forged.to_bytes())  # what a worker's login may publish on
        await read_past(bus, engine.state)
        await asyncio.sleep(0.3)  # a controller that took it as an approval queues its jobs meanwhile
        status = engine.state.decisions[d.id].status
        jobs = (await bus.jetstream.stream_info(S.JOBS_STREAM)).state.messages
        reason = await dead_reason(bus, "worker")  # set aside before the sentinel was read
    finally:
        await engine.stop()
    print(f"\nforged approval on swarm.evt.worker.x: decision {status}, {jobs} jobs queued; dead letter: {reason}")
    assert status == "pending" and jobs == 0
    assert reason.startswith("an approval on swarm.evt.worker.x") and d.id in reason
    assert bus.dead.counts["worker"] == 1
    # nothing applied


# ---------------------------------------------------------------------------------------------- 2. finite values
async def test_non_finite_and_out_of_range_ceilings_and_scales_are_refused(cfg: Config, bus: Bus) -> None:
    engine, spend = await engine_with_spend(cfg, bus)
    forged = [
        ("ceiling", "NaN"),  # Python's json reads it; a NaN ceiling lets every reservation pass
        ("ceiling", "Infinity"),
        ("ceiling", "-1"),
        ("ceiling", "1e12"),
        ("scale", "NaN"),
        ("scale", "1000"),  # over swarm.max_scale
        ("scale", "2.5"),
    ]
    try:
        reply = await request(bus, "ceiling", {"usd": 0.5})
        assert reply is not None and reply.ok
        assert bus.js is not None
        for what, value in forged:
            body = f'{{"type": "control", "what": "{what}", "value": {value}, "at": {time.time()}}}'
            await bus.js.publish(S.evt("control", what), body.encode())
        await read_past(bus, engine.state)
        ceiling, in_force, scale = engine.state.ceiling_usd, await spend.read_ceiling(), engine.state.scale
    finally:
        await engine.stop()
    print(f"\n{len(forged)} forged controls: ceiling {ceiling} (in force {in_force}), scale {scale}, refused")
    assert ceiling == 0.5 and in_force == 0.5 and scale == cfg.swarm.scale
    assert bus.dead.counts["control"] == len(forged)
    # the fold refuses them too, whoever applies them (an engine applies its own writes without the log)
    st = SwarmState()
    for ev in (ControlEvent(what="ceiling", value=-1, at=1.0), ControlEvent(what="scale", value=2.5, at=1.0)):
        st.apply(ev)
    assert st.ceiling_usd is None and st.scale is None and sum(st.refused_controls.values()) == 2
    # nothing applied


# ---------------------------------------------------------------------------------------------- 3. future times
async def test_a_far_future_ceiling_does_not_beat_a_later_budget(cfg: Config, bus: Bus) -> None:
    engine, spend = await engine_with_spend(cfg, bus)
    try:
        forged = ControlEvent(what="ceiling", value=1000.0, by="cli", at=1e12)  # on its own subject
        await bus.publish_event(forged)
        await read_past(bus, engine.state)
        reply = await request(bus, "ceiling", {"usd": 0.5})  # `swarm-tui budget 0.5`, later
        assert reply is not None and reply.ok
        await read_past(bus, engine.state)
        in_force = await spend.read_ceiling()
        reason = await dead_reason(bus, "control")
    finally:
        await engine.stop()
    print(f"\nceiling dated 1e12 then `budget 0.5`: ${in_force} in force; dead letter: {reason}")
    assert in_force == 0.5 and engine.state.ceiling_usd == 0.5
    assert reason.startswith("a control whose at is") and "allowed: 300 s" in reason
    # nothing applied


async def test_a_far_future_seen_does_not_silence_the_next_alert_and_honest_times_pass(cfg: Config, bus: Bus) -> None:
    engine = Engine(cfg, bus)
    await engine.start()
    try:
        await bus.publish_event(ControlEvent(what="seen", target="failed", by="tui", at=1e18))
        # honest events: a worker on a host whose clock is a minute ahead, and the engine's own write (applied at
        # once, then read again from the log)
        ahead = time.time() + 60
        w = WorkerEvent(
            worker_id="d-a-w0",
            job_id="d-a-j0",
            decision_id="d-a",
            task_id="t-a",
            model=MODEL,
            state="running",
            at=ahead,
        )
        await bus.publish_event(w)
        await engine.controls.handle("seen", {"kinds": ["approval"], "by": "tui"})
        now = time.time()
        r = Result(
            job_id="d-a-j0", worker_id="d-a-w0", decision_id="d-a", task_id="t-a", model=MODEL, state="failed",
            reason="upstream died", started_at=now - 1, ended_at=now,
        )  # fmt: skip
        await bus.publish_event(r)
        await read_past(bus, engine.state)
        rang = Attention(ring_on_start=True).update(engine.state, {}, "connected")
    finally:
        await engine.stop()
    kinds = [n["kind"] for n in rang]
    print(f"\nseen dated 1e18, then a failed job: alerts {kinds}; seen marks {engine.state.seen}")
    assert "failed" in kinds and "failed" not in engine.state.seen
    assert engine.state.workers["d-a-w0"].at == ahead and "approval" in engine.state.seen
    assert bus.dead.counts["control"] == 1 and bus.dead.total == 1
    # nothing applied


# ---------------------------------------------------------------------------------------------- 4. a worker's login
def authorization_block(conf: str) -> str:
    """The top-level ``authorization { ... }`` block of a NATS config, as written (comments dropped)."""
    text = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    start = text.index("\nauthorization {") + 1
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if text[i] == "}" and depth == 0:
            return text[start : i + 1]
    raise AssertionError("unbalanced authorization block")


def worker_rights(conf: str) -> list[str]:
    """The swarm-worker user's allow lists, in order (publish, then subscribe), comments dropped."""
    block = conf[conf.index("user: swarm-worker") :]
    block = block[: block.index("\n  ]")]  # the end of the users list
    text = "\n".join(line.split("#", 1)[0] for line in block.split("permissions", 1)[1].splitlines())
    return re.findall(r'"([^"]+)"', text)


def test_the_cluster_configs_give_the_worker_the_same_rights_as_the_hub() -> None:
    hub = worker_rights((CONTRIB / "hub.conf").read_text())
    assert "$JS.API.STREAM.MSG.GET.SWARM_EVENTS" in hub and not any(r.startswith("$JS.API.>") for r in hub)
    for n in (1, 2, 3):
        conf = (CONTRIB / f"cluster-n{n}.conf").read_text()
        uncommented = "\n".join(line.removeprefix("#").removeprefix(" ") for line in conf.splitlines())
        assert worker_rights(uncommented) == hub, f"cluster-n{n}.conf"


async def _refused(
    op: Callable[[], Awaitable[Any]], subject: str, violations: list[str], timeout: float = 10.0
) -> bool:
    """Whether the server refused ``op`` (a publish or request on ``subject``): a permissions violation for it."""
    with contextlib.suppress(Exception):  # refused: nothing answers, the request times out
        await op()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(f'"{subject.lower()}"' in v.lower() for v in violations):  # nats-py lowercases the server's text
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_worker_login_cannot_approve_lift_the_ceiling_mark_seen_or_purge_and_still_runs_jobs(
    tmp_path: Path,
) -> None:
    hub_conf = (CONTRIB / "hub.conf").read_text()
    auth = authorization_block(hub_conf)
    engine_pw = re.search(r'user: swarm-engine, password: "([^"]+)"', auth)
    worker_pw = re.search(r'user: swarm-worker, password: "([^"]+)"', auth)
    assert engine_pw and worker_pw
    # the hub as shipped: its own authorization block, JetStream with the domain laptops reach
    srv = EmbeddedServer(tmp_path / "hub", extra_conf=auth, domain="hub").run()
    ecfg = make_config(tmp_path, srv.url, SWARM_NATS_USER="swarm-engine", SWARM_NATS_PASSWORD=engine_pw.group(1))
    bus = await Bus(ecfg).connect()
    engine = Engine(ecfg, bus, demo=True)
    engine.add(
        SpendGuard(SpendSettings.of(ecfg), bus, engine.state, DemoPrices(ecfg.demo))
    )  # its ceiling: the worker's too
    engine.add(Controller(ControllerSettings.of(ecfg, demo=True), bus, engine.state, host="test"))
    await engine.start()
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    wnc = await nats.connect(srv.url, user="swarm-worker", password=worker_pw.group(1), error_cb=on_error)
    wjs = wnc.jetstream(timeout=1.0)
    worker: asyncio.subprocess.Process | None = None
    err = b""
    try:
        d = await pending_decision(bus)
        await until(lambda: d.id in engine.state.decisions, 10, "the decision")
        forged = Approval(decision_id=d.id, action="approved", workers=50, by="tui", at=time.time())
        ceiling = ControlEvent(what="ceiling", value=1000.0, at=time.time())
        seen = ControlEvent(what="seen", target="failed", at=time.time())
        before = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.messages
        # (a) approve: allowed on its own subject, where the engine refuses it; refused by the server on the real one
        await wjs.publish("swarm.evt.worker.x", forged.to_bytes())
        refused = {
            "approval": await _refused(
                lambda: wjs.publish(S.evt("approval", d.id), forged.to_bytes()), S.evt("approval", d.id), violations
            ),
            # (b) lift the ceiling: the control event, the live value in swarm_state, or ask the engine
            "ceiling event": await _refused(
                lambda: wjs.publish(S.evt("control", "ceiling"), ceiling.to_bytes()),
                "swarm.evt.control.ceiling",
                violations,
            ),
            "ceiling kv": await _refused(
                lambda: wnc.request("$KV.swarm_state.ceiling", b'{"usd": 1000, "at": 1e12}', timeout=1),
                "$KV.swarm_state.ceiling",
                violations,
            ),
            "ceiling request": await _refused(
                lambda: wnc.request(S.ctl("ceiling"), b'{"usd": 1000}', timeout=1), S.ctl("ceiling"), violations
            ),
            # (c) mark seen
            "seen event": await _refused(
                lambda: wjs.publish(S.evt("control", "seen"), seen.to_bytes()), "swarm.evt.control.seen", violations
            ),
            "seen request": await _refused(
                lambda: wnc.request(S.ctl("seen"), b'{"kinds": ["failed"]}', timeout=1), S.ctl("seen"), violations
            ),
            # (d) purge the log, delete the budget bucket
            "purge": await _refused(
                lambda: wnc.request("$JS.API.STREAM.PURGE.SWARM_EVENTS", b"", timeout=1),
                "$JS.API.STREAM.PURGE.SWARM_EVENTS",
                violations,
            ),
            "delete bucket": await _refused(
                lambda: wnc.request("$JS.API.STREAM.DELETE.KV_swarm_budget", b"", timeout=1),
                "$JS.API.STREAM.DELETE.KV_swarm_budget",
                violations,
            ),
        }
        await read_past(bus, engine.state)
        status = engine.state.decisions[d.id].status
        after = (await bus.jetstream.stream_info(S.EVENTS_STREAM)).state.messages
        budget_bucket = await _stream_or_none(bus, "KV_swarm_budget")
        kv_ceiling = await _kv_or_none(bus, S.KV_STATE, "ceiling")
        # (e) a demo worker as that user runs a job to its result, and the server refuses it nothing
        env = base_env(
            tmp_path / "w", SWARM_NATS_URL=srv.url, SWARM_NATS_USER="swarm-worker",
            SWARM_NATS_PASSWORD=worker_pw.group(1), SWARM_DEMO_TPS="200",
        )  # fmt: skip
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swarm_tui", "worker", "--demo",
            env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        job = await approve(bus, 1, demo=True)
        await until(
            lambda: any(r.decision_id == job.id for r in engine.state.results.values()), 60, "the worker's result"
        )
        result = next(r for r in engine.state.results.values() if r.decision_id == job.id)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            _out, err = await asyncio.wait_for(worker.communicate(), 30)
        await wnc.close()
        await engine.stop()
        srv.stop()
    worker_log = (tmp_path / "w" / "data" / "demo" / "swarm-tui.log").read_text()
    print(f"\nworker login: refused {sorted(k for k, v in refused.items() if v)}; forged approval: {status}; "
          f"events {before} -> {after}; worker job {result.state}")  # fmt: skip
    assert all(refused.values()), refused
    assert status == "pending" and kv_ceiling is None
    assert after >= before + 2 and budget_bucket is not None  # + the forged approval and the sentinel
    assert worker is not None and worker.returncode == 0, err.decode()[-500:]
    assert result.state == "done" and result.text
    assert "NATS refused this login" not in worker_log  # the worker needs nothing the block does not grant
    # nothing applied


async def _stream_or_none(bus: Bus, name: str) -> Any:
    try:
        return await bus.jetstream.stream_info(name)
    except NotFoundError:
        return None


async def _kv_or_none(bus: Bus, bucket: str, key: str) -> bytes | None:
    try:
        return (await (await bus.kv(bucket)).get(key)).value
    except Exception:  # noqa: BLE001 - no such key
        return None


# ---------------------------------------------------------------------------------------------- 5. a stranger's server
async def test_a_server_nobody_configured_gets_no_task_unless_the_user_opts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm_tui.engine.bus import where  # here: the module that decides is new

    stranger = EmbeddedServer(tmp_path / "stranger").run()  # another local user's nats-server on "4222"
    monkeypatch.setattr(where, "DEFAULT_PORT", stranger.port)
    env = base_env(tmp_path)
    del env["SWARM_NATS_PROBE_DEFAULT"]  # the defaults, as a new user has them
    cfg = load_config(None, env)
    snc = await nats.connect(stranger.url)
    try:
        assert await submit(cfg, "my private task", 5) == 0
        before = await _stored_on(snc)
        doctor_default = (await check_nats(cfg)).detail
        opted = cfg.replace(nats__probe_default=True)
        assert await submit(opted, "a task for the shared server", 5) == 0
        after = await _stored_on(snc)
        doctor_opted = (await check_nats(opted)).detail
    finally:
        await snc.close()
        stranger.stop()
    print(f"\nstranger's server: {before} message(s) without opt-in, {after} with; doctor: {doctor_default!r}")
    assert before == 0 and after == 1
    assert doctor_default.startswith("embedded server reachable (nats.url is empty: the embedded server of")
    assert doctor_opted.startswith("remote server reachable (nats.probe_default: a server answers on 127.0.0.1:")
    # nothing applied


async def _stored_on(nc: Any) -> int:
    try:
        return int((await nc.jetstream().stream_info(S.EVENTS_STREAM)).state.messages)
    except NotFoundError:
        return 0


# ---------------------------------------------------------------------------------------------- 6. file modes
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as a user with the usual umask (022: new files world-readable unless the app says otherwise)."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_tui", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip


def _modes(root: Path) -> dict[str, str]:
    out = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for p in sorted(root.rglob("*")):
        if not p.is_symlink():
            out[str(p.relative_to(root))] = oct(stat.S_IMODE(p.stat().st_mode))
    return out


def test_the_data_dir_is_private_and_an_open_one_is_tightened(tmp_path: Path) -> None:
    env = base_env(tmp_path)  # no NATS URL: the data dir's embedded server
    data = Path(env["SWARM_DATA_DIR"])
    assert _cli(["submit", "my private task"], env).returncode == 0
    assert _cli(["status"], env).returncode == 0
    fresh = _modes(data)
    wide = {k: v for k, v in fresh.items() if v not in ("0o700", "0o600")}
    # an older data dir, open to everyone: tightened at the next start, and the log says so once
    data.chmod(0o755)
    (data / "swarm-tui.log").chmod(0o644)
    assert _cli(["status"], env).returncode == 0
    assert _cli(["status"], env).returncode == 0
    again = _modes(data)
    said = (data / "swarm-tui.log").read_text().count("was open to other users (mode 755)")
    print(f"\ndata dir after submit + status: {len(fresh)} entries, wider than 0700/0600: {wide or 'none'}")
    assert (data / "nats" / "jetstream").is_dir() and (data / "swarm-tui.log").is_file()
    assert not wide
    assert again["."] == "0o700" and again["swarm-tui.log"] == "0o600" and said == 1
    # nothing applied


# ---------------------------------------------------------------------------------------------- 7. message size
async def test_a_message_over_the_payload_limit_fails_at_once_and_a_task_is_limited_by_its_bytes(
    tmp_path: Path, bus: Bus, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bus.js is not None
    sends = []
    real = bus.js.publish

    async def counting(*a: Any, **kw: Any) -> Any:
        sends.append(1)
        return await real(*a, **kw)

    monkeypatch.setattr(bus.js, "publish", counting)
    with pytest.raises(BusError) as ei:
        await bus.publish(S.evt("result", "j-big"), b"x" * 1_100_000, deadline_s=5)
    assert len(sends) == 1 and "over NATS's limit of 1,048,576 bytes" in str(ei.value)
    # the CLI: a task is as long as its bytes, not its characters
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    outcomes = {}
    for name, text in (
        ("200 000 4-byte characters", "\U0001f600" * 200_000),
        ("200 000 control characters", "a" + "\x01" * 199_998 + "b"),
        ("200 000 ASCII characters", "a" * 200_000),
        ("120 000 4-byte characters", "\U0001f600" * 120_000),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swarm_tui", "submit", "-",
            env=env, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, stderr = await asyncio.wait_for(proc.communicate(text.encode()), 90)
        outcomes[name] = (proc.returncode, stderr.decode().strip())
    print(f"\nsubmit: {json.dumps({k: v[0] for k, v in outcomes.items()})}")
    for name in ("200 000 4-byte characters", "200 000 control characters"):
        code, said = outcomes[name]
        assert code == 2 and len(said.splitlines()) == 1 and "the limit is 524,288" in said, (name, said)
    assert outcomes["200 000 ASCII characters"][0] == 0 and outcomes["120 000 4-byte characters"][0] == 0
    # nothing applied


# ---------------------------------------------------------------------------------------------- 8. aiohttp
def test_aiohttp_is_at_least_the_release_with_the_decompression_bomb_fix() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"aiohttp>=3\.13\.3[",]', pyproject), "pyproject.toml must require aiohttp>=3.13.3"
    installed = tuple(int(p) for p in re.findall(r"\d+", version("aiohttp"))[:3])
    assert installed >= (3, 13, 3), installed

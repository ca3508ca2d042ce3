"""The bus against a real nats-server: submit/status, the embedded server, restarts, malformed messages."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import psutil
import pytest

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.projection.state import SwarmState
from tests.support.env import base_env, make_config, run_cli


def test_submit_then_status_shows_the_task(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = run_cli(["submit", "summarise the NATS docs", "--priority", "high"], env)
    assert res.returncode == 0, res.stderr
    tid = res.stdout.strip()
    assert tid.startswith("t-")
    res = run_cli(["submit", "-"], env, input=b"from stdin\nsecond line")
    assert res.returncode == 0, res.stderr
    tid2 = res.stdout.strip()
    st = run_cli(["status", "--json"], env)
    assert st.returncode == 0, st.stderr
    data = json.loads(st.stdout)
    tasks = {t["id"]: t for t in data["tasks"]}
    assert tasks[tid]["text"] == "summarise the NATS docs"
    assert tasks[tid]["priority"] == 8 and tasks[tid]["state"] == "pending"
    assert tasks[tid2]["text"] == "from stdin\nsecond line"
    text = run_cli(["status"], env)
    assert tid in text.stdout and "pending" in text.stdout


def test_submit_rejects_empty_and_bad_priority(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = run_cli(["submit", "   "], env)
    assert res.returncode == 2 and "empty" in res.stderr
    res = run_cli(["submit", "x", "--priority", "11"], env)
    assert res.returncode == 2 and "priority" in res.stderr


def test_unreachable_nats_is_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL="nats://127.0.0.1:9")
    res = run_cli(["status"], env)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "cannot connect to NATS" in res.stderr


def _nats_children(pid: int) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True) if "nats-server" in c.name()]
    except psutil.Error:
        return []


def test_embedded_server_starts_and_stops_with_no_orphan(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    store = str(tmp_path / "data")

    def ours() -> list[int]:  # nats-servers on this test's store only (other tests run servers too)
        out = []
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if p.info["name"] == "nats-server" and store in " ".join(p.info["cmdline"] or []):
                    out.append(p.pid)
            except psutil.Error:
                pass
        return out

    res = run_cli(["submit", "embedded please"], env)
    assert res.returncode == 0, res.stderr
    tid = res.stdout.strip()
    time.sleep(0.2)
    assert ours() == [], "the one-shot command left its nats-server running"
    # the store persisted: a second one-shot run (new embedded server, same store) still sees the task
    st = run_cli(["status", "--json"], env)
    assert tid in {t["id"] for t in json.loads(st.stdout)["tasks"]}
    assert json.loads(st.stdout)["bus"]["kind"] == "embedded"
    assert not (tmp_path / "data" / "nats.json").exists()


async def test_embedded_server_is_shared_through_the_discovery_file(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    owner = Bus(cfg)
    await owner.connect()
    try:
        assert owner.kind == "embedded"
        info = json.loads((tmp_path / "data" / "nats.json").read_text())
        assert info["pid"] == os.getpid()
        server_pid = info["server_pid"]
        second = Bus(cfg)
        await second.connect()
        assert second.kind == "embedded-shared" and second.url == owner.url
        await second.close()
        assert psutil.pid_exists(server_pid)  # the sharer does not stop the owner's server
    finally:
        await owner.close()
    await asyncio.sleep(0.1)
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE


async def test_stale_discovery_file_is_replaced(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    d = tmp_path / "data"
    d.mkdir(parents=True)
    (d / "nats.json").write_text(json.dumps({"url": "nats://127.0.0.1:9", "pid": 999999, "server_pid": 1}))
    bus = Bus(cfg)
    await bus.connect()
    try:
        assert bus.kind == "embedded" and bus.url != "nats://127.0.0.1:9"
    finally:
        await bus.close()


async def test_kill_9_restart_keeps_tasks_without_duplicates(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "store").run()
    port = srv.port
    cfg = make_config(tmp_path, srv.url)
    bus = Bus(cfg)
    await bus.connect()
    ids = []
    try:
        for i in range(20):
            t = Task(id=new_id("t"), text=f"task {i}", created_at=time.time())
            ids.append(t.id)
            await bus.publish_event(t, msg_id=t.id)
            if i == 9:
                srv.kill()  # kill -9 mid-way; the next publishes retry until the server is back
                srv2 = EmbeddedServer(tmp_path / "store", port=port)
                asyncio.get_running_loop().call_later(0.5, srv2.start)
        # retry the whole batch: the Nats-Msg-Id makes it harmless
        for tid in ids[15:]:
            await bus.publish_event(Task(id=tid, text="again", created_at=time.time()), msg_id=tid)
        state = SwarmState()
        await bus.replay(lambda s, ev, seq: state.apply(ev, seq))
        assert sorted(state.tasks) == sorted(ids)
        assert state.events == 20
    finally:
        await bus.close()
        srv2.stop()


async def test_garbage_on_the_task_subject_is_counted_and_the_consumer_goes_on(bus: Bus, cfg: Config) -> None:
    assert bus.js is not None
    good1 = Task(id=new_id("t"), text="before", created_at=time.time())
    await bus.publish_event(good1)
    for junk in (
        b"\xff\xfe garbage",
        b"[1,2,3]",
        b'{"type":"task","v":1,"id":"bad id!","text":"x"}',
        b'{"type":"task","v":99}',
        b"",
        json.dumps({"type": "task", "v": 1, "id": "t-1", "text": "", "created_at": 1}).encode(),
    ):
        await bus.js.publish(S.evt("task", "junk"), junk)
    good2 = Task(id=new_id("t"), text="after", created_at=time.time())
    await bus.publish_event(good2)
    state = SwarmState()
    await bus.replay(lambda s, ev, seq: state.apply(ev, seq))
    assert set(state.tasks) == {good1.id, good2.id}
    assert bus.dead.counts["task"] == 6
    info = await bus.js.stream_info(S.DEAD_STREAM)
    assert info.state.messages == 6


async def test_setup_is_idempotent(bus: Bus) -> None:
    await bus.setup()
    await bus.setup()
    assert bus.js is not None
    names = {s.config.name for s in await bus.js.streams_info()}
    assert {S.EVENTS_STREAM, S.JOBS_STREAM, S.DEAD_STREAM} <= names


async def test_setup_replaces_the_old_single_job_consumer_and_keeps_its_jobs(bus: Bus) -> None:
    """Before issue 28's fix every pool shared one consumer, ``pool``, over ``swarm.jobs.>``; it overlaps the lanes'
    own (a work queue refuses that), so set-up removes it. A job it had delivered and not acked stays in the
    stream and comes from its lane's consumer."""
    from nats.js import api as jsapi

    js = bus.jetstream
    for lane in S.JOB_LANES:
        await js.delete_consumer(S.JOBS_STREAM, S.jobs_consumer(lane))
    await js.add_consumer(
        S.JOBS_STREAM,
        jsapi.ConsumerConfig(
            durable_name=S.JOBS_OLD_CONSUMER, ack_policy=jsapi.AckPolicy.EXPLICIT, filter_subject=S.JOBS_ALL
        ),
    )
    await bus.publish(S.job("local", "j1"), b"job", msg_id="j1")
    old = await js.pull_subscribe_bind(durable=S.JOBS_OLD_CONSUMER, stream=S.JOBS_STREAM)
    (m,) = await old.fetch(1, timeout=5)  # taken by an old pool, not acked
    assert m.subject == S.job("local", "j1")
    await bus.setup()
    names = {c.name for c in await js.consumers_info(S.JOBS_STREAM)}
    assert names == {S.jobs_consumer("cloud"), S.jobs_consumer("local")}
    sub = await bus.jobs.bind_pull("local")
    (m,) = await sub.fetch(1, timeout=5)
    assert m.subject == S.job("local", "j1") and m.data == b"job"


async def test_follower_sees_events_after_a_server_restart(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "store").run()
    cfg = make_config(tmp_path, srv.url)
    bus = Bus(cfg)
    await bus.connect()
    seen: list[str] = []
    try:
        f = await bus.replay(lambda s, ev, seq: seen.append(str(getattr(ev, "id", ""))), follow=True)
        await bus.publish_event(Task(id="t-a", text="a", created_at=time.time()))
        srv.kill()
        srv = EmbeddedServer(tmp_path / "store", port=srv.port).run()
        await bus.publish_event(Task(id="t-b", text="b", created_at=time.time()))
        for _ in range(100):
            if "t-b" in seen:
                break
            await asyncio.sleep(0.05)
        assert seen == ["t-a", "t-b"]
        await f.stop()
    finally:
        await bus.close()
        srv.stop()


async def test_a_follower_whose_resubscribe_fails_after_a_reconnect_tries_again(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """On a cluster, the node a process was connected to dies and the reconnect lands while JetStream has no
    leader: the first subscribe fails (timeout, 503). The follower must try again, not stay unsubscribed (the
    engine's state then stopped at the kill: tests/fault/test_cluster.py caught it)."""
    bus = Bus(make_config(tmp_path, nats_server.url))
    await bus.connect()
    seen: list[str] = []
    try:
        f = await bus.replay(lambda s, ev, seq: seen.append(str(getattr(ev, "id", ""))), follow=True)
        await bus.publish_event(Task(id="t-a", text="a", created_at=time.time()))
        real, fails = f._subscribe, [2]

        async def flaky() -> None:
            if fails[0]:
                fails[0] -= 1
                raise TimeoutError("no JetStream leader yet")
            await real()

        f._subscribe = flaky  # type: ignore[method-assign]
        await f.resume()  # what a reconnect does
        await bus.publish_event(Task(id="t-b", text="b", created_at=time.time()))
        for _ in range(100):
            if "t-b" in seen:
                break
            await asyncio.sleep(0.05)
        assert seen == ["t-a", "t-b"] and f.resubscribe_failures == 2
        await f.stop()
    finally:
        await bus.close()


@pytest.mark.parametrize(
    "cmd",
    [
        "",
        "run",
        "submit",
        "status",
        "approve",
        "reject",
        "edit",
        "scale",
        "cancel",
        "pause",
        "resume",
        "worker",
        "doctor",
        "config",
        "result",
    ],
)
def test_help_on_every_command(tmp_path: Path, cmd: str) -> None:
    res = run_cli(([cmd] if cmd else []) + ["--help"], base_env(tmp_path))
    assert res.returncode == 0 and "usage: swarm-tui" in res.stdout

"""The embedded server of a data dir is this user's alone, and a client never talks to another server in its place.

Another local user sees the embedded server's loopback port in /proc/net/tcp, can connect to it, and can listen
on it once the server is gone (a crash, the OOM killer). So the server requires a token made at each start (in
0600 files of the 0700 data dir), and a client checks that the server it reached is the one ``nats.json`` names
(its INFO's ``server_name``; on Linux, who owns the socket that accepted) before it sends anything
(``engine/bus/pin.py``). One test per case; each ends with the promise it holds: "nothing applied" (a stranger's
server receives nothing of ours, and a stranger's requests change nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import TOKEN_PREFIX, EmbeddedServer, read_identity, server_binary
from swarm_tui.engine.bus.pin import accepting_uid
from swarm_tui.engine.bus.wire import Task, new_id
from swarm_tui.engine.errors import BusError
from swarm_tui.engine.logs import Redactor
from tests.support.env import base_env, make_config, run_cli
from tests.support.polling import until

pytestmark = pytest.mark.fault


class Spy:
    """A plain client of the stranger's server that sees every message anyone publishes there."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.payloads = b""
        self.nc: Any = None

    async def start(self, url: str) -> Spy:
        self.nc = await nats.connect(url, allow_reconnect=False)

        async def seen(msg: Any) -> None:
            self.subjects.append(msg.subject)
            self.payloads += msg.data

        await self.nc.subscribe(">", cb=seen)
        await self.nc.flush()
        return self

    async def stop(self) -> None:
        await self.nc.close()


async def stored_events(url: str) -> int:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        return int((await nc.jetstream().stream_info("SWARM_EVENTS")).state.messages)
    except Exception:  # noqa: BLE001 - no such stream: nothing came
        return 0
    finally:
        await nc.close()


def take_port(argv: list[str], port: int, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a stranger's nats-server on ``port`` and wait (blocking the loop on purpose, as a faster process
    would) until it listens, so that it, not the owner's restart, has the port."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the stranger's server did not listen on {port}")


def server_name_from_info(port: int) -> str:
    """What any local user reads from the embedded server without logging in: INFO comes first."""
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        line = s.makefile("rb").readline().decode()
    return str(json.loads(line.removeprefix("INFO "))["server_name"])


async def owner_and_sharer(tmp_path: Path) -> tuple[Bus, Bus]:
    cfg = make_config(tmp_path, "")
    owner = await Bus(cfg).connect()
    sharer = await Bus(cfg).connect()
    assert owner.kind == "embedded" and sharer.kind == "embedded-shared" and owner.lease is not None
    return owner, sharer


async def sent_while_a_stranger_holds_the_port(tmp_path: Path, argv: list[str], **popen: Any) -> dict[str, Any]:
    """The owner's server dies; the stranger (``argv`` with ``{port}``) takes its port before anyone restarts it;
    the sharer publishes a task. What did the stranger see, and what do the two buses say?"""
    owner, sharer = await owner_and_sharer(tmp_path)
    assert owner.lease is not None and owner.lease.server is not None
    port = owner.lease.server.port
    proc: subprocess.Popen[bytes] | None = None
    try:
        owner.lease.server.kill()
        proc = take_port([a.format(port=port) for a in argv], port, **popen)
        spy = await Spy().start(f"nats://127.0.0.1:{port}")
        task = Task(id=new_id("t"), text="the quarterly numbers are confidential", created_at=time.time())
        sending = asyncio.ensure_future(sharer.publish_event(task, msg_id=task.id))

        def lost_or_sent() -> bool:
            return (sharer.state == owner.state == "lost") or task.id.encode() in spy.payloads

        await until(lost_or_sent, 20, "both buses lost, or the task sent")
        with contextlib.suppress(BusError):  # refused (or, when it went to the stranger, not stored there)
            await asyncio.wait_for(sending, 40)
        await asyncio.sleep(0.3)  # anything still on its way would arrive now
        await spy.stop()
        return {
            "port": port,
            "seen": spy.subjects,
            "why": sharer.warnings[-1:] + owner.warnings[-1:],
            "nats_json": (tmp_path / "data" / "nats.json").exists(),
        }
    finally:
        await sharer.close()
        await owner.close()
        if proc is not None:
            proc.kill()
            proc.wait(5)


async def test_a_stranger_on_the_dead_server_s_port_receives_nothing_and_both_buses_say_lost(tmp_path: Path) -> None:
    """Before: the owner's and the sharer's nats-py reconnected to the stranger's server on the port, replayed
    their subscriptions and flushed what was buffered, then published the task there. Now the stranger's INFO
    does not carry the name of nats.json: nothing is sent (not even CONNECT with the token), the owner cannot
    start its server on that port again, and both buses are "lost" with a line naming the port."""
    out = await sent_while_a_stranger_holds_the_port(
        tmp_path, [server_binary(), "-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", str(tmp_path / "stranger")]
    )
    print(f"\nthe stranger on {out['port']} saw {len(out['seen'])} message(s) {out['seen'][:5]}; said: {out['why']}")
    assert out["seen"] == []
    assert len(out["why"]) == 2 and all(f"127.0.0.1:{out['port']}" in w for w in out["why"]), out["why"]
    assert not out["nats_json"], "the lost owner frees the data dir for the next process"
    # nothing applied: the stranger's server saw no message of ours


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a second user to run the stranger's server as (root only)")
async def test_a_stranger_of_another_user_who_copies_the_server_name_is_refused_by_the_socket_owner(
    tmp_path: Path,
) -> None:
    """The server's name is no secret: INFO comes before any login, so another user reads it from the live
    server, waits for it to die and listens on its port under that name. Before: both buses reconnected there
    and sent it the task. Now the socket at the server's end of the connection belongs to another uid
    (/proc/net/tcp): refused before anything is sent."""
    owner, sharer = await owner_and_sharer(tmp_path)
    assert owner.lease is not None and owner.lease.server is not None
    port = owner.lease.server.port
    name = server_name_from_info(port)  # as any local user reads it
    proc: subprocess.Popen[bytes] | None = None
    try:
        owner.lease.server.kill()
        proc = take_port([server_binary(), "-a", "127.0.0.1", "-p", str(port), "-n", name], port, user=65534)
        spy = await Spy().start(f"nats://127.0.0.1:{port}")
        task = Task(id=new_id("t"), text="the quarterly numbers are confidential", created_at=time.time())
        sending = asyncio.ensure_future(sharer.publish_event(task, msg_id=task.id))
        await until(lambda: sharer.state == "lost" or task.id.encode() in spy.payloads, 20, "lost, or the task sent")
        with contextlib.suppress(BusError):  # refused (or, when it went to the stranger, not stored there)
            await asyncio.wait_for(sending, 40)
        await asyncio.sleep(0.3)  # anything still on its way would arrive now
        await spy.stop()
        why = sharer.warnings[-1:]
    finally:
        await sharer.close()
        await owner.close()
        if proc is not None:
            proc.kill()
            proc.wait(5)
    print(f"\nthe stranger (uid 65534) on {port} named {name!r} saw {len(spy.subjects)} message(s); said: {why}")
    assert spy.subjects == []
    assert why and "uid 65534" in why[0] and f"127.0.0.1:{port}" in why[0], why
    # nothing applied: the stranger's server saw no message of ours


async def test_the_owner_starts_its_dead_server_again_and_every_process_carries_on(tmp_path: Path) -> None:
    """Before: when the embedded server died (OOM killer, crash) while its owner lived, both buses reconnected
    forever to nothing. Now the owner starts it again on the same port with a new name and token, nats.json
    says so, and the owner, the sharer and a second terminal carry on with the same store."""
    owner, sharer = await owner_and_sharer(tmp_path)
    try:
        assert owner.lease is not None and owner.lease.server is not None
        before = read_identity(tmp_path / "data")
        assert before is not None
        t1 = Task(id=new_id("t"), text="before the crash", created_at=time.time())
        await sharer.publish_event(t1, msg_id=t1.id)
        owner.lease.server.kill()
        after = await until(
            lambda: (i := read_identity(tmp_path / "data")) is not None and i.server_pid != before.server_pid and i,
            20,
            "a new server in nats.json",
        )
        await until(lambda: owner.state == sharer.state == "connected", 20, "both buses back")
        t2 = Task(id=new_id("t"), text="after the crash", created_at=time.time())
        await sharer.publish_event(t2, msg_id=t2.id)
        t3 = Task(id=new_id("t"), text="from the owner", created_at=time.time())
        await owner.publish_event(t3, msg_id=t3.id)
        env = base_env(tmp_path)
        res = await asyncio.to_thread(run_cli, ["submit", "from a second terminal"], env)
        st = await asyncio.to_thread(run_cli, ["status", "--json"], env)
    finally:
        await sharer.close()
        await owner.close()
    tasks = {t["id"] for t in json.loads(st.stdout)["tasks"]} if st.returncode == 0 else set()
    print(
        f"\nserver pid {before.server_pid} -> {after.server_pid} on {before.url} -> {after.url}; submit exit "
        f"{res.returncode}; status sees {len(tasks)} task(s)"
    )
    assert after.url == before.url and after.name != before.name and after.token != before.token
    assert res.returncode == 0, res.stderr
    assert {t1.id, t2.id, t3.id, res.stdout.strip()} <= tasks
    # nothing lost: the store outlived its server


async def test_the_embedded_server_takes_only_its_token_and_the_token_never_shows(tmp_path: Path) -> None:
    """Before: the embedded server took any login, and there was no secret to keep. Now a login without the
    token, or with another, is refused; the token lives in nats.json and the server's config (0600, in the 0700
    data dir), and appears in no output of status, config, doctor or submit, nor in the log."""
    cfg = make_config(tmp_path, "")
    owner = await Bus(cfg).connect()
    env = base_env(tmp_path)
    try:
        ident = read_identity(tmp_path / "data")
        assert ident is not None and ident.token.startswith(TOKEN_PREFIX)
        assert ident.token not in repr(ident)
        assert accepting_uid(owner.nc) == os.getuid()  # the kernel's word on who accepted our connection
        refused = []
        for login in ({}, {"token": TOKEN_PREFIX + "guessed"}, {"user": "swarm", "password": "swarm"}):
            try:
                nc = await nats.connect(ident.url, allow_reconnect=False, connect_timeout=3, **login)
            except Exception as exc:  # noqa: BLE001 - refused
                refused.append(str(exc))
            else:
                await nc.close()
        outputs = [
            await asyncio.to_thread(run_cli, args, env)
            for args in (["submit", "from a second terminal"], ["status", "--json"], ["config"], ["doctor"])
        ]
    finally:
        await owner.close()
    data = tmp_path / "data"
    shown = "".join(r.stdout + r.stderr for r in outputs)
    logged = "".join(p.read_text(errors="replace") for p in data.glob("*.log*"))
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (data, data / "nats" / "nats-server.conf")}
    masked = Redactor([]).scrub(f"connect failed with {ident.token} in it")
    print(f"\n{len(refused)} of 3 wrong logins refused; exits {[r.returncode for r in outputs]}; modes {modes}")
    assert len(refused) == 3, refused
    assert outputs[0].returncode == 0 and outputs[1].returncode == 0, [r.stderr for r in outputs]
    assert ident.token not in shown and ident.token not in logged and ident.token not in masked
    assert modes == {"data": "0o700", "nats-server.conf": "0o600"}
    # nothing applied: no login but this user's token reaches the server


async def test_a_one_shot_command_refuses_a_server_that_is_not_the_one_nats_json_names(tmp_path: Path) -> None:
    """nats.json names a live owner and a live server pid, and something answers on its port, but it is not the
    server of this data dir (a pid reused, a stranger on the port). Before: ``submit`` trusted the file, set up
    the streams there and stored the task. Now its INFO does not carry the name of nats.json: ``submit`` exits 1
    with one line naming the port, and the server received nothing."""
    stranger = EmbeddedServer(tmp_path / "stranger-store").run()
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    fake = {
        "url": stranger.url,
        "pid": os.getpid(),
        "server_pid": stranger.pid,
        "name": "swarm-0123456789abcdef",
        "token": TOKEN_PREFIX + "x" * 43,
    }
    (data / "nats.json").write_text(json.dumps(fake))
    (data / "nats.json").chmod(0o600)
    try:
        spy = await Spy().start(stranger.url)
        res = await asyncio.to_thread(run_cli, ["submit", "the quarterly numbers are confidential"], base_env(tmp_path))
        await asyncio.sleep(0.3)
        await spy.stop()
        held = await stored_events(stranger.url)
    finally:
        stranger.stop()
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    print(f"\nsubmit exit {res.returncode}: {lines}; the stranger saw {len(spy.subjects)} message(s), holds {held}")
    assert res.returncode == 1 and len(lines) == 1 and "Traceback" not in res.stderr
    assert f"127.0.0.1:{stranger.port}" in lines[0]
    assert spy.subjects == [] and held == 0
    # nothing applied: the task went nowhere


def test_the_log_masks_the_token_of_any_embedded_server() -> None:
    """A process logs an error that holds the token it read from nats.json (not one of its configured secrets):
    the redactor masks it by its prefix."""
    token = TOKEN_PREFIX + "AbC_d-1234567890abcdefghijklmnopqrstuvwxyz0"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "login %s failed", (token,), None)
    Redactor([]).filter(record)
    print(f"\n{record.getMessage()!r}")
    assert token not in record.getMessage() and "***" in record.getMessage()

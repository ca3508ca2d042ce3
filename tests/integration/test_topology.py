"""The bus's shape as `status` and `doctor` report it, and the replica setting's refusals (one line, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer, Leaf
from swarm_tui.engine.bus.topology import describe, one_line
from tests.support.env import base_env, make_config, run_cli


def test_status_and_doctor_show_a_single_server_with_one_replica(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = run_cli(["status", "--json"], env)
    assert res.returncode == 0, res.stderr
    topo = json.loads(res.stdout)["bus"]["topology"]
    assert topo["kind"] == "single server" and topo["replicas"] == 1, topo
    text = run_cli(["status"], env)
    assert "bus: connected (remote); single server, 1 replica" in text.stdout, text.stdout
    doc = run_cli(["doctor"], env)
    assert "bus: single server, 1 replica" in doc.stdout, doc.stdout


def test_replicas_beyond_a_single_server_is_one_clear_line(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url, SWARM_NATS_REPLICAS="3")
    res = run_cli(["status"], env)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "nats.replicas = 3 needs a JetStream cluster of at least 3 servers" in lines[0]


def test_a_bad_replica_count_is_refused_by_the_config(tmp_path: Path) -> None:
    res = run_cli(["status"], base_env(tmp_path, SWARM_NATS_REPLICAS="7"))
    assert res.returncode != 0 and "nats.replicas" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_the_engine_refuses_to_start_on_a_leaf(tmp_path: Path) -> None:
    res = run_cli(["run", "--headless"], base_env(tmp_path, SWARM_NATS_LEAF_URL="nats-leaf://127.0.0.1:9"))
    assert res.returncode != 0 and "the engine runs on the hub" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_leaf_whose_hub_never_answers_says_so_in_one_line(tmp_path: Path) -> None:
    res = run_cli(["status"], base_env(tmp_path, SWARM_NATS_LEAF_URL="nats-leaf://user:s3cret-pw@127.0.0.1:9"))
    assert res.returncode != 0 and "does not answer over the leaf link" in res.stderr, res.stderr
    assert "s3cret-pw" not in res.stderr and "Traceback" not in res.stderr


def test_the_leaf_config_is_the_users_alone_and_has_no_jetstream(tmp_path: Path) -> None:
    srv = EmbeddedServer(tmp_path / "leaf", leaf=Leaf("nats-leaf://u:pw@127.0.0.1:9", creds="/x/y.creds"))
    conf = srv._write_conf()
    text = conf.read_text()
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "jetstream" not in text and 'credentials: "/x/y.creds"' in text and "remotes" in text


async def test_describe_a_single_server(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    bus = await Bus(make_config(tmp_path, nats_server.url)).connect()
    try:
        t = await describe(bus)
    finally:
        await bus.close()
    assert t["kind"] == "single server" and t["replicas"] == 1
    assert one_line(t) == "single server, 1 replica"

"""``swarm-tui replay``: bad input is one line and exit 2, an empty log one line and exit 1, and a file is replayed
with no bus at all (no connection, no embedded server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm_tui.cli import runner
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.history.filelog import write_log_file
from swarm_tui.tui.link import ReplayLink
from swarm_tui.tui.replay_app import ReplayApp
from tests.support.env import base_env, make_config, run_cli
from tests.support.history_log import history_events

NOWHERE = "nats://127.0.0.1:9"  # nothing listens on the discard port


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--speed", "100"], "--speed '100': give a number 1..50"),
        (["--speed", "fast"], "--speed 'fast': give a number 1..50"),
        (["--from", "yesterday"], "--from 'yesterday': not understood"),
        (["--from", "-15"], "--from -15: give a unit"),
    ],
)
def test_bad_speed_or_from_is_one_line_and_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    path = tmp_path / "run.jsonl"
    write_log_file(path, history_events())
    res = run_cli(["replay", "--file", str(path), *args], base_env(tmp_path, SWARM_NATS_URL=NOWHERE))
    assert res.returncode == 2 and said in _one_line(res.stderr)


def test_a_sequence_outside_the_log_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_log_file(path, history_events())
    res = run_cli(["replay", "--file", str(path), "--from", "99"], base_env(tmp_path, SWARM_NATS_URL=NOWHERE))
    assert res.returncode == 2 and "the log holds events 1..7" in _one_line(res.stderr)


def test_an_empty_file_or_bus_log_is_one_line_and_exit_1(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = run_cli(["replay", "--file", str(empty)], base_env(tmp_path, SWARM_NATS_URL=NOWHERE))
    assert res.returncode == 1 and "nothing to replay: the file holds no events" in _one_line(res.stderr)
    res = run_cli(["replay"], base_env(tmp_path, SWARM_NATS_URL=nats_server.url))
    assert res.returncode == 1 and "nothing to replay: the event log is empty" in _one_line(res.stderr)


def test_a_file_is_replayed_with_no_bus_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.jsonl"
    write_log_file(path, history_events())
    seen: list[ReplayLink] = []

    def run(self: ReplayApp, *_: Any, **__: Any) -> int:
        assert isinstance(self.link, ReplayLink)
        seen.append(self.link)
        return 0

    def no_bus(*_: Any, **__: Any) -> None:
        raise AssertionError("a bus was made for a file")

    monkeypatch.setattr(ReplayApp, "run", run)
    monkeypatch.setattr(Bus, "__init__", no_bus)
    cfg = make_config(tmp_path, NOWHERE)
    assert runner.run_replay(cfg, file=str(path), speed="5", start="3") == 0
    link = seen[0]
    assert link.bus is None and link.timeline.speed == 5 and link.where == "file run.jsonl"

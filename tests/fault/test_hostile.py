"""Hostile input: any bytes on any subject, any task text, any output text. No crash, a clear rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import EVENT_TYPES, MAX_MSG_BYTES, decode
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import is_clean, plain
from tests.support.env import base_env, run_cli

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_invalid(data: bytes) -> None:
    try:
        decode(data)
    except InvalidMessage as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(EVENT_TYPES)),
    st.dictionaries(st.text(max_size=12), json_values, max_size=8),
    st.integers(-2, 3),
)
def test_any_object_of_every_type_decodes_or_is_rejected(kind: str, body: dict[str, Any], v: int) -> None:
    body = dict(body, type=kind, v=v)
    try:
        raw = json.dumps(body).encode()
    except ValueError:
        return
    try:
        msg = decode(raw)
    except InvalidMessage:
        return
    # whatever decodes can be folded into the state without an exception
    SwarmState().apply(msg)


def test_oversized_message_is_rejected_before_parsing() -> None:
    big = b'{"type":"task","text":"' + b"x" * MAX_MSG_BYTES + b'"}'
    try:
        decode(big)
    except InvalidMessage as exc:
        assert "limit" in str(exc)
    else:
        raise AssertionError("an oversized message decoded")


hostile_chars = st.characters(codec="utf-8") | st.sampled_from(
    [
        "\x1b",
        "\x1b[2J",
        "\x1b]52;c;aGVsbG8=\x07",
        "\x1b]0;pwned\x07",
        "\x9b",
        "\x07",
        "\x08",
        "\r",
        "\u202e",
        "[bold red]",
        "[/]",
        "[link=file:///etc/passwd]x[/link]",
        "\x00",
        "\u2066",
        "\x7f",
    ]
)


@settings(max_examples=500)
@given(st.lists(hostile_chars, max_size=60).map("".join))
def test_plain_text_is_inert(text: str) -> None:
    out = plain(text)
    assert is_clean(out) and "\n" not in out and "\t" not in out
    kept = plain(text, keep_newlines=True)
    assert is_clean(kept)
    assert len(out) == len(text)  # one stand-in per character: nothing hidden, nothing added


def test_hostile_task_text_round_trips_and_prints_inert(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    nasty = "[bold]markup[/] clear\x1b[2J title\x1b]0;pwned\x07 clip\x1b]52;c;aGk=\x07 csi\x9b31m rtl\u202eevil"
    res = run_cli(["submit", "-"], env, input=nasty.encode())
    assert res.returncode == 0, res.stderr
    st_json = json.loads(run_cli(["status", "--json"], env).stdout)
    assert st_json["tasks"][0]["text"] == nasty  # stored exactly (JSON escapes it)
    text = run_cli(["status"], env).stdout
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text and "\x07" not in text
    assert "[bold]markup[/]" in text  # shown literally, not interpreted


def test_binary_and_huge_task_text_are_rejected_clearly(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    res = run_cli(["submit", "-"], env, input=b"\xff\xfe\x00binary")
    assert res.returncode == 2 and "UTF-8" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(["submit", "-"], env, input=b"a" * 300_000)
    assert res.returncode == 2 and "limit" in res.stderr

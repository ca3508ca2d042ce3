"""JSON nested deeper than Python's decoder allows raises RecursionError, not ValueError: every reader of JSON
from outside (the bus, a KV entry, a provider's answer) treats it as unreadable, never as a crash."""

from __future__ import annotations

import pytest

from swarm_tui.engine.bus.wire import decode
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.guards.ledger_doc import parse_doc
from swarm_tui.engine.guards.openrouter_get import strict_json
from swarm_tui.engine.swarm.openrouter_http import error_message

DEEP = b"[" * 100_000


def test_the_decoder_really_recurses_on_it() -> None:
    import json

    with pytest.raises(RecursionError):
        json.loads(DEEP)


def test_a_bus_message_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match="not JSON"):
        decode(DEEP)


def test_a_ledger_entry_starts_over() -> None:
    assert parse_doc(DEEP, daily=True)["reserved"] == {}


def test_a_provider_answer_is_refused_or_shown_as_text() -> None:
    with pytest.raises(ValueError):
        strict_json(DEEP)
    assert error_message(DEEP, 502).startswith("[[[")

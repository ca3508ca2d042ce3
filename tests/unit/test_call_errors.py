"""The kind a failed call gets from its HTTP status, and classify's use of it (OpenRouter's "Errors" page)."""

from __future__ import annotations

import pytest

from swarm_tui.engine.swarm.call_errors import CallErrorKind, HttpStatus, call_error, classify, status_kind


@pytest.mark.parametrize(
    ("status", "afford", "kind"),
    [
        (429, None, "rate_limited"),
        (402, None, "out_of_credit"),
        (402, 60, "cannot_afford"),
        (500, None, "retryable"),
        (503, None, "retryable"),
        (408, None, "retryable"),
        (400, None, "fatal"),
        (401, None, "fatal"),
        (403, None, "fatal"),
        (404, None, "fatal"),
        (None, None, "fatal"),
    ],
)
def test_the_status_decides_the_kind(status: int | None, afford: int | None, kind: CallErrorKind) -> None:
    assert status_kind(status, afford=afford) == kind
    e = call_error(status, "why", retry_after=1.5, afford=afford)
    assert (e.kind, e.reason, e.status, e.retry_after, e.afford) == (kind, "why", status, 1.5, afford)


def test_classify_reads_a_402_that_names_what_the_credit_affords() -> None:
    e = classify(HttpStatus("You requested up to 100 tokens, but can only afford 60", 402))
    assert e.kind == "cannot_afford" and e.afford == 60 and e.status == 402
    e = classify(HttpStatus("Insufficient credits", 402))
    assert e.kind == "out_of_credit" and e.afford is None and e.reason.startswith("out of credit (402)")


def test_a_connection_error_without_a_status_is_retryable_not_fatal() -> None:
    class APIConnectionError(Exception):
        pass

    e = classify(APIConnectionError("reset by peer"))
    assert e.kind == "retryable" and e.status is None

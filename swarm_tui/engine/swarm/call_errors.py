"""What went wrong in a worker call, in words a person can act on: ``CallError`` and the classifiers.

``classify`` reads litellm's exceptions and ``HttpStatus`` (what ``openrouter_http`` raises for an answer that
is not a stream) alike, by ``status_code`` and the response headers; ``stream_error`` reads the error event
inside a 200 stream (OpenRouter's streaming doc, "Handling Errors During Streaming"). Reasons are short, one
line, and hold no secret.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any, Literal

CallErrorKind = Literal["rate_limited", "out_of_credit", "cannot_afford", "retryable", "stream_error", "fatal"]
KEY_REFUSED = "the provider refused the key (401)"  # a failed job's reason starts so: the pool has the key rechecked


class HttpStatus(Exception):
    """An answer that is not a stream (an HTTP error status, a redirect, a 200 error body), shaped as ``classify``
    reads an HTTP error: ``status_code`` and the headers. ``generation_id``: the generation it names, if any (a
    generation that ran is reconciled, not settled at 0)."""

    def __init__(self, message: str, status_code: int, headers: Any = None, *, generation_id: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.litellm_response_headers = headers  # the name classify reads Retry-After / X-RateLimit-* under
        self.generation_id = generation_id


class CallError(Exception):
    """A failed call, classified.

    kind: ``rate_limited`` (429), ``out_of_credit`` (402), ``cannot_afford`` (402 for this request's max_tokens:
    ``afford`` holds what the credit covers), ``retryable`` (5xx, timeouts, dropped connection, a stream that
    ended before the provider said it was finished), ``stream_error`` (an error chunk mid-stream, a line over the
    limit: fail, keep the partial output), ``fatal`` (401/403/400/404, a redirect, no content by the
    first-content limit, max_tokens spent on reasoning ...). ``retry_after``: seconds from ``Retry-After`` or
    ``X-RateLimit-Reset``.
    """

    def __init__(
        self,
        kind: CallErrorKind,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        afford: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind: CallErrorKind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.afford = afford  # kind "cannot_afford" (402): the max_tokens the credit left covers


def status_kind(status: int | None, *, afford: int | None = None) -> CallErrorKind:
    """The kind an HTTP status makes of a failed call (OpenRouter's "Errors" page): 429 waits, 402 is the credit
    (``afford`` set: this request only), 5xx and 408 retry, any other status (or none) fails the job."""
    if status == 429:
        return "rate_limited"
    if status == 402:
        return "out_of_credit" if afford is None else "cannot_afford"
    if status is not None and (status >= 500 or status == 408):
        return "retryable"
    return "fatal"


def call_error(
    status: int | None, reason: str, *, retry_after: float | None = None, afford: int | None = None
) -> CallError:
    """A CallError whose kind the HTTP status decides (``status_kind``)."""
    return CallError(status_kind(status, afford=afford), reason, status=status, retry_after=retry_after, afford=afford)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return re.sub(r"(sk-or-[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+", r"\1***", text)


def short(exc: BaseException, secrets: list[str]) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    m = re.search(r'"message":\s*"([^"]{1,200})"', text)
    if m:
        text = m.group(1)
    for noise in (
        "litellm.",
        "MidStreamFallbackError: ",
        "APIConnectionError: ",
        "APIError: ",
        "OpenrouterException - ",
        "Message: ",
        "RateLimitError: ",
    ):
        text = text.replace(noise, "")
    text = text.split(" Original exception")[0].split(", Metadata")[0].strip(" :-")
    return redact(text, secrets)[:200] or type(exc).__name__


def _retry_after(exc: BaseException) -> float | None:
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        resp = getattr(exc, "response", None)
        headers = getattr(resp, "headers", None)
    return header_wait(headers)


def header_wait(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds) or else ``X-RateLimit-Reset`` (when the window resets:
    OpenRouter sends epoch milliseconds; epoch seconds and plain seconds are read too); None: neither."""
    if not headers:
        return None
    try:
        low = {str(k).lower(): v for k, v in headers.items()}
    except (AttributeError, TypeError):
        return None
    try:
        raw = low.get("retry-after")
        if raw is not None:
            wait = float(raw)
            return max(0.0, wait) if math.isfinite(wait) else None  # "nan" or "inf" says nothing
        raw = low.get("x-ratelimit-reset")
        if raw is None:
            return None
        v = float(raw)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    now = time.time() if now is None else now
    if v > 1e11:  # epoch milliseconds
        return max(0.0, v / 1000 - now)
    if v > 1e9:  # epoch seconds
        return max(0.0, v - now)
    return max(0.0, v)


def code_status(code: Any) -> int | None:
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code.strip())
    return None


def stream_error(code: Any, message: str, headers: Any = None, secrets: list[str] | None = None) -> CallError:
    """An error event inside a 200 stream, by its ``error.code`` (OpenRouter's streaming doc, "Handling Errors
    During Streaming"): 429 takes the rate-limit path, 5xx and "overloaded" the retryable one, 402 the credit
    path (as ``classify`` reads an HTTP 402), anything else fails the job keeping the partial output."""
    secrets = secrets or []
    status = code_status(code)
    name = code.lower() if isinstance(code, str) else ""
    text = redact(str(message or "the provider reported an error"), secrets)[:200]
    where = f"error mid-stream ({code}): {text}" if code not in (None, "") else f"error mid-stream: {text}"
    if status == 429 or "rate_limit" in name:
        return call_error(429, f"rate limited mid-stream (429): {text}", retry_after=header_wait(headers))
    if status == 402:
        return classify(HttpStatus(text, 402, headers), secrets)
    if (
        (status is not None and 500 <= status <= 599)
        or "overloaded" in text.lower()
        or "overloaded" in name
        or "server_error" in name
    ):
        return CallError("retryable", where, status=status, retry_after=header_wait(headers))
    return CallError("stream_error", where, status=status)


def classify(exc: BaseException, secrets: list[str] | None = None) -> CallError:
    """A litellm (or asyncio) exception as a CallError with a short reason that holds no secret."""
    if isinstance(exc, CallError):
        return exc
    secrets = secrets or []
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return CallError("retryable", "timed out")
    name = type(exc).__name__
    inner = getattr(exc, "original_exception", None)
    if name == "MidStreamFallbackError" and inner is not None:
        iname = type(inner).__name__
        if iname in ("APIConnectionError", "Timeout"):
            return CallError("retryable", "connection lost mid-stream: " + short(inner, secrets))
        ist = getattr(inner, "status_code", None)
        return stream_error(
            ist if isinstance(ist, int) else None,
            short(inner, secrets),
            getattr(inner, "litellm_response_headers", None),
            secrets,
        )
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    reason = short(exc, secrets)
    if status == 429 or name == "RateLimitError":
        return call_error(429, f"rate limited (429): {reason}", retry_after=_retry_after(exc))
    if status == 402:
        # OpenRouter's "Errors" page: a 402 is either this one request costing more than the credit left ("This
        # request requires more credits, or fewer max_tokens. You requested up to N tokens, but can only
        # afford M"): that job shrinks or fails; or the account (or key) is out of credit: dispatch stops.
        m = re.search(r"can only afford (\d+)", str(exc)) or re.search(r"can only afford (\d+)", reason)
        if m:
            return call_error(
                402,
                f"the credit left affords only {m.group(1)} tokens of this request (402): {reason}",
                afford=int(m.group(1)),
            )
        return call_error(402, f"out of credit (402): {reason}")
    if status == 401:
        return call_error(401, f"{KEY_REFUSED}: {reason}")
    if status == 403:  # "Errors and Debugging": guardrail block, moderation flag (or a region the model refuses)
        return call_error(403, f"refused by OpenRouter (moderation, guardrail or region): {reason}")
    if name in ("Timeout", "APIConnectionError") or (status is not None and (status >= 500 or status == 408)):
        return CallError(
            "retryable",
            f"{'HTTP ' + str(status) + ': ' if status else ''}{reason}",
            status=status,
            retry_after=_retry_after(exc) if status is not None else None,
        )
    if status is not None:
        return call_error(status, f"HTTP {status}: {reason}")
    return CallError("retryable" if isinstance(exc, OSError) else "fatal", reason)

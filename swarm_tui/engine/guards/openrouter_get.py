"""GET a JSON answer from OpenRouter's API (``/key``, ``/generation``) without believing more than it says.

Both answers move money: ``/key``'s ``limit_remaining`` lets cloud dispatch go on, ``/generation``'s
``total_cost`` is what an attempt is recorded at. So:

- redirects are not followed: a 3xx is an error naming its ``Location`` (a redirect target's figures are not
  believed, and the key is not sent on to another host);
- the body is bounded (``MAX_BODY``);
- a number that is not finite (``1e400`` parses as inf, ``NaN``, ``Infinity``) or an integer too long to be a
  real figure refuses the whole answer: a part of it cannot be trusted, so none of it is.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

MAX_BODY = 1 << 20  # both answers are a few hundred bytes
MAX_INT_DIGITS = 18


class Refused(Exception):
    """An answer that is not believed: ``reason`` says why, in one line fit to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def printable(text: str, limit: int = 200) -> str:
    """Text from a server as one inert line (a Location header may hold anything)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _finite(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"a number that is not finite: {printable(text, 40)}")
    return v


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"a number that is not finite: {name}")


def strict_json(raw: bytes) -> Any:
    """JSON with finite numbers only; raises ValueError otherwise."""
    try:
        return json.loads(raw, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested deeper than the decoder allows") from None


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str],
    secret: str = "",
) -> tuple[int, Any]:
    """(status, body): the body parsed for a 200 only (None otherwise). Raises ``Refused`` for a redirect, a body
    over ``MAX_BODY`` or one that is not strict JSON; aiohttp's own errors pass through. ``secret`` (the key) is
    never repeated in a reason, whatever the server put in its Location."""
    async with session.get(url, params=params, headers=headers, allow_redirects=False) as resp:
        if 300 <= resp.status < 400:
            loc = resp.headers.get("Location", "")
            where = printable(loc.replace(secret, "***") if secret else loc) or "nowhere"
            raise Refused(f"HTTP {resp.status}: a redirect to {where} (not followed)")
        if resp.status != 200:
            return resp.status, None
        buf = bytearray()
        async for part in resp.content.iter_chunked(1 << 16):
            buf += part
            if len(buf) > MAX_BODY:
                raise Refused(f"an answer over {MAX_BODY} bytes")
    try:
        return 200, strict_json(bytes(buf))
    except (ValueError, RecursionError) as exc:
        raise Refused(f"an unreadable answer ({printable(str(exc), 80)})") from None

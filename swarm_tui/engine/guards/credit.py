"""Provider credit: whether a cloud call may go to OpenRouter at all.

Three things stop cloud dispatch, whatever the budget says:

- the key's own limit is used up: ``GET {api_base}/key`` (polled every ``openrouter.key_poll_s``) answers
  ``data.limit_remaining`` <= 0. ``limit_remaining`` is the key's limit, not the account's balance (null: the key
  has no limit).
- the key is rejected: the key endpoint answered 401 or 403 (a revoked or mistyped key). Every call would fail;
  this holds until a poll answers 200.
- the account is out of credit: a call (or the key endpoint) answered 402. The account's balance is not
  visible to the key, so a key check cannot end it for ``hold_s`` (``CREDIT_HOLD_S``, or the cool-down when
  that is shorter); then a check started that long after the 402 that shows the key's limit allows again ends
  it, as do a call sent after it that goes through and the cool-down (5 x ``key_poll_s``) passing (then a 402
  stops it again).

The hold, the cool-down and the key check's "started that long after" are measured on the monotonic clock: a
wall clock stepped back (NTP, a resumed VM) neither lengthens nor shortens them. "A call sent after the 402" is
wall time against wall time (a call's start is stamped with ``time.time``); a step back can only keep that one
from ending the hold, and the cool-down still does.

The key is checked at start, every ``openrouter.key_poll_s``, and soon after this process's own call is refused
(a 402, or a 401: ``recheck``). Rechecks coalesce: one check at a time, and one starts at least
``RECHECK_GAP_S`` after the last one started, however many refusals ask (a 402 answered by the key endpoint
itself asks none: no loop). A 402 from a call asks a recheck to say at once whether it is the key's own limit
that ran out; that recheck cannot end the 402 (the hold above).

A key OpenRouter rejects is not a lack of credit: ``info()`` says ``key_rejected``, and ``out_of_credit`` only
for a 402 or the key's limit used up.

An answer of the key endpoint that is a redirect, or holds a number that is not finite, changes nothing
(engine/guards/openrouter_get.py): ``key_status`` says why it was refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from swarm_tui.engine.bus.numbers import finite
from swarm_tui.engine.config.sections import OpenRouterSection
from swarm_tui.engine.errors import Refusal
from swarm_tui.engine.guards.estimate import usd
from swarm_tui.engine.guards.openrouter_get import Refused, get_json
from swarm_tui.engine.info import CreditInfo
from swarm_tui.engine.lifecycle import within

log = logging.getLogger(__name__)

_KEY_STATUS = {401: "rejected (HTTP 401)", 403: "rejected (HTTP 403)", 404: "no key endpoint"}
KEY_REJECTED = (401, 403)
RECHECK_GAP_S = 3.0  # the least time between the starts of two key checks, however many refusals ask
CREDIT_HOLD_S = 30.0  # no key check ends a 402 sooner (the cool-down does, when it is shorter: hold_s)


class CreditWatch:
    """The out-of-credit state and the key poller. Only ever talks to the key endpoint; never logs the key."""

    def __init__(
        self,
        openrouter: OpenRouterSection,
        *,
        clock: Callable[[], float],
        cooldown_s: float | None,
        counts: collections.Counter[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.openrouter = openrouter
        self.clock = clock  # wall: compared with a call's start (credit_ok)
        self.monotonic = monotonic  # the hold and the cool-down: a wall-clock step moves neither
        # how long a 402 holds when nothing shows credit again: 5 x key_poll_s unless given
        self.cooldown_s = 5 * openrouter.key_poll_s if cooldown_s is None else float(cooldown_s)
        # how long no key check may end it (the check a 402 asks for at once must not undo it)
        self.hold_s = min(CREDIT_HOLD_S, self.cooldown_s)
        self.counts = counts  # shared with the spend guard, shown in its info()
        self.credits_left: float | None = None
        self.key: Callable[[], str] = lambda: openrouter.api_key  # the workers' key (guards/provider_cap.py)
        self.cap_line: Callable[[], str] | None = None  # "provider cap $X/day", with a management key
        self.on_refused: Callable[[], None] | None = None  # a 401 on the provider cap's key: it makes a new one
        self.key_status = "no key" if not (openrouter.api_key or openrouter.management_key) else "not checked yet"
        self._key_blocked = ""
        self._key_rejected = False
        self._credit_reason = ""
        self._credit_at = 0.0  # wall, for credit_ok
        self._credit_mono = 0.0  # monotonic, for the hold and the cool-down
        self._last_poll = 0.0
        self._http: aiohttp.ClientSession | None = None
        self._recheck = asyncio.Event()  # look at the key soon, not at the next key_poll_s
        self._checked_at: float | None = None  # when the last check started (monotonic)

    def blocked(self) -> Refusal | None:
        """Why no cloud job may be dispatched now, or None."""
        if self._key_blocked:
            return Refusal(self._key_blocked)
        if self._credit_reason and self.monotonic() - self._credit_mono >= self.cooldown_s:
            self._credit_reason = ""
        return Refusal(self._credit_reason) if self._credit_reason else None

    def credit_ok(self, since: float) -> None:
        """A call sent at ``since``, after the account ran out of credit, went through: dispatch resumes."""
        if self._credit_reason and since >= self._credit_at:
            log.info("a call went through again: cloud dispatch resumes")
            self._credit_reason = ""

    def mark_out_of_credit(self, reason: str, *, recheck: bool = True) -> None:
        r = (reason or "the provider refused for lack of credit").strip()[:200]
        self._credit_reason = r if r.startswith("out of credit") else f"out of credit: {r}"
        self._credit_at = self.clock()
        self._credit_mono = self.monotonic()
        self.counts["out_of_credit"] += 1
        log.warning("cloud dispatch stopped: %s", self._credit_reason)
        if recheck:  # the key's limit may be what ran out: the header says which soon
            self.recheck()

    def recheck(self, *, refused: bool = False) -> bool:
        """Check the key soon: a call of this process was refused. Coalesced and spaced (``RECHECK_GAP_S``).
        ``refused`` (a 401): with the provider cap, it syncs at once, and True says a new key is on its way."""
        self._recheck.set()
        if refused and self.on_refused is not None:
            self.on_refused()
            return True
        return False

    async def poll_key(self) -> None:
        """GET {api_base}/key once; reads data.limit_remaining (null: the key has no limit)."""
        key = self.key()
        if not key:  # none yet: the provider cap is still making the workers' key
            return
        if any(c in key for c in "\r\n\0"):  # a header cannot carry it (aiohttp refuses): never sent
            self.key_status = "unusable: the key holds a line break or NUL (check OPENROUTER_API_KEY)"
            return
        url = self.openrouter.api_base.rstrip("/") + "/key"
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        polled_at = self.monotonic()
        try:
            status, body = await get_json(self._http, url, headers={"Authorization": f"Bearer {key}"}, secret=key)
        except Refused as exc:  # the state stays as the last answer believed left it
            self.counts["key_refused"] += 1
            self.key_status = f"answer refused: {exc.reason}"
            log.warning("the key endpoint's answer was refused: %s", exc.reason)
            return
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.key_status = f"unreachable ({type(exc).__name__})"
            return
        except ValueError as exc:  # a header aiohttp refuses to send: its words may hold the key, never shown
            self.key_status = f"not sent ({type(exc).__name__}): check OPENROUTER_API_KEY"
            return
        self._last_poll = polled_at
        if status != 200:
            self.key_status = _KEY_STATUS.get(status, f"HTTP {status}")
            if status in KEY_REJECTED:  # every call would be refused: none is sent until a poll answers 200
                self._key_blocked = f"key {self.key_status}: check OPENROUTER_API_KEY (swarm-tui doctor)"
                self._key_rejected = True
            if status == 402:  # asks no recheck: this is the check (a recheck here polled in a tight loop)
                self.mark_out_of_credit("out of credit: the key endpoint answered 402", recheck=False)
            return
        data = body.get("data", body) if isinstance(body, dict) else None
        if not isinstance(data, dict):
            self.key_status = "unreadable answer"
            return
        lr = data.get("limit_remaining")
        if lr is not None and finite(lr) is None:
            self.key_status = "unreadable answer (limit_remaining is not a number)"  # changes nothing
            return
        self.key_status = "ok"
        self._key_rejected = False
        if lr is not None:
            self.credits_left = float(lr)
            # limit_remaining is the key's own limit, not the account's credit ("key limit left")
            self._key_blocked = "key limit reached: the key's limit_remaining is 0" if lr <= 0 else ""
            if lr > 0 and self._credit_reason and polled_at >= self._credit_mono + self.hold_s:
                # try again: a 402 for an empty account stops it again (a call that goes through clears it too)
                log.info("the key's limit allows (%s left): cloud dispatch resumes", usd(float(lr)))
                self._credit_reason = ""
        else:  # null: the key has no limit of its own
            self.credits_left = None
            self._key_blocked = ""

    async def run(self) -> None:
        """Poll the key at once (the header says its state before any work), then every ``openrouter.key_poll_s``
        or soon after ``recheck`` asks (at most one check at a time, ``RECHECK_GAP_S`` apart), until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            if self._checked_at is not None:  # spaced: however many refusals asked, one check
                await asyncio.sleep(max(0.0, self._checked_at + RECHECK_GAP_S - loop.time()))
            self._recheck.clear()  # asks that come during the check are answered by the next one
            self._checked_at = loop.time()
            try:
                await self.poll_key()
            except Exception as exc:  # noqa: BLE001 - the poller lives on; the key is never in the line
                self.key_status = f"check failed ({type(exc).__name__})"
                log.warning("the key check failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await within(self._recheck.wait(), self.openrouter.key_poll_s)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def info(self) -> CreditInfo:
        blocked = self.blocked()
        return {
            "credits_left_usd": self.credits_left,
            "key_limit_left_usd": self.credits_left,
            "key_status": self.key_status,
            "out_of_credit": bool(blocked) and not self._key_rejected,  # a rejected key is not a lack of credit
            "key_rejected": self._key_rejected,
            "blocked_reason": str(blocked) if blocked else "",
            "provider_cap": self.cap_line() if self.cap_line is not None else "",
        }

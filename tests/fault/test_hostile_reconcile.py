"""Money answers in a hostile world: a reconciler owner that is paused, skewed or dead, and OpenRouter answers
(``GET /key``, ``GET /generation``) that redirect or hold numbers that are not finite.

Each case ends with the promise it holds: "recorded = billed <= ceiling" (the SpendEntry sum on the bus and the
budget ledger equal what the fake provider billed, at most the ceiling) or "nothing applied". The provider is
tests/support/fake_openrouter.py (it bills like OpenRouter); redirects and lies are served by a tiny aiohttp app
in front of it (``Liar``). Run with -s for the figures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import SpendEntry, job_id, new_id
from swarm_tui.engine.guards.owner_watch import ORPHAN_S
from swarm_tui.engine.guards.reconcile import Reconciler
from tests.support.fake_openrouter import Answer, FakeOpenRouter
from tests.support.ledger_kit import (
    BARE,
    KEY,
    Clock,
    Swarm,
    a_job,
    approve_at,
    call_fake,
    config,
    guard,
    quiet,
    records,
)
from tests.support.polling import until, until_async
from tests.support.swarm_kit import events

pytestmark = pytest.mark.fault


# ------------------------------------------------------------------------------------------ 3. the reconciler
MAX_TOKENS = 100
TOKENS = 80
P_PROMPT, P_COMPLETION = 1e-6, 4e-4


def full_cost() -> float:
    return round(TOKENS * P_COMPLETION + 12 * P_PROMPT, 9)


async def test_a_paused_or_skewed_owner_keeps_its_attempt_and_a_dead_one_is_adopted(
    tmp_path: Path, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner of an attempt streams a call while its clock is 5 minutes behind and its heartbeat stops for 12
    s: another reconciler must not take the attempt over (it would charge the worst case while the owner records
    the real cost). An owner silent longer than ORPHAN_S is adopted, and then leaves the recording to its
    adopter; a dead owner's attempt is adopted and reconciled with GET /generation."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
        # the first content comes after 1.5 s of keepalives: no generation id known until then
        fo.default = Answer(tokens=TOKENS, tps=25, cost=full_cost(), first_token_delay=1.5, keepalive_s=0.2)
        cfg = config(tmp_path, nats_server, fo.base, 0.25)
        sw = await Swarm(cfg).start()
        owner = sw.reconciler
        owner.clock = lambda: time.time() - 300  # the owner's host is 5 minutes behind
        await sw.run()
        bus2 = await Bus(cfg).connect()
        g2 = await guard(cfg, bus2)
        adopter = Reconciler(cfg.openrouter, bus2, spend=g2, api_base=lambda: fo.base, api_key=lambda: KEY)
        mono = [0.0]
        adopter.monotonic = lambda: mono[0]  # the adopter's own monotonic clock
        beat = owner._beat

        async def paused() -> None:
            return None

        try:
            # (a) skewed by minutes and paused for 12 s while its call streams: not taken over
            d = await approve_at(sw.bus, time.time, 1, max_tokens=MAX_TOKENS)
            await fo.wait_open(1, 15)
            await until_async(lambda: records(sw.bus), 10, "the attempt's record")
            await adopter.scan()
            monkeypatch.setattr(owner, "_beat", paused)
            for _ in range(2):
                mono[0] += 6.0
                await adopter.scan()
            monkeypatch.setattr(owner, "_beat", beat)
            await until(lambda: job_id(d.id, 0) in sw.engine.state.results, 20, "the result")
            await until_async(lambda: quiet(sw.bus, fo), 20, "the attempt recorded")
            taken = adopter.counts["adopted"]
            recorded_a = sum(e.cost_usd for e in await events(cfg) if isinstance(e, SpendEntry))
            billed_a = fo.billed
            print(
                f"\n[reconciler, owner paused 12 s, clock 5 min behind] billed ${billed_a:.6f}; recorded "
                f"${recorded_a:.6f}; adopted {taken}"
            )
            assert recorded_a == pytest.approx(billed_a, abs=1e-9), "recorded = billed"
            assert taken == 0

            # (b) silent longer than ORPHAN_S on the adopter's clock: adopted; the owner then records nothing
            d2 = await approve_at(sw.bus, time.time, 1, max_tokens=MAX_TOKENS)

            async def with_gen() -> str:
                return next((k for k, r in (await records(sw.bus)).items() if r.get("gen")), "")

            await until_async(with_gen, 15, "the attempt's generation id")
            monkeypatch.setattr(owner, "_beat", paused)
            for _ in range(3):  # a beat already on its way when the pause began moves the heartbeat once more
                await adopter.scan()
                mono[0] += ORPHAN_S + 1
                await adopter.scan()
                if adopter.counts["adopted"]:
                    break
            assert adopter.counts["adopted"] == 1
            monkeypatch.setattr(owner, "_beat", beat)
            await until(lambda: job_id(d2.id, 0) in sw.engine.state.results, 20, "the result")

            async def adopter_done() -> bool:
                await adopter.scan()
                return await quiet(sw.bus, fo)

            await until_async(adopter_done, 30, "the adopter's record of it")
            assert owner.counts["adopted_away"] == 1

            # (c) a dead owner: its record and its heartbeat stay, nothing moves them any more
            bus3 = await Bus(cfg).connect()
            g3 = await guard(cfg, bus3)
            dead = Reconciler(cfg.openrouter, bus3, spend=g3, api_base=lambda: fo.base, api_key=lambda: KEY)
            j = a_job(1, decision=new_id("d"), max_tokens=MAX_TOKENS)
            assert (await g3.reserve(j)).ok
            aid, _keys, _worst = await dead.begin(j, worst=g3.worst_case(j), max_tokens=MAX_TOKENS)
            await dead.note_generation(aid, str((await call_fake(fo, j))["id"]))
            mono[0] += 1
            await adopter.scan()
            assert adopter.counts["adopted"] == 1  # seen once: not yet
            mono[0] += ORPHAN_S + 1
            await until_async(adopter_done, 30, "the dead owner's attempt reconciled")
            await g3.stop()
            await bus3.close()
            kv = await sw.bus.kv(S.KV_BUDGET)
            daily = json.loads((await kv.get(sw.guard.day_key())).value or b"")
        finally:
            await sw.stop()
            await g2.stop()
            await adopter.stop()
            await bus2.close()
        entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
        ids = Counter(e.id for e in entries)
        recorded = round(sum(e.cost_usd for e in entries), 9)
        print(
            f"[reconciler, all] billed ${fo.billed:.6f} ({len(fo.generations)} generations); recorded "
            f"${recorded:.6f} ({len(entries)} SpendEntry), ledger ${daily['spent']:.6f}; adopted "
            f"{adopter.counts['adopted']}, left to the adopter {owner.counts['adopted_away']}"
        )
        # recorded = billed <= ceiling; one SpendEntry and one ledger settle per attempt
        assert recorded == pytest.approx(fo.billed, abs=1e-9) and daily["spent"] == pytest.approx(fo.billed, abs=1e-9)
        assert fo.billed <= 0.25 and daily["reserved"] == {}
        assert len(entries) == len(fo.generations) == 3 and set(ids.values()) == {1}
        assert all(daily["settled"].count(i) == 1 for i in ids)
        assert adopter.counts["adopted"] == 2 and not any(e.estimated for e in entries)


# ------------------------------------------------------------------------------------------ 4. redirects, non-finite
class Liar:
    """The API base the app is pointed at, in front of the fake: ``mode`` decides how it answers /key and
    /generation ("honest" forwards to the fake). What a redirect leads to (``/lie/...``) counts its visitors."""

    def __init__(self, fo: FakeOpenRouter) -> None:
        self.fo = fo
        self.mode = "honest"
        self.lie_hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def __aenter__(self) -> Liar:
        app = web.Application()
        app.router.add_get("/api/v1/key", self._key)
        app.router.add_get("/api/v1/generation", self._generation)
        app.router.add_get("/lie/key", self._lie_key)
        app.router.add_get("/lie/generation", self._lie_generation)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request, path: str) -> web.Response:
        auth = {"Authorization": request.headers.get("Authorization", "")}
        async with aiohttp.ClientSession() as s, s.get(self.fo.base + path, params=request.query, headers=auth) as r:
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    @staticmethod
    def _raw(text: str) -> web.Response:
        return web.Response(text=text, content_type="application/json")

    async def _key(self, request: web.Request) -> web.Response:
        if self.mode == "redirect":  # it echoes the key in the Location, which is shown: it must not be
            raise web.HTTPFound(f"/lie/key?from={quote(request.headers.get('Authorization', ''))}")
        lie = {"nan": "NaN", "inf": "1e400", "text": '"plenty"', "long": "1" + "0" * 400}.get(self.mode)
        if lie is not None:
            return self._raw(f'{{"data": {{"limit_remaining": {lie}, "usage": 0, "limit": 10}}}}')
        return await self._forward(request, "/key")

    async def _generation(self, request: web.Request) -> web.Response:
        gid = json.dumps(request.query.get("id", ""))
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect(f"/lie/generation?id={request.query.get('id', '')}")
        lies = {
            "inf": '"total_cost": 1e400, "tokens_prompt": 12, "tokens_completion": 80',
            "nan_tokens": '"total_cost": 0.0, "tokens_prompt": NaN, "tokens_completion": 80',
            "huge_tokens": '"total_cost": 0.0, "tokens_prompt": 12, "tokens_completion": 1e400',
        }
        if self.mode in lies:
            return self._raw(f'{{"data": {{"id": {gid}, {lies[self.mode]}, "cancelled": false}}}}')
        return await self._forward(request, "/generation")

    async def _lie_key(self, request: web.Request) -> web.Response:
        self.lie_hits += 1
        return web.json_response({"data": {"limit_remaining": 1000.0, "usage": 0.0, "limit": 1000.0}})

    async def _lie_generation(self, request: web.Request) -> web.Response:
        self.lie_hits += 1
        gid = request.query.get("id", "")
        return web.json_response({"data": {"id": gid, "total_cost": 0.0, "tokens_prompt": 1, "tokens_completion": 1}})


async def test_a_key_answer_that_redirects_or_is_not_finite_changes_nothing(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """The key is at its limit. Answers that would lift it (a redirect to a host saying $1000 left, NaN, 1e400,
    a string, a 400-digit integer) are refused: cloud dispatch stays stopped."""
    async with FakeOpenRouter() as fo, Liar(fo) as liar:
        fo.key = {"limit_remaining": 0, "usage": 10.0, "limit": 10.0}
        cfg = config(tmp_path, nats_server, liar.base, 1.0)
        bus = await Bus(cfg).connect()
        g = await guard(cfg, bus)
        await g.poll_key()
        assert str(g.cloud_blocked()).startswith("key limit reached") and g.credits_left == 0
        seen: dict[str, tuple[str, float | None, str]] = {}
        for mode in ("redirect", "nan", "inf", "text", "long"):
            liar.mode = mode
            try:
                await g.poll_key()
            except Exception as exc:  # noqa: BLE001 - a crash of the poll is a finding too
                seen[mode] = (f"the poll raised {type(exc).__name__}", g.credits_left, "")
                continue
            seen[mode] = (g.cloud_blocked() or "", g.credits_left, g.key_status)
        r = await g.reserve(a_job(1))
        await g.stop()
        await bus.close()
    for mode, (blocked, left, status) in seen.items():
        print(f"\n[/key answers {mode}] blocked: {blocked!r}; credits left {left}; key status {status!r}")
    # nothing applied
    assert liar.lie_hits == 0, "the redirect was followed"
    assert all(b.startswith("key limit reached") and left == 0 for b, left, _ in seen.values())
    assert "redirect to /lie/key" in seen["redirect"][2] and "not followed" in seen["redirect"][2]
    assert KEY not in json.dumps(seen)
    assert not r.ok and r.reason.startswith("key limit reached") and not fo.requests


async def test_a_generation_answer_that_redirects_or_is_not_finite_is_never_recorded(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """An attempt waits for its cost from GET /generation. A redirect to a host saying it cost $0, a cost of
    1e400, token counts of NaN or 1e400 next to a cost of $0: none is recorded; the worst case stays held until
    the real answer, which is recorded."""
    async with FakeOpenRouter() as fo, Liar(fo) as liar:
        fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
        fo.default = Answer(tokens=TOKENS, cost=full_cost())
        cfg = config(tmp_path, nats_server, fo.base, 0.25)
        bus = await Bus(cfg).connect()
        g = await guard(cfg, bus)
        clock = Clock(time.time() - 200)  # jumps 25 s a look (the asks back off), and stays in the past
        rec = Reconciler(cfg.openrouter, bus, spend=g, api_base=lambda: liar.base, api_key=lambda: KEY, clock=clock)
        j = a_job(1, max_tokens=MAX_TOKENS)
        assert (await g.reserve(j)).ok
        aid, keys, worst = await rec.begin(j, worst=g.worst_case(j), max_tokens=MAX_TOKENS)
        gen = str((await call_fake(fo, j))["id"])  # billed by the fake; the stream's end was lost
        assert await rec.end(aid, keys, job=j, cost=None, gen=gen, billed=True, worst=worst) is None
        held: dict[str, float] = {}
        for mode in ("redirect", "inf", "nan_tokens", "huge_tokens"):
            liar.mode = mode
            clock.jump(25)
            try:
                await rec.scan()
            except Exception as exc:  # noqa: BLE001 - a crash of the scan is a finding too
                held[mode + f" (scan raised {type(exc).__name__})"] = -1.0
                continue
            await g.refresh()
            held[mode] = g.reserved_usd() if await records(bus) else 0.0
        liar.mode = "honest"
        clock.jump(25)
        await rec.scan()
        await g.refresh()
        led = g.ledger()
        await rec.stop()
        await g.stop()
        await bus.close()
    entries = [e for e in await events(cfg) if isinstance(e, SpendEntry)]
    recorded = round(sum(e.cost_usd for e in entries), 9)
    print(
        f"\n[/generation] held while lying: {held}; billed ${fo.billed:.6f}, recorded ${recorded:.6f}, "
        f"ledger ${led['spent']:.6f}; liar asked {liar.lie_hits} times"
    )
    assert liar.lie_hits == 0, "the redirect was followed"
    assert held == dict.fromkeys(("redirect", "inf", "nan_tokens", "huge_tokens"), pytest.approx(worst))
    # recorded = billed <= ceiling
    assert len(entries) == 1 and recorded == pytest.approx(fo.billed, abs=1e-9) and fo.billed <= 0.25
    assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}


async def test_a_record_holding_a_huge_integer_does_not_stop_the_scan(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """A record written by a worker's login (it may write the bucket) whose cost and token counts are 401-digit
    integers, its owner gone: before, ``math.isfinite`` raised OverflowError and every scan stopped at it, so
    the records after it (here one billed $0.032012 and waiting for GET /generation) were never reconciled. Now
    the huge numbers are unknown (0) and the scan goes on: recorded = billed."""
    async with FakeOpenRouter() as fo:
        fo.prices[BARE] = (f"{P_PROMPT:.9f}", f"{P_COMPLETION:.9f}")
        fo.default = Answer(tokens=TOKENS, cost=full_cost())
        cfg = config(tmp_path, nats_server, fo.base, 0.25)
        bus = await Bus(cfg).connect()
        g = await guard(cfg, bus)
        rec = Reconciler(cfg.openrouter, bus, spend=g, api_base=lambda: fo.base, api_key=lambda: KEY)
        kv = await bus.kv(S.KV_RECONCILE)
        huge = "1" + "0" * 400
        forged = (
            '{"job": {"id": "j-forged", "model": "m"}, "keys": [], "worst": 0, "owner": "gone", "state": "charging", '
            f'"gen": "", "cost": {huge}, "estimated": false, "tokens": [{huge}, {huge}]}}'
        )
        await kv.put("a.0-forged", forged.encode())  # sorts before the real one
        j = a_job(1, max_tokens=MAX_TOKENS)
        assert (await g.reserve(j)).ok
        aid, keys, worst = await rec.begin(j, worst=g.worst_case(j), max_tokens=MAX_TOKENS)
        gen = str((await call_fake(fo, j))["id"])
        assert await rec.end(aid, keys, job=j, cost=None, gen=gen, billed=True, worst=worst) is None
        try:
            for _ in range(3):
                await rec.scan()
            await g.refresh()
            led = g.ledger()
            left = await records(bus)
        finally:
            await rec.stop()
            await g.stop()
            await bus.close()
    spent = {e.id: e.cost_usd for e in await events(cfg) if isinstance(e, SpendEntry)}
    print(f"\n[a record of 401-digit numbers] billed ${fo.billed:.6f}; recorded {spent}; left {sorted(left)}")
    assert left == {} and spent[aid] == pytest.approx(fo.billed, abs=1e-9) and spent["0-forged"] == 0
    assert led["spent"] == pytest.approx(fo.billed, abs=1e-9) and led["reserved"] == {}

"""Adversary round 3 (issue 25): the fixes of rounds 1 and 2 attacked. Each test fails until its bug is fixed."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from swarm_tui.engine.bus.wire import WorkerEvent
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.guards.credit import CREDIT_HOLD_S, CreditWatch
from tests.support.env import make_config

pytestmark = pytest.mark.fault


# ------------------------------------------------------------------------------------------ chunk counter
def _wev(wid: str, state: Any) -> Any:
    return WorkerEvent(
        worker_id=wid, job_id=f"{wid}-j", decision_id="d1", task_id="t1", model="m", state=state, at=time.time()
    )


class _SlowNC:
    """A NATS connection whose subscribe and unsubscribe take a moment (a round trip), as a real one's may."""

    def __init__(self) -> None:
        self.subs: list[Any] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def subscribe(self, subject: str, cb: Any = None) -> Any:
        await self.gate.wait()
        sub = SimpleNamespace(subject=subject)

        async def unsubscribe() -> None:
            await self.gate.wait()
            self.subs.remove(sub)

        sub.unsubscribe = unsubscribe
        self.subs.append(sub)
        return sub


def _engine(tmp_path: Path) -> tuple[Engine, _SlowNC]:
    nc = _SlowNC()
    bus: Any = SimpleNamespace(
        nc=nc,
        url="nats://127.0.0.1:4222",
        close=lambda: None,
        kind="nats",
        state="connected",
        dead=SimpleNamespace(counts={}),
        warnings=[],
    )
    engine = Engine(make_config(tmp_path), bus)
    engine._counting = True  # as _count_chunks leaves it once started
    return engine, nc


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_worker_that_starts_while_the_chunk_subscription_is_dropped_has_its_chunks_counted(
    tmp_path: Path,
) -> None:
    """A standalone worker starts while the engine is dropping its chunk subscription (the last foreign worker
    just ended): the engine ends with a foreign worker streaming and no subscription, so `status` says 0 tokens
    for it (the round-1 finding 7 back) until some other worker event happens to arrive.

    Cause: engine.py _set_chunk_sub's closing "follow it" calls _sync_chunk_sub from inside the very task
    _sync_chunk_sub guards on (`self._chunk_syncing.done()` is False for the running task), so the follow-up is
    never started; _note_worker's calls meanwhile are dropped by the same guard."""
    engine, nc = _engine(tmp_path)
    engine._dispatch("x", _wev("w-a", "running"), 1)
    await _settle()
    assert engine._chunk_sub is not None and len(nc.subs) == 1
    nc.gate.clear()  # the unsubscribe takes a round trip
    engine._dispatch("x", _wev("w-a", "done"), 2)
    await _settle()
    engine._dispatch("x", _wev("w-b", "running"), 3)  # another process's worker starts meanwhile
    nc.gate.set()
    await _settle()
    assert engine._foreign == {"w-b"}
    assert engine._chunk_sub is not None and len(nc.subs) == 1, "a foreign worker streams and no chunk is counted"


async def test_a_worker_that_ends_while_the_chunk_subscription_is_made_leaves_no_subscription(
    tmp_path: Path,
) -> None:
    """A foreign worker that ends while the subscription is being made leaves the engine subscribed to every
    chunk (swarm.chunk.*) with no foreign worker: each chunk of this host's pools costs a second delivery and a
    parse (thousands a second, what commit a428932 set out to end) until another worker event comes.

    Cause: engine.py _set_chunk_sub / _sync_chunk_sub, as in the test above (the follow-up after a change during
    the await is never started)."""
    engine, nc = _engine(tmp_path)
    nc.gate.clear()  # the subscribe takes a round trip
    engine._dispatch("x", _wev("w-a", "running"), 1)
    await _settle()
    engine._dispatch("x", _wev("w-a", "done"), 2)
    nc.gate.set()
    await _settle()
    assert not engine._foreign
    assert engine._chunk_sub is None and not nc.subs, "subscribed to every chunk with no foreign worker"


# ------------------------------------------------------------------------------------------ credit clocks
async def test_a_wall_clock_stepped_back_does_not_stop_cloud_dispatch_for_the_step() -> None:
    """A 402 holds for the cool-down; if the wall clock is stepped back meanwhile (NTP, a VM resumed, a person
    fixing the time), `clock() - _credit_at` is negative and cloud dispatch stays stopped for the whole step plus
    the cool-down (an hour's step: an hour with no cloud work, the header saying out of credit). A call that went
    through cannot end it either (credit_ok needs `since >= _credit_at`), and a key check cannot
    (`polled_at >= _credit_at + CREDIT_HOLD_S`).

    Cause: engine/guards/credit.py measures the hold and the cool-down with the wall clock it is handed
    (SpendGuard's time.time), while its key-check spacing already uses the loop's monotonic clock."""
    now, mono = [1_000_000.0], [50.0]
    cw = CreditWatch(
        SimpleNamespace(api_key="sk-test", api_base="http://127.0.0.1:9", key_poll_s=60.0),  # type: ignore[arg-type]
        clock=lambda: now[0],
        monotonic=lambda: mono[0],
        cooldown_s=300.0,
        counts=collections.Counter(),
    )
    cw.mark_out_of_credit("HTTP 402", recheck=False)
    assert cw.blocked() is not None
    now[0] -= 3600.0  # the wall clock is stepped back an hour
    now[0] += 300.0 + CREDIT_HOLD_S + 1  # then the whole cool-down passes
    mono[0] += 300.0 + CREDIT_HOLD_S + 1  # (as the monotonic clock sees it)
    assert cw.blocked() is None, "still out of credit: the hold lasts the clock's step too"


async def test_forged_chunks_for_a_foreign_worker_do_not_silence_the_engines_info(tmp_path: Path) -> None:
    """Anyone on the bus may publish on swarm.chunk.<worker id> of a foreign worker (its id is in the log).
    _on_chunk adds any positive int: a few chunks of a 4300-digit count (json.loads takes it) make the count
    longer than Python will turn into text, so json.dumps(engine.info()) raises ValueError, which _on_info
    suppresses: swarm.engine.info is never answered again, and the header, the panels and `status` lose the
    engine (its key state, spend, pool) while the worker lives. One such chunk alone already makes `status`
    print a 4300-digit token count for the worker.

    Cause: engine.py _on_chunk has no bound on a chunk's tokens nor on the sum (wire.Chunk.tokens neither)."""
    engine, nc = _engine(tmp_path)
    engine._dispatch("x", _wev("w-a", "running"), 1)
    await _settle()
    huge = "9" * 4300
    for _ in range(3):
        msg = SimpleNamespace(subject="swarm.chunk.w-a", data=f'{{"worker_id":"w-a","tokens":{huge}}}'.encode())
        await engine._on_chunk(msg)  # type: ignore[arg-type]
    import json

    text = json.dumps(engine.info(), default=str)  # what _on_info sends
    # a count out of bounds is dropped (engine.MAX_CHUNK_TOKENS), and a sum is held under engine.MAX_TOKENS
    assert engine.streamed.get("w-a", 0) < 10**12, "a forged chunk sets the worker's token count at will"
    for _ in range(3000):
        msg = SimpleNamespace(subject="swarm.chunk.w-a", data=b'{"worker_id":"w-a","tokens":1000000}')
        await engine._on_chunk(msg)  # type: ignore[arg-type]
    assert engine.streamed["w-a"] <= 10**9
    assert text


async def test_a_late_running_event_after_the_end_does_not_keep_the_chunk_subscription_forever(
    tmp_path: Path,
) -> None:
    """A "running" that arrives after a worker's end (the redelivery race the projection already ignores:
    state._on_worker "does not resurrect a worker") makes _note_worker count the ended worker as foreign and
    streaming for good: nothing ends it again, so the engine stays subscribed to every chunk of the host
    (a second delivery and parse each, thousands a second) and keeps it in info()["engine"]["streamed"].
    A forged late "running" for every ended worker in the log does the same on purpose, without bound.

    Cause: engine.py _note_worker reads ev.state, not the worker's state as the projection kept it."""
    engine, nc = _engine(tmp_path)
    engine._dispatch("x", _wev("w-a", "running"), 1)
    await _settle()
    engine._dispatch("x", _wev("w-a", "done"), 2)
    await _settle()
    engine._dispatch("x", _wev("w-a", "running"), 3)  # late: the projection keeps it done
    await _settle()
    assert engine.state.workers["w-a"].state == "done"
    assert not engine._foreign and engine._chunk_sub is None, "an ended worker is counted as streaming"


# ------------------------------------------------------------------------------------------ task limit on edits
async def test_an_edit_the_screen_prices_past_the_tasks_limit_is_not_let_through(tmp_path: Path) -> None:
    """A decision over two tasks whose item costs disagree with its totals (another engine's, an older
    version's, or a forged one: round 1's finding 6, fixed for the screen only). Task t-a has spent $0.30 of its
    $0.50 limit. The screen and `status` price an edit to 4 workers at worst $0.50 (decision_estimate floors it
    at the proposal); a task's share of it is not known, and task_worst's own rule for that case is to charge each
    task the whole worst case ($0.30 + $0.50, past the limit). The edit is let through: task_worst prices t-a's
    items from item_costs alone ($0.00), the figures the floor was added to distrust.

    Cause: engine/projection/figures.py task_worst uses item_costs whenever their count matches, without
    decision_estimate's check against the proposal (control_requests._within_task_limit trusts it)."""
    from swarm_tui.engine.bus.wire import Decision, PlanItem, Task
    from swarm_tui.engine.control_requests import ControlError, Controls
    from swarm_tui.engine.projection.figures import decision_estimate
    from swarm_tui.engine.projection.state import SwarmState

    now = time.time()
    state = SwarmState(session_start=now, clock=time.time)
    for i, tid in enumerate(("t-a", "t-b")):
        state.apply(Task(id=tid, text="x", created_at=now), i + 1)
    plan = [PlanItem(task_id=t, role="research", model="m/m", max_tokens=100) for t in ("t-a", "t-b")]
    d = Decision(
        id="d-1",
        task_ids=["t-a", "t-b"],
        plan=plan,
        est_cost_min=0.1,
        est_cost_max=0.5,  # the proposal: $0.25 a task at worst, within the limit
        item_costs=[(0.0, 0.0), (0.0, 0.0)],
        source="rules",
        created_at=now,
        expires_at=now + 900,
    )
    state.apply(d, 3)
    state.tasks["t-a"].spend_usd = 0.30  # what its first round cost
    shown = decision_estimate(state.decisions[d.id].decision, 4)[1]
    assert shown == 0.5  # the screen's worst case for 4 workers: the proposal's, at least

    class _Rec:
        async def __call__(self, ev: Any, msg_id: str = "") -> None:
            state.apply(ev, 99)

    controls = Controls(None, state, max_scale=10, record=_Rec(), task_max_usd=0.5)  # type: ignore[arg-type]
    with pytest.raises(ControlError) as refused:
        await controls.handle("edit", {"id": d.id, "workers": 4})  # $0.30 spent + up to $0.50 > $0.50
    assert refused.value.kind == "over_budget"


# ------------------------------------------------------------------------------------------ [keys]
@pytest.mark.parametrize("key", ["ctrl+alt+up", "shift+ctrl+up", "shift+alt+x", "ctrl+alt+delete"])
def test_a_key_whose_modifiers_textual_orders_otherwise_is_refused_at_load(key: str) -> None:
    """Textual names a key's modifiers sorted (alt, ctrl, hyper, meta, shift, super: _xterm_parser sorts them;
    its Keys say ctrl+shift+up) and looks a binding up by the exact string (BindingsMap.key_to_bindings). A key
    written `ctrl+alt+up`, the way most people write it, loads and can never fire: the action is silently
    dead, what round 1's finding 10 was fixed to prevent. (The pairs ctrl+alt+x / alt+ctrl+x also pass the
    "bound twice" check as two keys.)

    Cause: engine/config/keys.py textual_can_match checks the modifiers' names and repeats, not their order
    (MODIFIERS' comment says "in the order ... it reports them")."""
    from textual._xterm_parser import XTermParser

    from swarm_tui.engine.config.keys import parse_keys
    from swarm_tui.engine.errors import ConfigError

    reported = {getattr(e, "key", "") for e in XTermParser().feed("\x1b[1;7A\x1b[1;6A\x1b[120;4u\x1b[3;7~")}
    assert reported == {"alt+ctrl+up", "ctrl+shift+up", "alt+shift+x", "alt+ctrl+delete"}  # what Textual says
    assert key not in reported
    with pytest.raises(ConfigError):
        parse_keys({"approve": key}, "test.toml")


# ------------------------------------------------------------------------------------------ header
@pytest.mark.parametrize(
    ("size", "spend", "bus_state", "hint"),
    [
        (
            (120, 36),
            {"key_status": "ok", "blocked_reason": "out of credit: HTTP 402", "out_of_credit": True},
            "disconnected",
            "add credit",
        ),
        (
            (120, 36),
            {
                "key_status": "ok",
                "blocked_reason": "key limit reached: the key's limit_remaining is 0",
                "out_of_credit": True,
                "credits_left_usd": 0.0,
            },
            "disconnected",
            "raise it",
        ),
    ],
    ids=["120x36-out-of-credit-bus-lost", "120x36-key-limit-bus-lost"],
)
async def test_the_header_keeps_what_to_do_about_credit_when_a_line_with_it_fits(
    size: tuple[int, int], spend: dict[str, Any], bus_state: str, hint: str
) -> None:
    """Out of credit (or the key's limit used up) with scale 0 and the bus lost too, at the app's own 120x36:
    the header says only "no credit" / "key limit used up" and drops "add credit on openrouter.ai" / "raise it
    on openrouter.ai", while it keeps the bus's kind "(embedded)" and the conductor's "- · -". A line with the
    hint and without those two fits (built below with the header's own build): what stops all work and what
    to do about it gives way to decoration, against the rule "what stops work keeps its words longest".

    Cause: tui/widgets/header_bar.py watch_view's tries go from the blocking words in full with the bus's kind
    shown straight to {"compact": True} (every blocking word short, bus kind and conductor kept); there is no try
    with the long blocking words, no conductor and no bus kind."""
    from swarm_tui.engine.projection.state import SwarmState
    from swarm_tui.tui.widgets.header_bar import HeaderBar, HeaderView
    from tests.fault.test_hostile_states25 import _header_app

    state = SwarmState()
    state.scale = 0
    view = HeaderView(bus_state, "embedded", "in-process", cast(Any, {"spend": spend}), state, False, "manual")
    app = _header_app()
    async with app.run_test(size=size) as pilot:
        header = app.query_one("#header", HeaderBar)
        header.view = view
        await pilot.pause()
        room = header.content_size.width
        shown = header.line.plain
    whole = HeaderBar.build(view, compact=True, blocking_short=False, conductor_shown=False, bus_kind_shown=False)
    assert whole.cell_len <= room and hint in whole.plain, (whole.plain, room)  # it fits, and says it
    assert hint in shown, f"{room} cells: {shown!r}; this fits: {whole.plain!r}"


async def test_a_402_holds_its_whole_hold_with_the_shortest_key_poll(tmp_path: Path) -> None:
    """A 402 from a call holds ``hold_s``: ``CREDIT_HOLD_S`` (30 s), or the cool-down (5 x key_poll_s) when that
    is shorter, and neither a key check nor the cool-down ends it sooner. (The adversary asked for 30 s whatever
    key_poll_s is; the lead kept the configured cool-down as the longest hold instead: with key_poll_s at its
    least, 5, a 402 holds 25 s; a call sent into an empty account after that is refused, not billed, and holds
    again. A hold floor of 30 s made every 402 stall the fault matrix's pool past its bounds.)"""
    from swarm_tui.engine.guards.prices import PriceBook
    from swarm_tui.engine.guards.spend import SpendGuard, SpendSettings

    for poll in (5.0, 60.0):
        cfg = make_config(tmp_path, OPENROUTER_API_KEY="sk-test").replace(openrouter__key_poll_s=poll)
        now = [1_000_000.0]
        g = SpendGuard(
            SpendSettings.of(cfg),
            None,  # type: ignore[arg-type]
            None,
            PriceBook(cfg.openrouter, cfg.paths),
            clock=lambda now=now: now[0],  # type: ignore[misc]
            monotonic=lambda now=now: now[0],  # type: ignore[misc]
        )
        hold = min(CREDIT_HOLD_S, 5 * poll)
        g.mark_out_of_credit("HTTP 402")
        now[0] += hold - 1
        assert g.cloud_blocked() is not None, f"key_poll_s {poll:g}: a 402 held {hold - 1:g} s? no"
        now[0] += 5 * poll  # the cool-down passes
        assert g.cloud_blocked() is None


async def test_approving_a_count_edited_on_the_bus_past_the_tasks_limit_is_refused(tmp_path: Path) -> None:
    """An "edited" Approval that did not pass this engine's Controls (published on the bus by any client with
    publish rights, by an older version's engine, or by a `swarm-tui edit` run offline with another config's
    budget.task_max_usd) sets the decision's worker count: here 5 workers at $0.20 each at worst, $1.00 against a
    $0.50 limit. The person's plain `approve` (or the app's `a`) is never checked against the limit, so it
    starts all five: the task may spend twice its limit. Only a count given in the approve itself is checked.

    Cause: engine/control_requests.py do_approve calls _within_task_limit only when args carry "workers", not
    for the count the decision will run with (dv.workers, as state._on_approval applied the edit)."""
    from swarm_tui.engine.bus.wire import Approval, Decision, PlanItem, Task
    from swarm_tui.engine.control_requests import ControlError, Controls
    from swarm_tui.engine.projection.state import SwarmState

    now = time.time()
    state = SwarmState(session_start=now, clock=time.time)
    state.apply(Task(id="t-a", text="x", created_at=now), 1)
    d = Decision(
        id="d-1",
        task_ids=["t-a"],
        plan=[PlanItem(task_id="t-a", role="research", model="m/m", max_tokens=100)],
        est_cost_min=0.1,
        est_cost_max=0.2,
        item_costs=[(0.1, 0.2)],
        source="rules",
        created_at=now,
        expires_at=now + 900,
    )
    state.apply(d, 2)
    state.apply(Approval(decision_id=d.id, action="edited", workers=5, by="someone", at=now), 3)  # from the bus
    assert len(state.decisions[d.id].plan) == 5

    class _Rec:
        async def __call__(self, ev: Any, msg_id: str = "") -> None:
            state.apply(ev, 99)

    controls = Controls(None, state, max_scale=10, record=_Rec(), task_max_usd=0.5)  # type: ignore[arg-type]
    with pytest.raises(ControlError) as refused:
        await controls.handle("approve", {"id": d.id})
    assert refused.value.kind == "over_budget"

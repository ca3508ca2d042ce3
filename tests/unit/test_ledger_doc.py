"""The budget ledger's changes, without a bus: each decides from the document it is given alone, because the
compare-and-set loop calls it again on a fresh read when another writer won."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from swarm_tui.engine.guards import ledger_doc as D
from swarm_tui.engine.guards.stale_watch import StaleWatch


def clock_at(t: float) -> Callable[[], float]:
    return lambda: t


def test_reserve_fits_under_the_ceiling_and_refuses_past_it() -> None:
    doc = D.empty_doc()
    doc["spent"] = 0.5
    res, changed = D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0))(doc)
    assert res.ok and res.amount_usd == 0.3 and changed
    assert doc["reserved"] == {"j1": {"usd": 0.3, "at": 10.0, "by": "", "n": 0}}
    res, changed = D.reserve_change("j2", 0.3, 1.0, "daily ceiling", clock_at(11.0))(doc)
    assert not res.ok and not changed and "j2" not in doc["reserved"]
    assert res.reason == "over budget: needs $0.3000 (worst case), $0.2000 left of the $1.0000 daily ceiling"
    res, _ = D.reserve_change("j3", 0.2, 1.0, "daily ceiling", clock_at(12.0))(doc)
    assert res.ok  # exactly up to the ceiling fits


def test_a_job_s_hold_is_its_holder_s_own_and_a_settled_job_is_refused() -> None:
    doc = D.empty_doc()
    D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0), holder="p1")(doc)
    res, changed = D.reserve_change("j1", 0.9, 0.0, "daily ceiling", clock_at(20.0), holder="p1")(doc)
    assert res.ok and res.amount_usd == 0.3 and changed  # its holder refreshes it: its amount, under any ceiling
    assert doc["reserved"]["j1"] == {"usd": 0.3, "at": 20.0, "by": "p1", "n": 1}
    # a redelivery of j1 running in another process: never the first run's hold, one of its own under the ceiling
    res, changed = D.reserve_change("j1", 0.3, 0.5, "daily ceiling", clock_at(21.0), holder="p2")(doc)
    assert not res.ok and not changed and res.reason.startswith("over budget: needs $0.3000")
    assert list(doc["reserved"]) == ["j1"] and doc["reserved"]["j1"]["by"] == "p1"
    res, changed = D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(22.0), holder="p2")(doc)
    assert res.ok and changed and doc["reserved"]["j1@p2"] == {"usd": 0.3, "at": 22.0, "by": "p2", "n": 0}
    assert [D.hold_of(doc, "j1", h) for h in ("p1", "p2", "p3")] == ["j1", "j1@p2", None]
    # each moves and releases only its own; a process holding nothing moves nothing (no call may start)
    assert D.begin_attempt_change("j1", "j1-a1", clock_at(23.0), holder="p3")(doc) == (None, False)
    assert D.release_change("j1", holder="p3")(doc) == (True, False)
    assert D.begin_attempt_change("j1", "j1-a2", clock_at(24.0), holder="p2")(doc) == (0.3, True)
    assert set(doc["reserved"]) == {"j1", "j1-a2"} and doc["reserved"]["j1"]["by"] == "p1"
    res, _ = D.reserve_change("j1", 0.3, 0.8, "daily ceiling", clock_at(25.0), holder="p2")(doc)  # its retry
    assert not res.ok  # 0.3 + 0.3 held + 0.3 > 0.8: the retry waits, the first run's hold stays
    assert D.settle_change("j1", 0.1, holder="p1")(doc) == (True, True)
    assert set(doc["reserved"]) == {"j1-a2"} and doc["settled"] == ["j1"]
    res, changed = D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(30.0), holder="p1")(doc)
    assert not res.ok and not changed and res.reason.startswith("already settled: job j1")


def test_settle_counts_once_and_reports_the_reservation_it_replaced() -> None:
    doc = D.empty_doc()
    D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0))(doc)
    seen: list[float] = []
    change = D.settle_change("j1", 0.1, seen)
    assert change(doc) == (True, True)
    assert doc["spent"] == pytest.approx(0.1) and doc["reserved"] == {} and doc["settled"] == ["j1"]
    assert seen == [0.3]
    assert change(doc) == (False, False)  # a second settle: nothing counted, nothing written
    assert doc["spent"] == pytest.approx(0.1) and seen == [0.3]
    doc["reserved"]["j1"] = {"usd": 0.3, "at": 40.0}  # reserved again by a process that did not know
    assert change(doc) == (False, True)  # the stray reservation goes, the spend is not counted twice
    assert doc["reserved"] == {} and doc["spent"] == pytest.approx(0.1)


def test_settled_ids_are_bounded() -> None:
    doc = D.empty_doc()
    for i in range(D.SETTLED_KEEP + 5):
        D.settle_change(f"j{i}", 0.0)(doc)
    assert len(doc["settled"]) == D.SETTLED_KEEP and doc["settled"][-1] == f"j{D.SETTLED_KEEP + 4}"


def test_an_attempt_takes_over_the_reservation_and_is_settled_by_its_own_id() -> None:
    doc = D.empty_doc()
    D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0))(doc)
    assert D.begin_attempt_change("j1", "j1-a1", clock_at(15.0))(doc) == (0.3, True)
    assert doc["reserved"] == {"j1-a1": {"usd": 0.3, "at": 15.0, "by": "", "n": 0, "rc": 1}}
    assert D.begin_attempt_change("j1", "j1-a2", clock_at(16.0))(doc) == (None, False)  # nothing left to move
    assert D.settle_change("j1-a1", 0.25)(doc) == (True, True)
    assert doc["reserved"] == {} and doc["spent"] == pytest.approx(0.25)


def test_a_reservation_is_dead_only_when_seen_unchanged_for_the_limit_here() -> None:
    mono = [0.0]
    watch = StaleWatch(100.0, 1000.0, lambda: mono[0])
    reserved = {
        "job": {"usd": 0.1, "at": 5e9, "by": "a", "n": 0},  # an `at` far in this host's future: no matter
        "live": {"usd": 0.1, "at": 1.0, "by": "b", "n": 0},  # an `at` far in its past: no matter either
        "attempt": {"usd": 0.1, "at": 1.0, "by": "a", "n": 0, "rc": 1},
    }
    assert watch.observe("k", reserved) == []  # first sighting
    mono[0] = 99.0
    assert watch.observe("k", reserved) == []
    reserved["live"] = {"usd": 0.1, "at": 1.0, "by": "b", "n": 1}  # its holder refreshed it (same `at`)
    mono[0] = 100.0
    assert watch.observe("k", reserved) == ["job"]  # 100 s unchanged on this process's own clock
    mono[0] = 199.0
    assert watch.observe("k", reserved) == ["job"]
    mono[0] = 200.0
    assert sorted(watch.observe("k", reserved)) == ["job", "live"]
    mono[0] = 1000.0
    assert sorted(watch.observe("k", reserved)) == ["attempt", "job", "live"]  # an attempt's: far later
    doc = D.empty_doc() | {"reserved": reserved}
    assert D.drop(doc, ["job", "gone"]) == ["job"] and sorted(reserved) == ["attempt", "live"]


def test_the_daily_ledger_counts_every_open_reservation_against_the_new_day() -> None:
    day1, day2 = 1_800_000_000.0 - 1_800_000_000.0 % 86400 - 10, 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 10
    doc = D.empty_doc(daily=True)
    doc["spent"], doc["day"] = 0.2, D.utc_day(day1)
    assert D.reserve_change("a", 0.56, 1.0, "daily ceiling", clock_at(day1))(doc)[0].ok  # 23:59:50
    res, _ = D.reserve_change("b", 0.56, 1.0, "daily ceiling", clock_at(day2))(doc)  # 00:00:10: a still held
    assert not res.ok and "$0.4400 left" in res.reason
    assert D.settle_change("a", 0.5, clock=clock_at(day2 + 10))(doc) == (True, True)  # billed after midnight
    assert doc["day"] == D.utc_day(day2) and doc["spent"] == pytest.approx(0.5)
    assert doc["days"] == {D.utc_day(day1): pytest.approx(0.2)}
    assert D.spent_on(doc, D.utc_day(day1)) == pytest.approx(0.2) and D.spent_on(doc, "2999-01-01") == 0.0
    assert not D.reserve_change("b", 0.56, 1.0, "daily ceiling", clock_at(day2))(doc)[0].ok
    # a writer whose clock is still before midnight counts on its own day
    assert D.settle_change("c", 0.1, clock=clock_at(day1))(doc) == (True, True)
    assert D.spent_on(doc, D.utc_day(day1)) == pytest.approx(0.3) and doc["spent"] == pytest.approx(0.5)
    assert D.day_view(doc, D.utc_day(day1))["spent"] == pytest.approx(0.3)


def test_the_daily_ledger_keeps_its_newest_days() -> None:
    doc = D.empty_doc(daily=True)
    for i in range(D.KEEP_DAYS + 3):
        D.settle_change(f"j{i}", 1.0, clock=clock_at(1_800_000_000.0 + i * 86400))(doc)
    assert len(doc["days"]) == D.KEEP_DAYS and doc["spent"] == 1.0


def test_a_day_key_of_an_earlier_version_is_folded_in() -> None:
    legacy = D.parse_doc(
        json.dumps({"spent": 0.3, "reserved": {"j": {"usd": 0.2, "at": 1}}, "settled": ["x"]}).encode()
    )
    doc = D.empty_doc(daily=True)
    D.merge_legacy(doc, "2027-01-02", legacy)
    assert doc["day"] == "2027-01-02" and doc["spent"] == 0.3 and doc["settled"] == ["x"]
    assert doc["reserved"] == {"j": {"usd": 0.2, "at": 1.0, "by": "", "n": 0}}


def test_raise_spent_never_lowers() -> None:
    doc = D.empty_doc()
    doc["spent"] = 0.4
    assert D.raise_spent_change(0.3)(doc) == (0.0, False) and doc["spent"] == 0.4
    gap, changed = D.raise_spent_change(0.5)(doc)
    assert gap == pytest.approx(0.1) and changed and doc["spent"] == 0.5


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", json.dumps({"spent": "x"}).encode(), json.dumps({"reserved": []}).encode()],
)
def test_an_unreadable_document_starts_over(raw: bytes) -> None:
    assert D.parse_doc(raw) == D.empty_doc()


def test_parse_keeps_what_counts_and_drops_a_bad_spent() -> None:
    raw = {"spent": -1, "reserved": {"j": {"usd": "0.2", "at": 1, "rc": 1, "x": 9}}, "settled": [1, "a"], "at": 3}
    doc = D.parse_doc(json.dumps(raw).encode())
    assert doc["reserved"] == {"j": {"usd": 0.2, "at": 1.0, "by": "", "n": 0, "rc": 1}}
    assert doc == {"spent": 0.0, "reserved": doc["reserved"], "settled": ["1", "a"], "at": 3.0}
    assert D.used_usd(doc) == pytest.approx(0.2) and D.reserved_usd(D.empty_doc()) == 0


def test_a_reservation_that_is_not_one_is_left_out_and_the_rest_kept() -> None:
    raw = {"spent": 0.1, "reserved": {"a": {"usd": 0.2, "at": 1}, "b": {}, "c": {"usd": "NaN", "at": 1}}}
    doc = D.parse_doc(json.dumps(raw).encode())
    assert list(doc["reserved"]) == ["a"] and doc["spent"] == 0.1
    assert not D.reserve_change("j", 0.5, float("nan"), "daily ceiling", clock_at(1.0))(doc)[0].ok  # NaN refuses


@pytest.mark.parametrize(("cost", "counted"), [(0.2, 0.2), (-1.0, 0.0), (float("nan"), 0.0), (float("inf"), 0.0)])
def test_clean_cost(cost: float, counted: float) -> None:
    assert D.clean_cost(cost) == counted

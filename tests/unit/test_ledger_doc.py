"""The budget ledger's changes, without a bus: each decides from the document it is given alone, because the
compare-and-set loop calls it again on a fresh read when another writer won."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from swarm_tui.engine.guards import ledger_doc as D


def clock_at(t: float) -> Callable[[], float]:
    return lambda: t


def test_reserve_fits_under_the_ceiling_and_refuses_past_it() -> None:
    doc = D.empty_doc()
    doc["spent"] = 0.5
    res, changed = D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0))(doc)
    assert res.ok and res.amount_usd == 0.3 and changed
    assert doc["reserved"] == {"j1": {"usd": 0.3, "at": 10.0}}
    res, changed = D.reserve_change("j2", 0.3, 1.0, "daily ceiling", clock_at(11.0))(doc)
    assert not res.ok and not changed and "j2" not in doc["reserved"]
    assert res.reason == "over budget: needs $0.3000 (worst case), $0.2000 left of the $1.0000 daily ceiling"
    res, _ = D.reserve_change("j3", 0.2, 1.0, "daily ceiling", clock_at(12.0))(doc)
    assert res.ok  # exactly up to the ceiling fits


def test_a_redelivered_job_keeps_its_reservation_and_a_settled_one_is_refused() -> None:
    doc = D.empty_doc()
    D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(10.0))(doc)
    res, changed = D.reserve_change("j1", 0.9, 0.0, "daily ceiling", clock_at(20.0))(doc)
    assert res.ok and res.amount_usd == 0.3 and changed  # its amount, under any ceiling; its clock restarts
    assert doc["reserved"]["j1"] == {"usd": 0.3, "at": 20.0}
    assert D.settle_change("j1", 0.1)(doc) == (True, True)
    res, changed = D.reserve_change("j1", 0.3, 1.0, "daily ceiling", clock_at(30.0))(doc)
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
    assert doc["reserved"] == {"j1-a1": {"usd": 0.3, "at": 15.0, "rc": 1}}
    assert D.begin_attempt_change("j1", "j1-a2", clock_at(16.0))(doc) == (0.0, False)  # nothing left to move
    assert D.settle_change("j1-a1", 0.25)(doc) == (True, True)
    assert doc["reserved"] == {} and doc["spent"] == pytest.approx(0.25)


def test_stale_reservations_go_an_attempts_much_later() -> None:
    doc = D.empty_doc()
    doc["reserved"] = {
        "old": {"usd": 0.1, "at": 50.0},
        "new": {"usd": 0.1, "at": 150.0},
        "old-attempt": {"usd": 0.1, "at": 50.0, "rc": 1},
        "ancient-attempt": {"usd": 0.1, "at": 5.0, "rc": 1},
    }
    assert sorted(D.drop_stale(doc, limit=100.0, rc_limit=10.0)) == ["ancient-attempt", "old"]
    assert sorted(doc["reserved"]) == ["new", "old-attempt"]


def test_raise_spent_never_lowers() -> None:
    doc = D.empty_doc()
    doc["spent"] = 0.4
    assert D.raise_spent_change(0.3)(doc) == (0.0, False) and doc["spent"] == 0.4
    gap, changed = D.raise_spent_change(0.5)(doc)
    assert gap == pytest.approx(0.1) and changed and doc["spent"] == 0.5


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", json.dumps({"spent": "x"}).encode(), json.dumps({"reserved": {"j": {}}}).encode()],
)
def test_an_unreadable_document_starts_over(raw: bytes) -> None:
    assert D.parse_doc(raw) == D.empty_doc()


def test_parse_keeps_what_counts_and_drops_a_bad_spent() -> None:
    raw = {"spent": -1, "reserved": {"j": {"usd": "0.2", "at": 1, "rc": 1, "x": 9}}, "settled": [1, "a"], "at": 3}
    doc = D.parse_doc(json.dumps(raw).encode())
    assert doc == {"spent": 0.0, "reserved": {"j": {"usd": 0.2, "at": 1.0, "rc": 1}}, "settled": ["1", "a"], "at": 3.0}
    assert D.used_usd(doc) == pytest.approx(0.2) and D.reserved_usd(D.empty_doc()) == 0


@pytest.mark.parametrize(("cost", "counted"), [(0.2, 0.2), (-1.0, 0.0), (float("nan"), 0.0), (float("inf"), 0.0)])
def test_clean_cost(cost: float, counted: float) -> None:
    assert D.clean_cost(cost) == counted

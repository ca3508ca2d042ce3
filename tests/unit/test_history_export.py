"""``export_log``: all of a log from a point, or one task's own events, with every secret masked; nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.trust import event_subject
from swarm_tui.engine.bus.wire import (
    Approval,
    ControlEvent,
    Decision,
    Msg,
    PlanItem,
    Result,
    SpendEntry,
    Task,
    WorkerEvent,
)
from swarm_tui.engine.history.export import export_log
from swarm_tui.engine.history.filelog import read_log_file
from swarm_tui.engine.history.fold import fold_to
from swarm_tui.engine.history.source import MemoryLog, Stored

T0 = 1_900_000_000.0
KEY = "sk-or-v1-" + "c0ffee" * 8
TOKEN = "hunter2-nats-token"


def _ids(tid: str, n: int) -> dict[str, str]:
    return {"decision_id": f"d-{tid}", "task_id": tid, "worker_id": f"d-{tid}-w{n}", "model": "openrouter/x/y"}


def _log() -> MemoryLog:
    msgs: list[Msg] = []
    for tid in ("t-a", "t-b"):
        plan = [PlanItem(task_id=tid, role="research", model="openrouter/x/y", max_tokens=100)]
        msgs += [
            Task(id=tid, text=f"task {tid} with the key {KEY} and {TOKEN} pasted", created_at=T0),
            Decision(id=f"d-{tid}", task_ids=[tid], plan=plan, source="rules", created_at=T0, expires_at=T0 + 900),
            Approval(decision_id=f"d-{tid}", action="approved", at=T0),
            WorkerEvent.model_validate({**_ids(tid, 0), "job_id": f"j-{tid}", "state": "done", "at": T0}),
            Result.model_validate(
                {**_ids(tid, 0), "job_id": f"j-{tid}", "state": "done", "text": f"answer to {tid}: {TOKEN}"}
                | {"started_at": T0, "ended_at": T0}
            ),
            SpendEntry.model_validate({**_ids(tid, 0), "id": f"j-{tid}", "cost_usd": 0.01, "at": T0}),
            ControlEvent(what="promote", target=f"j-{tid}", at=T0),
            ControlEvent(what="cancel", target=f"decision:d-{tid}", at=T0),
        ]
    msgs.append(ControlEvent(what="scale", value=3, at=T0))
    events = [Stored(i, T0 + i, event_subject(m), m.to_bytes()) for i, m in enumerate(msgs, 1)]
    events.append(Stored(len(events) + 1, T0 + 99, S.evt("task", "t-z"), b"\x00 not an event"))
    return MemoryLog(events)


async def test_everything_exported_folds_to_the_same_state_with_no_secret(tmp_path: Path) -> None:
    log = _log()
    out = tmp_path / "all.jsonl"
    got = await export_log(log, out, secrets=[TOKEN, "abc"])
    assert (got.count, got.first_seq, got.last_seq, got.skipped) == (17, 1, 17, 1)
    text = out.read_text()
    assert KEY not in text and TOKEN not in text and "***" in text
    back = await fold_to(read_log_file(out), 99, max_scale=50)
    live = await fold_to(log, 99, max_scale=50)
    masked = live.state.snapshot()
    assert back.state.snapshot().keys() == masked.keys()
    assert back.state.snapshot()["decisions"] == masked["decisions"]
    assert [t["id"] for t in back.state.snapshot()["tasks"]] == [t["id"] for t in masked["tasks"]]


async def test_one_task_is_its_own_events_only(tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    got = await export_log(_log(), out, task_id="t-b")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert got.count == 8 == len(rows) and [r["seq"] for r in rows] == list(range(9, 17))
    assert all("t-a" not in json.dumps(r) for r in rows)
    fold = await fold_to(read_log_file(out), 99, max_scale=50)
    assert list(fold.state.tasks) == ["t-b"] and fold.state.tasks["t-b"].promoted == "j-t-b"


async def test_since_a_point_and_a_task_since_then(tmp_path: Path) -> None:
    got = await export_log(_log(), tmp_path / "late.jsonl", start_seq=15)
    assert (got.count, got.first_seq, got.last_seq, got.skipped) == (3, 15, 17, 1)
    got = await export_log(_log(), tmp_path / "b-late.jsonl", start_seq=11, task_id="t-b")
    assert (got.count, got.first_seq, got.last_seq) == (6, 11, 16)  # its approval (seq 11) known by its decision
    got = await export_log(_log(), tmp_path / "none.jsonl", start_seq=99)
    assert (got.count, got.first_seq, got.last_seq) == (0, 0, 0) and (tmp_path / "none.jsonl").read_text() == ""


def test_a_login_in_a_configured_url_is_masked_too(tmp_path: Path) -> None:
    from swarm_tui.cli.export import url_logins
    from tests.support.env import make_config

    cfg = make_config(tmp_path, "nats://bob:pa55word-x@127.0.0.1:4222,nats://al:other-pw@h2:4222")
    assert set(url_logins(cfg)) == {"bob:pa55word-x", "pa55word-x", "al:other-pw", "other-pw"}
    assert url_logins(make_config(tmp_path, "nats://127.0.0.1:4222")) == []

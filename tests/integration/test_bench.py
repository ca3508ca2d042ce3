"""The benchmark command works on its tiny setting (``python -m bench --quick``) and reports every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.__main__ import QUICK, figures
from tests.support.env import ROOT


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = out.read_text()
    for fig in figures(QUICK):
        row = next((line for line in text.splitlines() if line.startswith(f"| {fig.name} |")), None)
        assert row is not None, f"no row for {fig.key}"
        median = row.split("|")[2].strip()
        assert re.match(r"^-?\d", median), f"{fig.key} has no number: {row}"


def test_the_heartbeat_bench_scores_the_rules_and_renders_its_table() -> None:
    """The scenarios' properties are checkable (the rules meet those a one-worker-per-task plan can) and the
    table splices into docs/performance.md between its markers; the model's side runs in .ci/run's bench."""
    from bench.heartbeat import END, SCENARIOS, START, rules, splice, table

    assert len(SCENARIOS) >= 12
    scores = {s.name: rules(s) for s in SCENARIOS}
    assert scores["code task"].met == scores["code task"].total
    assert scores["research then analysis"].failed  # a chain is beyond the rules
    assert scores["review: a failed result"].failed  # and so is any follow-up
    easy = scores["easy summary"].__dict__
    row = {"rules": easy, "model": [easy], "combo": [easy], "scenario": "x"}
    block = table(
        {"rows": [row], "ram_mb": 313.0, "runs": 1, "machine": "m", "at": "now", "model": "g", "backend": "b"}
    )
    doc = splice(splice("# perf\n", block), block)
    assert doc.count(START) == 1 and doc.count(END) == 1 and "313 MB" in doc

"""The benchmark command works on its tiny setting (``python -m bench --quick``) and reports every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.__main__ import QUICK, figures

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "perf.md"
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=170)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = out.read_text()
    for fig in figures(QUICK):
        row = next((line for line in text.splitlines() if line.startswith(f"| {fig.name} |")), None)
        assert row is not None, f"no row for {fig.key}"
        median = row.split("|")[2].strip()
        assert re.match(r"^-?\d", median), f"{fig.key} has no number: {row}"

"""The heartbeat bench's table for docs/performance.md (between the heartbeat markers), from its raw results.

Pure functions over the results ``bench/heartbeat.py`` collects (plain dicts, also written with ``--json``):
per scenario the rules' score, and per run the model-alone and the combination scores of the same model answer.
A column's figure is its worst run (a property counts only when every run met it); the runs' own figures follow
in brackets when they differ.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

START, END = "<!-- heartbeat:start -->", "<!-- heartbeat:end -->"
BURST_OF_THREE = "three mixed tasks"  # its median latency is the target
TARGET_S = 3.0


def worst(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run that met the fewest properties (the first of equals)."""
    return min(scores, key=lambda x: int(x["met"]))


def cell(scores: Sequence[dict[str, Any]]) -> str:
    w = worst(scores)
    runs = [int(x["met"]) for x in scores]
    spread = f" ({','.join(map(str, runs))})" if len(set(runs)) > 1 else ""
    dagger = " †" if any(x.get("error") for x in scores) else ""
    return f"{w['met']}/{w['total']}{spread}{dagger}"


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def table(res: dict[str, Any]) -> str:
    rows = res["rows"]
    lines = [
        START,
        "## Heartbeat: the rules, the local model and their combination, side by side (`python -m bench.heartbeat`)",
        "",
        f"Run of {res['at']} on {res['machine']}. Model: `{res['model']}` served by {res['backend']}; "
        f"{res['runs']} model call(s) per scenario, each serving both the *model* and the *combination* column. "
        "*rules*: the rules' own plan; *model*: the model's plan clamped, the rules' when the answer cannot be "
        "used (marked †); *combination*: what the conductor does, `merge_plans` of the rules' plan and the "
        "model's (`merge_review` for a review), then the clamp. Every property is checked on the clamped plan. "
        "A figure is the worst run's; the runs' own follow in brackets when they differ. A review offers the model "
        "only the tasks whose results do not look complete, as the conductor does; with none there is no call.",
        "",
        "| scenario | rules | model | combination | combination missed | model latency | prompt / answer tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    tot = {"rules": 0, "model": 0, "combo": 0, "all": 0}
    for r in rows:
        ru, mo, co = r["rules"], worst(r["model"]), worst(r["combo"])
        tot["rules"] += int(ru["met"])
        tot["model"] += int(mo["met"])
        tot["combo"] += int(co["met"])
        tot["all"] += int(ru["total"])
        missed = ", ".join(co["failed"]) or "-"
        calls = [float(x["latency_ms"]) for x in r["model"] if x.get("called", True)]
        lat = f"{statistics.median(calls) / 1000:.1f} s" if calls else "no call"
        tokens = f"{mo['prompt_tokens']} / {mo['eval_tokens']}" if calls else "-"
        lines.append(
            f"| {r['scenario']} | {ru['met']}/{ru['total']} | {cell(r['model'])} | {cell(r['combo'])} | "
            f"{missed} | {lat} | {tokens} |"
        )
    lat_all = [float(x["latency_ms"]) for r in rows for x in r["model"] if x.get("called", True)]
    p50 = statistics.median(lat_all) if lat_all else 0.0
    mx = max(lat_all) if lat_all else 0.0
    n, t = len(rows), tot["all"]
    lines += [
        f"| **all {n}** | **{tot['rules']}/{t}** | **{tot['model']}/{t}** | **{tot['combo']}/{t}** | | "
        f"p50 {p50 / 1000:.1f} s, max {mx / 1000:.1f} s | |",
        "",
        f"Model latency over all {len(lat_all)} calls: p50 {p50 / 1000:.2f} s, max {mx / 1000:.2f} s.",
    ]
    burst = next((r for r in rows if r["scenario"] == BURST_OF_THREE), None)
    if burst is not None:
        b = statistics.median(float(x["latency_ms"]) for x in burst["model"]) / 1000
        verdict = "met" if b <= TARGET_S else "not met"
        lines.append(
            f"Median latency of the burst of 3 (*{BURST_OF_THREE}*, {len(burst['model'])} call(s)): {b:.2f} s "
            f"(target at most {TARGET_S:g} s: {verdict})."
        )
    if res.get("load"):
        a, b = res["load"]
        lines.append(
            f"The machine's 1-minute load average was {a:.2f} at the start and {b:.2f} at the end "
            "(other work shares its cores: latency figures move with it; the properties do not)."
        )
    ram = f"{res['ram_mb']:.0f} MB" if res.get("ram_mb") is not None else "not reported"
    lines += [f"RAM of the model (`/api/ps` size - size_vram): {ram}. The rules cost no RAM.", ""]
    below = [r["scenario"] for r in rows if worst(r["combo"])["met"] < r["rules"]["met"]]
    above = [r["scenario"] for r in rows if worst(r["combo"])["met"] > r["rules"]["met"]]
    m_below = [r["scenario"] for r in rows if worst(r["model"])["met"] < r["rules"]["met"]]
    diff = tot["combo"] - tot["rules"]
    lines += [
        f"In total the combination meets {tot['combo']} of {t} properties, the rules {tot['rules']} "
        f"({'+' if diff >= 0 else ''}{diff}), the model alone {tot['model']}.",
        f"Where the combination is below the rules: {', '.join(below) or 'nowhere'}.",
        f"Where it is above them: {', '.join(above) or 'nowhere'}.",
        f"Where the model alone is below the rules: {', '.join(m_below) or 'nowhere'}.",
    ]
    learned = [r for r in rows if r.get("learned")]
    if learned:
        lines += ["", "Learning scenarios (the rules plan without history; they do not learn):"]
        for r in learned:
            lr = r["learned"]
            used = worst(r["model"]).get("examples") or []
            lines.append(
                f"- *{r['scenario']}*: {lr['history']}. Learned per-role count: {lr['prefs']}. "
                f"Examples in the model's prompt ({len(used)}): " + ("; ".join(f"`{e}`" for e in used) or "none")
            )
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(doc: str, block: str) -> str:
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        return head + block.rstrip("\n") + rest.split(END, 1)[1]
    return doc.rstrip("\n") + "\n\n" + block

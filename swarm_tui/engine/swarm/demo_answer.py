"""The demo endpoint's answers: synthetic Markdown that looks like a real answer, shaped by the worker's role.

``demo_answer`` writes a document with a heading, a list and a code block (research notes, a step-by-step
analysis, code with its usage), of a length that varies by role and job up to a limit, one word a token. It is
deterministic per seed (the job id), so a retried job streams the same answer.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

NOTE = "_Demo answer: synthetic text written offline, no model was called._"
# the share of the longest answer each role writes (then a job's own jitter): research notes are the shortest
ROLE_SHARE = {"research": 0.65, "analysis": 1.0, "code": 0.8}
_ROLE = re.compile(r"You are the (\w[\w-]*) worker")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_TOKEN = re.compile(r"\S+\s*")

_SENTENCES = {
    "research": [
        "The sources agree on the main point for {topic}, and differ only on the details.",
        "Most of what is written about {topic} comes from the project's own documentation and release notes.",
        "Two recent write-ups measured {topic} on ordinary hardware; their numbers are close to each other.",
        "Where the sources disagree, the newer one is usually right, because the behaviour changed in a release.",
        "I could not confirm every claim: the ones marked unsure below need a second source.",
        "The defaults are sensible for a single machine and need tuning only under sustained load.",
        "Older answers on forums describe a previous version and no longer apply as written.",
        "The change log is the most reliable place to see when each behaviour was introduced.",
        "Benchmarks published by the maintainers are optimistic but reproducible with the scripts they give.",
        "A comparison table in the wiki is out of date by two releases; its conclusions still hold.",
        "Security advisories for the last year were few and were fixed within a week.",
        "The mailing list archives explain the reasoning behind the current defaults.",
    ],
    "analysis": [
        "The question about {topic} comes down to a trade-off between cost, latency and how much can go wrong.",
        "Taken step by step, the constraints rule out the obvious option first.",
        "The cheapest option is fine while the load stays low, and degrades gracefully when it grows.",
        "A second look at the failure modes changes the order of the two remaining options.",
        "Nothing here needs a new dependency, which keeps the risk of the change small.",
        "The numbers are estimates; the ranking holds for any reasonable value of them.",
        "Measuring before and after the change is the only way to be sure it paid off.",
        "The remaining risk is operational rather than technical, and a short runbook covers it.",
        "If the load doubles, the chosen option still holds; beyond that, the comparison should be redone.",
        "The team already knows the tools involved, so the learning cost is close to zero.",
        "Rolling back is cheap: the change is behind a setting and touches one component.",
        "The alternative that looks cheapest hides its cost in maintenance later.",
    ],
    "code": [
        "Here is a small, self-contained implementation for {topic}.",
        "It has no dependencies beyond the standard library and is easy to test in isolation.",
        "The function validates its input first, so errors surface where they are made.",
        "Edge cases are handled explicitly rather than by catching broad exceptions.",
        "The code favours clarity over cleverness; it is fast enough for the sizes involved.",
        "Type hints make the contract explicit and let a checker catch misuse early.",
        "A few tests pin down the behaviour, including the awkward inputs.",
        "If the inputs grow large, the loop is the place to optimise first.",
        "The parsing is strict on purpose: silent guesses are harder to debug than a clear error.",
        "Names follow the surrounding code base, so the function reads like the rest of it.",
        "The docstring states the format once, where a reader looks for it.",
        "Nothing is global: the function can be moved or copied without surprises.",
    ],
}
_POINTS = {
    "research": [
        "**Scope**: what {topic} covers, and what it leaves to other tools",
        "**Defaults**: reasonable out of the box, documented in the reference",
        "**Limits**: memory and disk caps apply per instance, not per client",
        "**Versions**: the behaviour changed in a recent minor release",
        "**Alternatives**: two other projects solve a similar problem differently",
        "**Community**: active issue tracker, answers within days",
        "**Licence**: permissive, suitable for commercial use",
        "**Unsure**: one benchmark could not be reproduced from its description",
    ],
    "analysis": [
        "State the goal for {topic} in one sentence and what success looks like",
        "List the constraints: budget, latency, and what must never fail",
        "Compare the options against each constraint, not against each other",
        "Drop the options that break a hard constraint",
        "Estimate cost and effort for what remains",
        "Pick the simplest option that meets every constraint",
        "Plan how to measure the result after the change",
        "Write down what would make the decision worth revisiting",
    ],
    "code": [
        "Call `{fn}()` with the input; it returns the parsed value or raises `ValueError`",
        "Run the tests with `pytest -q` before changing the behaviour",
        "The function is pure: safe to call from several threads",
        "Invalid input raises early, with a message that names the problem",
        "Keep the constants at the top if the format changes",
        "Add a case to the tests for every bug found later",
    ],
}
_HEADINGS = {
    "research": ("Research notes", "What the sources say", "Where to look"),
    "analysis": ("Analysis", "Step by step", "Comparison"),
    "code": ("Implementation", "How to use it", "The code"),
}
_CODE = {
    "research": (
        "bash",
        [
            "# check the installed version and its defaults",
            "{fn} --version",
            "{fn} --help | grep -i limit",
            "curl -s https://example.invalid/{fn}/releases | head -20",
            "grep -rn 'max_' /etc/{fn}/ 2>/dev/null",
        ],
        ["{fn} --version"],
    ),
    "analysis": (
        "text",
        [
            "option        cost   latency   risk",
            "keep as is    low    high      low",
            "add a cache   low    low       medium",
            "new service   high   low       high",
            "verdict: add a cache, measure for a week",
        ],
        ["keep as is: low cost, high latency", "add a cache: low cost, low latency"],
    ),
    "code": (
        "python",
        [
            "def {fn}(text: str) -> dict[str, str]:",
            '    """Parse `key=value` pairs, one a line; blank lines and comments are skipped."""',
            "    out: dict[str, str] = {{}}",
            "    for n, line in enumerate(text.splitlines(), 1):",
            "        line = line.strip()",
            '        if not line or line.startswith("#"):',
            "            continue",
            '        key, sep, value = line.partition("=")',
            "        if not sep or not key.strip():",
            '            raise ValueError(f"line {{n}}: expected key=value")',
            "        out[key.strip()] = value.strip()",
            "    return out",
        ],
        [
            "def {fn}(text: str) -> dict[str, str]:",
            '    return dict(x.split("=", 1) for x in text.splitlines() if "=" in x)',
        ],
    ),
}


# words a task starts with that say what to do, not what about: left out of the topic
_ASKING = set(
    "write draft explain summarise summarize compare give make create list describe find research analyse analyze "
    "review build implement design propose plan outline a an the short brief quick explanation summary overview "
    "of about on how what why me us please some few".split()
)


def topic_of(messages: Any) -> str:
    """A few plain words of what the task is about (the user message; after ``Task:`` when earlier results
    follow): letters and digits only, whatever the task text holds."""
    text = ""
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                text = str(m.get("content", ""))
    if text.startswith("Task:\n"):
        text = text[len("Task:\n") :]
    words = _WORD.findall(text.split("\n", 1)[0])[:40]
    while words and words[0].lower() in _ASKING:
        words.pop(0)
    return " ".join(words[:5]) if words else "the task"


def role_of(messages: Any, header: str) -> str:
    if header:
        return header[:32]
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "system":
                found = _ROLE.search(str(m.get("content", "")))
                if found:
                    return found.group(1)
    return "general"


def _tokens(text: str) -> list[str]:
    """One token per word, with the whitespace after it (newlines, indentation): joined, they are the text."""
    lead = text[: len(text) - len(text.lstrip())]
    toks = _TOKEN.findall(text)
    if toks and lead:
        toks[0] = lead + toks[0]
    return toks


def demo_answer(seed: str, role: str, topic: str, limit: int) -> list[str]:
    """A synthetic Markdown answer as its tokens: a heading, prose, a list and a code block, in the manner of
    ``role``, at most ``limit`` tokens (whole sentences; only a budget smaller than the smallest document cuts
    one); the same for the same seed."""
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    kind = role if role in _SENTENCES else rng.choice(("research", "analysis", "code"))
    target = max(1, min(limit, round(limit * ROLE_SHARE.get(kind, 0.8) * rng.uniform(0.85, 1.0))))
    words = [w for w in _WORD.findall(topic.lower()) if w.isascii() and w.replace("-", "").isalpha()]
    fmt = {"topic": topic, "fn": "_".join(words[:3]).replace("-", "_") or "run"}
    title, list_title, code_title = _HEADINGS[kind]
    sentences = [x.format(**fmt) for x in rng.sample(_SENTENCES[kind], len(_SENTENCES[kind]))]
    points = [x.format(**fmt) for x in rng.sample(_POINTS[kind], len(_POINTS[kind]))]
    lang, whole, short = _CODE[kind]
    codes = [[x.format(**fmt) for x in short], [x.format(**fmt) for x in whole]]  # short only for a small budget
    numbered = kind == "analysis"

    def build(n_intro: int, n_points: int, n_code: int, more: list[str]) -> list[str]:
        code = codes[n_code]
        items = [f"{i + 1}. {p}" if numbered else f"- {p}" for i, p in enumerate(points[:n_points])]
        paragraphs = [" ".join(more[i : i + 4]) for i in range(0, len(more), 4)]
        lines = [f"## {title}: {topic[:1].upper()}{topic[1:]}", "", " ".join(sentences[:n_intro]), ""]
        lines += [f"### {list_title}", "", *items, "", f"### {code_title}", "", f"```{lang}", *code, "```", ""]
        for para in paragraphs:
            lines += [para, ""]
        return _tokens("\n".join([*lines, NOTE, ""]))

    # grow from the smallest whole document while it fits the target: the intro and the list first, one part
    # at a time, then closing paragraphs, a sentence at a time (a word is a token: counted, not rebuilt)
    n_intro, n_points, n_code = 1, 2, 0
    toks = build(n_intro, n_points, n_code, [])
    if len(toks) > target:  # a budget smaller than the smallest document: its beginning
        return toks[:target]
    while True:
        options = [(n_intro + 1, n_points, n_code)] if n_intro < 3 else []
        options += [(n_intro, n_points + 1, n_code)] if n_points < len(points) else []
        options += [(n_intro, n_points, 1)] if n_code == 0 else []
        for option in rng.sample(options, len(options)):
            grown = build(*option, [])
            if len(grown) <= target:
                (n_intro, n_points, n_code), toks = option, grown
                break
        else:
            break
    spare = sentences[n_intro:] + sentences[:n_intro]  # the unsaid first; a long budget cycles through them
    more: list[str] = []
    size = len(toks)
    while size + len(spare[len(more) % len(spare)].split()) <= target:
        size += len(spare[len(more) % len(spare)].split())
        more.append(spare[len(more) % len(spare)])
    return build(n_intro, n_points, n_code, more) if more else toks

"""The texts the scenes show: tasks, a worker's output, answers, a hostile string, a merge's choices.

Kept apart from ``scenes.py`` (which builds the scenes from them) so each file stays short.
"""

from __future__ import annotations

from swarm_tui.engine.bus.wire import MergeChoice

MODELS = [
    "openrouter/google/gemini-2.5-flash-lite",
    "openrouter/deepseek/deepseek-chat-v3.1",
    "openrouter/qwen/qwen3-coder",
]
TASKS = [
    "Summarise the last week of NATS JetStream release notes for the ops channel",
    "Write a Python function that parses RFC 3339 timestamps without dateutil",
    "Compare three cheap embedding models for a 6 GB Chromebook",
    "Draft a README section on running the swarm over ssh inside tmux",
    "Find the cheapest OpenRouter model that handles 32k context well",
    "Review the budget guard for races between two worker processes",
]
OUTPUT = (
    "Step 1: read the input carefully and list the constraints.\n"
    "The timestamps may carry a 'Z' or an offset such as +02:00; fractions of a second are optional.\n"
    "def parse_rfc3339(s: str) -> datetime:\n"
    "    s = s.strip().replace('z', 'Z')\n"
    "    if s.endswith('Z'):\n"
    "        s = s[:-1] + '+00:00'\n"
    "    return datetime.fromisoformat(s)\n"
    "Edge cases: leap seconds (23:59:60) are rejected by fromisoformat; clamp them to :59.\n"
)


HOSTILE = (
    "[bold red]ALERT[/] [link=http://evil]click[/link] \x1b[2J\x1b[H cleared? \x1b]52;c;cm0gLXJmIH4=\x07"
    " \x1b]0;pwned-title\x07 \x9b31m C1 \u202eevil bidi\u202c end [/]\n"
)

# the "results" scene: answers as a model writes them (a heading, a list, a code block), and one link that must
# stay text
ANSWERS = (
    "## Plan\n\nParse with the standard library only:\n\n"
    "1. normalise a trailing `Z` to `+00:00`\n2. hand the rest to `fromisoformat`\n"
    "3. reject leap seconds with a clear error\n\nSee [the RFC](https://www.rfc-editor.org/rfc/rfc3339).\n",
    "## Code\n\n```python\nfrom datetime import datetime\n\n\n"
    "def parse_rfc3339(s: str) -> datetime:\n"
    "    s = s.strip().replace('z', 'Z')\n"
    "    if s.endswith('Z'):\n"
    "        s = s[:-1] + '+00:00'\n"
    "    return datetime.fromisoformat(s)\n```\n\n"
    "- **tested:** offsets, fractions, `Z`\n- *not handled:* leap seconds\n",
)


# the "compare" scene: three answers to one task from three models, the first promoted; the second failed
COMPARED = (
    ANSWERS[0],
    "## Plan\n\nParse with the standard library only:\n\n"
    "1. normalise a trailing `Z` or `z` to `+00:00`\n2. hand the rest to `datetime.fromisoformat`\n"
    "3. clamp leap seconds (`:60`) to `:59` and log it\n4. reject a missing offset\n\n"
    "Python 3.11 parses fractions of any length; older versions need them padded to six digits.\n",
)


def merge_example(task_ids: list[str]) -> tuple[list[MergeChoice], list[str]]:
    """What a merge of the rules' plan and the model's records, and the examples it learned from."""
    a, b = task_ids[0], task_ids[-1]
    return [
        MergeChoice(
            task_id=a, kept="model", what="chain", reason="the task names steps: the model's research → analysis"
        ),
        MergeChoice(
            task_id=b,
            kept="user",
            what="count",
            reason="1 research worker(s): the user's last 3 research "
            "decisions ended at 1 worker(s) per step (3 edited)",
        ),
        MergeChoice(
            task_id=b,
            kept="rules",
            what="role",
            reason="research kept, not the model's code: the model's role alone is no reason to change it",
        ),
    ], ['"Find three papers on NATS clustering": proposed research x2; the user edited it to research x1']

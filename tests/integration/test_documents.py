"""Answers as documents: the results screen renders each answer as Markdown, a key copies one answer, a key
saves the task's results as a Markdown file, and ``swarm-tui result ID --format md [--out FILE]``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownBlock, MarkdownFence, MarkdownHeader, MarkdownOrderedList

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import MAX_TEXT, Result, Task, Usage, new_id
from swarm_tui.engine.config.load import Config
from swarm_tui.textsafe import is_clean
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.commands import PALETTE, help_rows
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.results_doc import close_fences
from swarm_tui.tui.scenes import ANSWERS, NOW, build
from swarm_tui.tui.screens.results import ResultsScreen
from swarm_tui.tui.widgets.answer import Answer
from swarm_tui.tui.widgets.safe_markdown import MARKDOWN_BLOCKS, PER_ANSWER, SafeMarkdown, split_for_markdown
from tests.support.env import base_env, make_config, run_cli
from tests.support.polling import until

SIZE = (160, 48)

PAST = time.time() - 3600  # stored results' times: the bus refuses a time years before it stores it


def scene_app(data_dir: Path | None = None, keys: dict[str, str] | None = None) -> SwarmApp:
    """The "results" scene (a task with two Markdown answers), saving under ``data_dir`` when given."""
    link, rings, hist = build("results")
    cfg = link.cfg
    if data_dir is not None:
        cfg = cfg.replace(paths__data_dir=str(data_dir))
    if keys:
        cfg.keys.update(keys)
    link = StaticLink(cfg, link.state, link.info(), demo=True)
    return SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


async def open_results(app: SwarmApp, pilot: Any) -> ResultsScreen:
    await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
    app.room.task_table.focus()
    await pilot.press("enter")
    await until(lambda: isinstance(app.screen, ResultsScreen), 5, "the results screen")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, ResultsScreen)
    return screen


async def test_enter_on_a_task_renders_each_answer_as_markdown() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        answers = list(screen.query(Answer))
        assert [a.index for a in answers] == [1, 2]
        assert [a.result.role for a in answers] == ["research", "code"]
        # real Markdown blocks: the answers' headings, the numbered list, the fenced code block
        assert {h.query_ancestor(Answer).index for h in screen.query(MarkdownHeader)} == {1, 2}
        assert len(answers[0].query(MarkdownOrderedList)) == 1
        fences = list(answers[1].query(MarkdownFence))
        assert len(fences) == 1 and fences[0].lexer == "python"
        assert "def parse_rfc3339" in fences[0].code
        # highlighted: the code carries more than one style
        assert len({s.style for s in fences[0]._highlighted_code.spans}) > 1
        # the facts of each answer on its first line
        meta = str(answers[1].query_one(".answer-meta").render())
        assert "openrouter/deepseek/deepseek-chat-v3.1" in meta and "tokens 720 in / 270 out" in meta
        assert "cost $0.000840" in meta and "state done" in meta
        assert app.focused is answers[0]  # the first answer, under the task, is the selected one
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ResultsScreen)


async def test_copy_key_copies_the_selected_answer_as_stored() -> None:
    app = scene_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        await pilot.press("y")
        assert app.clipboard == ANSWERS[0]  # the first, focused answer, as stored
        await pilot.press("tab")
        await pilot.pause()
        focused = app.focused
        assert isinstance(focused, Answer) and focused.index == 2
        await pilot.press("y")
        assert app.clipboard == ANSWERS[1]
        assert isinstance(app.screen, ResultsScreen) and app.screen is screen


async def test_save_key_writes_the_document_and_says_where(tmp_path: Path) -> None:
    app = scene_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        await pilot.press("s")
        path = tmp_path / "data" / "exports" / f"{screen.task_id}.md"
        await until(path.exists, 5, "the saved file")
        doc = path.read_text()
        assert doc.startswith(f"# Task {screen.task_id}: Write a Python function")
        assert doc.index("## 1. research") < doc.index("## 2. code") and "```python" in doc
        assert any(str(path) in n.message for n in app._notifications)


async def test_save_to_a_path_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = scene_app(blocker)  # exports/ would have to be made inside a file
    async with app.run_test(size=SIZE) as pilot:
        await open_results(app, pilot)
        await pilot.press("s")
        await pilot.pause()
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "could not save" in errors[0].message
        assert app.is_running and isinstance(app.screen, ResultsScreen)


async def test_copy_and_save_keys_are_remappable() -> None:
    app = scene_app(keys={"copy_answer": "k", "save_results": "w"})
    rows = {ident: key for key, _desc, ident in help_rows({"copy_answer": "k", "save_results": "w"})}
    assert rows["copy_answer"] == "k" and rows["save_results"] == "w"
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        await pilot.press("y")
        assert app.clipboard == ""  # the old key does nothing
        await pilot.press("k")
        assert app.clipboard == ANSWERS[0]
        hint = str(screen.query("Label").last().render())
        assert "k copy the answer" in hint and "w save as Markdown" in hint


async def test_palette_actions_work_on_the_selected_task(tmp_path: Path) -> None:
    assert {"copy_answer", "save_results"} <= {a for _t, _b, a in PALETTE}
    app = scene_app(tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        task_id = app.room.selected_task()
        assert task_id is not None
        assert await app.run_action("copy_answer", app.room)
        assert app.clipboard == ANSWERS[1]  # the task's newest answer
        assert await app.run_action("save_results", app.room)
        assert (tmp_path / "data" / "exports" / f"{task_id}.md").is_file()
        await pilot.pause()


def test_an_open_code_fence_is_closed_so_it_cannot_swallow_what_follows() -> None:
    assert close_fences("a\n```python\nx = 1") == "a\n```python\nx = 1\n```"
    assert close_fences("```\nx\n```\nafter") == "```\nx\n```\nafter"
    assert close_fences("~~~~\n```\n~~~") == "~~~~\n```\n~~~\n~~~~"  # a shorter fence does not close it


def test_a_long_answer_is_cut_between_blocks_for_the_markdown_view() -> None:
    paras = "\n\n".join(f"paragraph {i}" for i in range(300))
    head, rest, cost = split_for_markdown(paras, 100)
    assert cost == 100 and head.rstrip().endswith("paragraph 99") and rest.startswith("paragraph 100")
    assert head + "\n" + rest == paras  # nothing lost, nothing repeated
    items = "\n".join(f"- item {i}" for i in range(500))  # one top-level list: cut between its items
    head, rest, _ = split_for_markdown(items, 100)
    assert head.startswith("- item 0") and rest.startswith("- item ") and head.count("\n") < 100
    fence = "```\n" + "x = 1\n" * 20_000 + "```"  # one block longer than the Markdown view takes
    assert split_for_markdown(fence, 100) == ("", fence, 0)
    assert split_for_markdown("# short\n\ntext", 100) == ("# short\n\ntext", "", 2)
    assert split_for_markdown("# short", 0) == ("", "# short", 0)  # no budget left: all plain text
    words = "word " * 10_000  # one paragraph longer than the part that is parsed
    assert split_for_markdown("# title\n\n" + words, 100) == ("# title\n", words, 2)


async def test_a_huge_answer_opens_with_a_bounded_markdown_part() -> None:
    link, rings, hist = build("results")
    tid = next(iter(link.state.tasks))
    huge = ("## Part\n\n- a point\n- another\n\n```python\nx = 1\n```\n\nSome text. " * 4000)[:MAX_TEXT]
    first = link.state.task_results(tid)[0]
    link.state.apply(first.model_copy(update={"job_id": "d-scene07-j9r", "text": huge, "ended_at": NOW}))
    app = SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        answers = list(screen.query(Answer))
        assert len(answers) == 3 and answers[-1].result.text == huge
        assert sum(a.cost for a in answers) <= MARKDOWN_BLOCKS and answers[-1].cost <= PER_ANSWER
        assert len(screen.query(MarkdownBlock)) < 3 * MARKDOWN_BLOCKS
        rest = answers[-1].query_one(".answer-rest", Static)
        assert answers[-1].head + "\n" + answers[-1].rest == huge.strip()
        assert str(rest.render()).startswith("## Part") or str(rest.render()).startswith("- ")
        answers[-1].focus()
        await pilot.press("y")
        assert app.clipboard == huge  # the whole answer, not the part shown as Markdown


# ---------------------------------------------------------------------------------------------- the CLI
async def _seed(cfg: Config, texts: list[str]) -> str:
    bus = await Bus(cfg).connect()
    tid = new_id("t")
    await bus.publish_event(Task(id=tid, text="Write a parser\nwith tests", created_at=NOW), msg_id=tid)
    for i, text in enumerate(texts):
        await bus.publish_event(
            Result(
                job_id=f"j-doc{i}",
                worker_id=f"w-doc{i}",
                decision_id="d-doc",
                task_id=tid,
                role=("research", "code")[i % 2],
                model="openrouter/qwen/qwen3-coder",
                step=i,
                state="done",
                text=text,
                usage=Usage(prompt_tokens=100 + i, completion_tokens=50 + i),
                cost_usd=0.0002,
                cost_estimated=i == 1,
                started_at=PAST + 1.0 + i,
                ended_at=PAST + 3.5 + i,
            )
        )
    await bus.close()
    return tid


HOSTILE_MD = "# Head\n\n- item \x1b]52;c;cm0gLXJmIH4=\x07 \x1b[2J \u202eevil\u202c \x9b31m\n"


async def test_result_format_md_to_stdout_and_to_a_file(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = make_config(tmp_path, nats_server.url)
    tid = await _seed(cfg, ["## Notes\n\n1. one\n2. two\n", "```python\nprint(1)\n```\n" + HOSTILE_MD])
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    out = run_cli(["result", tid[-8:], "--format", "md"], env)
    assert out.returncode == 0, out.stderr
    doc = out.stdout
    assert doc.startswith(f"# Task {tid}: Write a parser with tests\n")
    assert "> Write a parser\n> with tests" in doc
    first, second = doc.index("## 1. research · step 0 · openrouter/qwen/qwen3-coder"), doc.index("## 2. code · step 1")
    assert first < doc.index("1. one") < second < doc.index("```python\nprint(1)\n```")
    for fact in ("- **model:** openrouter/qwen/qwen3-coder", "- **role:** code", "- **tokens:** 101 in / 51 out"):
        assert fact in doc
    assert "- **cost:** $0.000200 (estimated)" in doc and "- **state:** done" in doc
    assert is_clean(doc) and "\x1b" not in doc and "\u202e" not in doc

    target = tmp_path / "out.md"
    wrote = run_cli(["result", tid, "--format", "md", "--out", str(target)], env)
    assert wrote.returncode == 0, wrote.stderr
    assert target.read_text() == doc and str(target) in wrote.stdout and "2 results" in wrote.stdout

    js = run_cli(["result", tid, "--format", "json", "--out", str(tmp_path / "r.json")], env)
    assert js.returncode == 0 and '"results"' in (tmp_path / "r.json").read_text()


async def test_result_out_to_a_bad_path_is_one_line(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    cfg = make_config(tmp_path, nats_server.url)
    tid = await _seed(cfg, ["ok"])
    env = base_env(tmp_path, SWARM_NATS_URL=nats_server.url)
    bad = run_cli(["result", tid, "--format", "md", "--out", str(tmp_path / "no" / "such" / "dir" / "x.md")], env)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("swarm-tui: error: cannot write ") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr and "No such file or directory" in bad.stderr
    clash = run_cli(["result", tid, "--json", "--format", "md"], env)
    assert clash.returncode == 2 and "disagree" in clash.stderr


def test_markdown_widgets_in_the_results_screen_are_all_safe() -> None:
    """Every Markdown widget the results screen builds is the safe one (no links, never opens a URL)."""
    import ast
    import inspect

    from swarm_tui.tui.screens import results as results_screen
    from swarm_tui.tui.widgets import answer

    for module in (results_screen, answer):  # the screen and its answers: every Markdown they make is safe
        tree = ast.parse(inspect.getsource(module))
        made = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert "Markdown" not in made and "MarkdownViewer" not in made and "SafeMarkdown" in made
    assert issubclass(SafeMarkdown, Markdown)

"""Compare and promote: two answers of a task side by side with a line diff, and a key that makes one of them
the task's answer (the "promote" control verb)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from textual.widgets import Static

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.states import ResultState
from swarm_tui.textsafe import is_clean
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.commands import PALETTE, help_rows
from swarm_tui.tui.compare_doc import compare, default_pair, step_answer
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.results_doc import results_markdown
from swarm_tui.tui.scenes import ANSWERS, COMPARED, NOW, build
from swarm_tui.tui.screens.compare import CompareScreen, DiffRows, Side
from swarm_tui.tui.widgets.answer import Answer
from tests.integration.test_documents import open_results
from tests.support.polling import until
from tests.support.tui import HOSTILE

SIZE = (160, 48)


# ------------------------------------------------------------------------------------------ the diff as data
def test_rows_are_aligned_and_tagged() -> None:
    c = compare("same\nold one\nold two\ngone\nend", "same\nnew one\nend\nadded")
    got = [(r.tag, r.left, r.right, r.left_no, r.right_no) for r in c.rows]
    assert got == [
        ("same", "same", "same", 1, 1),
        ("changed", "old one", "new one", 2, 2),  # a replaced block: paired line for line...
        ("left-only", "old two", None, 3, None),  # ...the shorter side padded with nothing
        ("left-only", "gone", None, 4, None),
        ("same", "end", "end", 5, 3),
        ("right-only", None, "added", None, 4),
    ]
    assert (c.same, c.only_a, c.only_b, c.lines_a, c.lines_b) == (2, 3, 2, 5, 4)
    assert c.summary() == "2 lines the same · 3 only in A · 2 only in B · 44% similar"
    changed = c.rows[1]
    assert changed.left_spans == ((0, 3),) and changed.right_spans == ((0, 3),)  # the word that differs


def test_summary_numbers_at_the_edges() -> None:
    same = compare("a\nb\n", "a\nb")
    assert (same.same, same.only_a, same.only_b, same.similarity) == (2, 0, 0, 100)
    assert {r.tag for r in same.rows} == {"same"}
    unlike = compare("x\ny", "p\nq\nr")
    assert unlike.similarity == 0 and (unlike.only_a, unlike.only_b) == (2, 3)
    assert compare("", "").summary().endswith("100% similar") and compare("", "").rows == []
    almost = compare("\n".join(map(str, range(300))), "\n".join(map(str, range(299))) + "\nx")
    assert almost.similarity == 99  # never "100%" unless the texts are the same


def test_hostile_text_is_made_inert() -> None:
    c = compare(f"intro\n{HOSTILE}\n", f"intro\n{HOSTILE} more\n\x1b]52;c;eA==\x07")
    text = "".join((r.left or "") + (r.right or "") for r in c.rows)
    assert is_clean(text) and "\x1b" not in text and "\u202e" not in text and "\x9b" not in text
    assert "[bold red]ALERT[/]" in text  # markup stays text
    out = Console(width=120, record=True, color_system=None)
    out.print(DiffRows(c.rows))
    shown = out.export_text()
    assert "\x1b" not in shown and "[bold red]ALERT[/]" in shown


def test_rows_are_capped_and_the_summary_says_so() -> None:
    a = "\n".join(f"a{i}" for i in range(30))
    b = "\n".join(f"b{i}" for i in range(30))
    c = compare(a, b, max_rows=10)
    assert len(c.rows) == 10 and c.total_rows == 30 and c.capped
    assert (c.only_a, c.only_b) == (30, 30)  # the numbers cover the whole texts, not the rows shown
    assert c.summary().endswith("showing the first 10 of 30 rows")
    assert not compare(a, b).capped


def _result(job: str, state: ResultState = "done", at: float = 0.0) -> Result:
    return Result(
        job_id=job, worker_id="w", decision_id="d", task_id="t", model="m", state=state, started_at=at, ended_at=at
    )


def test_default_pair_and_cycling() -> None:
    rs = [_result("j0"), _result("j1"), _result("j2", "failed"), _result("j3")]
    assert default_pair(rs) == (1, 3)  # the two newest done answers, older on the left
    assert default_pair(rs, promoted="j0") == (0, 3)  # the promoted one against the newest other
    assert default_pair(rs, promoted="j3") == (3, 2)
    assert default_pair([_result("j0"), _result("j1", "failed")]) == (0, 1)
    assert step_answer(1, 1, 4, other=2) == 3 and step_answer(3, 1, 4, other=0) == 1  # passes over the other
    assert step_answer(0, -1, 4, other=1) == 3
    assert step_answer(0, 1, 2, other=1) == 0  # nothing else to show


# ------------------------------------------------------------------------------------------ the screen
def compare_app(promoted: str = "d-scene07-j0r") -> SwarmApp:
    """The "compare" scene: answers 1 (research, promoted), 2 (failed), 3 (code), 4 (analysis)."""
    link, rings, hist = build("compare")
    tid = next(iter(link.state.tasks))
    link.state.tasks[tid].promoted = promoted
    return SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)


def controls(app: SwarmApp) -> list[tuple[str, dict[str, Any]]]:
    assert isinstance(app.link, StaticLink)
    return app.link.controls


async def open_compare(app: SwarmApp, pilot: Any) -> CompareScreen:
    """Compare as the palette opens it on the control room, for the Tasks table's task: the default pair. (On the
    results screen ``d`` compares the selected answer with its neighbour: test_tui_layout.py.)"""
    await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
    assert await app.run_action("compare", app.room)
    await until(lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, CompareScreen)
    return screen


def head(screen: CompareScreen, side: str) -> str:
    return str(screen.query_one(f"#head-{side}", Static).render())


def active(screen: CompareScreen) -> Side:
    """The active column, read afresh (a key moves it between two reads)."""
    return screen.active


def warnings(app: SwarmApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "warning"]


async def test_compare_opens_on_the_promoted_answer_against_the_newest() -> None:
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_compare(app, pilot)
        assert screen.answer("a")[0] == 1 and screen.answer("b")[0] == 4
        assert "A · answer 1 of 4 · research · done · ★ promoted" in head(screen, "a")
        assert "openrouter/google/gemini-2.5-flash-lite" in head(screen, "a") and "tokens 420 in / 180 out" in head(
            screen, "a"
        )
        assert "▶ B · answer 4 of 4 · analysis" in head(screen, "b") and "★" not in head(screen, "b")
        assert screen.comparison == compare(ANSWERS[0], COMPARED[1])
        summary = str(screen.query_one("#compare-summary", Static).render())
        assert summary == "5 lines the same · 4 only in A · 5 only in B · 53% similar"
        await pilot.press("escape")
        await until(lambda: app.screen is app.room, 5, "back on the control room")


async def test_columns_and_cycling_answers() -> None:
    app = compare_app(promoted="")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_compare(app, pilot)
        assert (screen.answer("a")[0], screen.answer("b")[0]) == (3, 4)  # the two newest done ones
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert screen.answer("b")[0] == 2  # B: 4 -> 3 is in A, so 2
        assert "failed" in head(screen, "b") and "429: rate limited" in head(screen, "b")
        await pilot.press("left")
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert active(screen) == "a" and screen.answer("a")[0] == 4 and "▶ A" in head(screen, "a")
        assert screen.comparison == compare(COMPARED[1], "")
        await pilot.press("tab")
        await pilot.pause()
        assert active(screen) == "b" and "▶ B" in head(screen, "b") and "▶" not in head(screen, "a")
        await pilot.press("right", "right_square_bracket")
        await pilot.pause()
        assert screen.answer("b")[0] == 3


async def test_promote_sends_the_active_answers_job_and_shows_the_star() -> None:
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_compare(app, pilot)
        await pilot.press("p")  # B, the active column: answer 4
        await until(lambda: controls(app) == [("promote", {"job": "d-scene07-j2r"})], 5, "the promote control")
        # the engine's promotion lands in the state a moment later: the ★ moves without a key
        app.link.state.tasks[screen.task_id].promoted = "d-scene07-j2r"
        await until(lambda: "★ promoted" in head(screen, "b"), 5, "the star on B")
        assert "★" not in head(screen, "a")
        await pilot.press("p")  # already the task's answer: nothing more is sent
        await pilot.pause()
        assert len(controls(app)) == 1


async def test_promoting_a_failed_answer_is_refused_and_sends_nothing() -> None:
    app = compare_app(promoted="")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_compare(app, pilot)
        await pilot.press("left_square_bracket")  # B: answer 2, the failed one
        await pilot.pause()
        assert screen.answer("b")[1].state == "failed"
        await pilot.press("p")
        await pilot.pause()
        assert controls(app) == []
        assert any("answer 2 is failed: only a done answer" in w for w in warnings(app))


async def test_promote_from_the_results_screen_and_the_star_in_the_answer() -> None:
    app = compare_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        answers = list(screen.query(Answer))
        assert [a.promoted for a in answers] == [True, False, False, False]
        assert str(answers[0].query_one(".answer-meta").render()).startswith("★ promoted  1. research")
        answers[3].focus()
        await pilot.press("p")  # the newest answer, focused
        await until(lambda: controls(app) == [("promote", {"job": "d-scene07-j2r"})], 5, "the promote control")
        app.link.state.tasks[screen.task_id].promoted = "d-scene07-j2r"
        await until(lambda: answers[3].promoted and not answers[0].promoted, 5, "the star moved")
        assert "★ promoted" in str(answers[3].query_one(".answer-meta").render())


async def test_a_task_with_one_answer_has_nothing_to_compare() -> None:
    link, rings, hist = build("budget")  # three tasks with one answer each
    app = SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen
        assert f"task {screen.task_id} has one answer: nothing to compare" in warnings(app)


async def test_palette_actions_on_the_main_screen() -> None:
    assert {"compare", "promote"} <= {a for _t, _b, a in PALETTE}
    rows = {ident: key for key, _desc, ident in help_rows({})}
    assert rows["compare"] == "d" and rows["promote"] == "p"
    app = compare_app(promoted="")
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        assert await app.run_action("promote", app.room)  # the selected task's newest done answer
        await until(lambda: controls(app) == [("promote", {"job": "d-scene07-j2r"})], 5, "the promote control")
        assert await app.run_action("compare", app.room)
        await until(lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        await pilot.pause()


async def test_remapped_keys_show_in_the_hints() -> None:
    link, rings, hist = build("compare")
    link.cfg.keys.update({"promote": "P", "compare": "c"})
    app = SwarmApp(link, clock=lambda: NOW, deterministic=True, rings=rings, ram_history=hist)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_results(app, pilot)
        hint = str(screen.query("Label").last().render())
        assert "c compare" in hint and "P promote" in hint
        await pilot.press("c")
        await until(lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        await pilot.pause()
        assert "P promote its answer" in str(app.screen.query_one("#compare-hint", Static).render())


def test_the_document_marks_the_promoted_answer_in_place() -> None:
    link, _rings, _hist = build("compare")
    tid = next(iter(link.state.tasks))
    doc = results_markdown(link.state, tid) or ""
    assert "## 1. research · step 0 · openrouter/google/gemini-2.5-flash-lite · ★ promoted (the task's answer)" in doc
    assert doc.count("★ promoted") == 1 and doc.index("## 1.") < doc.index("## 2.") < doc.index("## 4.")

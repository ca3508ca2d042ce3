"""Hostile model text in the Markdown results view: nothing in an answer drives the terminal, no link of any
kind becomes clickable, nothing opens a URL or runs an app action, and the copied answer is inert."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from textual.widgets._markdown import MarkdownBlock

from swarm_tui.engine.bus.wire import Approval, Result, Task
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.textsafe import is_clean
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import StaticLink
from swarm_tui.tui.scenes import NOW, base_info, scene_config
from swarm_tui.tui.screens.results import ResultsScreen
from swarm_tui.tui.widgets.safe_markdown import SafeMarkdown, safe_parser
from tests.support.polling import until
from tests.support.tui import HOSTILE

LINKS = (
    "[click me](http://evil.example/a) and <http://evil.example/b> and https://evil.example/c and "
    "![img](http://evil.example/d.png) and [ref][r] and <a href='http://evil.example/e'>html</a> "
    "and [act](javascript:app.quit()) and [bell](#x '\x1b]0;pwned-title\x07')\n\n"
    "[r]: http://evil.example/f\n\n| a | b |\n|---|---|\n| [cell](http://evil.example/g) | x |\n"
)
ANSWER = f"# Heading {HOSTILE}\n\n- item {HOSTILE}\n\n```{HOSTILE}\ncode {HOSTILE}\n```\n\n{LINKS}"


def _app() -> SwarmApp:
    state = SwarmState(session_start=NOW - 600, clock=lambda: NOW)
    state.apply(Task(id="t-evil", text=HOSTILE, created_at=NOW - 60, demo=True))
    from swarm_tui.tui.scenes import _decision

    d = _decision(state, "d-evil", ["t-evil"], 1, 50)
    state.apply(Approval(decision_id=d.id, action="approved", by="tui", at=NOW - 45))
    state.apply(
        Result(
            job_id="d-evil-j0",
            worker_id="d-evil-w0",
            decision_id=d.id,
            task_id="t-evil",
            role="research\x1b[31m",
            model="openrouter/x/y",
            state="done",
            text=ANSWER,
            reason="",
            started_at=NOW - 40,
            ended_at=NOW - 30,
        )
    )
    link = StaticLink(scene_config(), state, base_info(), demo=True)
    return SwarmApp(link, clock=lambda: NOW, deterministic=True)


def _clickable(block: MarkdownBlock) -> list[Any]:
    content = getattr(block, "_content", None)
    spans = getattr(content, "spans", []) or []
    return [s for s in spans if "@click" in (getattr(s.style, "meta", None) or {}) or "link(" in str(s.style)]


def test_the_safe_parser_has_no_links_where_the_default_one_has() -> None:
    kinds = {t.type for tok in MarkdownIt("gfm-like").parse(LINKS) for t in (tok.children or [])}
    assert {"link_open", "image"} <= kinds  # what Textual's own parser would make clickable
    safe = {t.type for tok in safe_parser().parse(LINKS) for t in (tok.children or [])}
    assert not safe & {"link_open", "image", "html_inline"}
    assert not any(tok.type == "html_block" for tok in safe_parser().parse(LINKS))


async def test_hostile_answer_in_the_markdown_view_is_inert_and_links_are_text() -> None:
    app = _app()
    opened: list[str] = []
    app.open_url = lambda url, **kw: opened.append(url)  # type: ignore[method-assign]
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.ready and app.focused is app.room.decision_table, 5, "the room")
        app.room.task_table.focus()
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, ResultsScreen), 5, "the results screen")
        await pilot.pause()
        screen = app.screen
        blocks = list(screen.query(MarkdownBlock))
        assert len(blocks) > 5
        assert not [b for b in blocks if _clickable(b)]  # no @click span anywhere, tables included
        texts = [str(getattr(b, "_content", "")) for b in blocks]
        assert all(is_clean(t) for t in texts)
        assert any("[click me](http://evil.example/a)" in t for t in texts)  # shown as the text it is
        # a LinkClicked that reached a results Markdown (a second line of defence) opens nothing
        md = screen.query(SafeMarkdown).last()
        await blocks[-1].action_link("http://evil.example/z")
        await pilot.pause()
        assert opened == [] and md.query_ancestor(ResultsScreen) is screen
        # the screen as drawn: no escape, no bidi override, no title set
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\u202e" not in svg and "\x9b" not in svg
        assert "pwned" not in svg.split("</style>")[0]
        # the copied answer is the stored one, made inert
        await pilot.press("y")
        assert app.clipboard and is_clean(app.clipboard) and "\x1b" not in app.clipboard
        assert "[click me](http://evil.example/a)" in app.clipboard
        # the saved document is inert too
        assert is_clean(screen.document) and "\u202e" not in screen.document
        assert app.is_running

"""What a new user sees first, at 120x36 against an in-process engine on a real nats-server: tables that use
their width, a header that says what it knows about the conductor, card status lines with their spaces."""

from __future__ import annotations

import time
from typing import cast

from rich.console import Console
from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.wire import Decision, PlanItem, Task, WorkerEvent
from swarm_tui.engine.engine import Engine
from swarm_tui.engine.info import ConductorInfo, SpendInfo
from swarm_tui.tui.model import OutputRing
from swarm_tui.tui.widgets.header_bar import HeaderBar, conductor_source
from swarm_tui.tui.widgets.worker_card import WorkerCard
from tests.support.polling import until
from tests.support.tui import make_app, started

FIRST_LOOK = (120, 36)
LONG_TEXT = "Write a short explanation of how asyncio event loops schedule coroutines, with an example and caveats"


async def seed(bus: Bus, n_tasks: int = 3, prefix: str = "") -> None:
    now = time.time()
    for i in range(n_tasks):  # ids as long as the real ones
        task = Task(id=f"t-{prefix}mx2lnv5j-3c7{i}", text=f"{LONG_TEXT} {i}", created_at=now - 30 * i)
        await bus.publish_event(task, msg_id=task.id)
    if prefix:
        return
    plan = [
        PlanItem(
            task_id="t-mx2lnv5j-3c70", role="research", model="openrouter/google/gemini-2.5-flash-lite", max_tokens=100
        )
        for _ in range(2)
    ]
    d = Decision(
        id="d-mx2lnwqg-4dd8",
        task_ids=["t-mx2lnv5j-3c70"],
        plan=plan,
        est_cost_min=0.0002,
        est_cost_max=0.0004,
        source="rules",
        created_at=now,
        expires_at=now + 900,
    )
    await bus.publish_event(d, msg_id=d.id)


def cells(table: DataTable[object], row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


async def test_tables_use_their_width_and_show_the_cost_whole(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await started(app, pilot)
        await seed(observer)
        ttable = app.query_one("#tasks", DataTable)
        dtable = app.query_one("#decisions", DataTable)
        await until(lambda: ttable.row_count == 3 and dtable.row_count == 1)
        for _ in range(3):  # ages tick, rows are re-synced: widths must stay within the table
            app.refresh_state()
            await pilot.pause(0.4)
        for table in (ttable, dtable):
            assert_fits(table)
        text = cells(ttable, 0)[4]
        assert text.endswith("…") and len(text) == room(ttable, 4), text  # the text fills what is there
        assert cells(dtable, 0)[3] == "≤$0.0004"  # the cost whole, never cut
        assert cells(dtable, 0)[2].endswith("…") and len(cells(dtable, 0)[2]) == room(dtable, 2)
        # more tasks than rows: a scrollbar appears, the text gives it its cells, nothing scrolls sideways
        wide = ttable.scrollable_content_region.width
        await seed(observer, 14, prefix="more-")
        await until(lambda: ttable.row_count == 17)
        for _ in range(2):
            app.refresh_state()
            await pilot.pause(0.3)
        assert ttable.show_vertical_scrollbar  # the scrollbar is there, in the gutter the columns left it
        assert ttable.scrollable_content_region.width == wide
        assert_fits(ttable)
        assert len(cells(ttable, 0)[4]) == room(ttable, 4)


def assert_fits(table: DataTable[object]) -> None:
    used = sum(c.get_render_width(table) for c in table.ordered_columns)
    assert used <= table.scrollable_content_region.width, (table.id, used, table.size)
    assert table.max_scroll_x == 0


def room(table: DataTable[object], flex: int) -> int:
    """What the other columns leave to the cut one (less a scrollbar when one is shown, and its padding)."""
    others = sum(c.get_render_width(table) for i, c in enumerate(table.ordered_columns) if i != flex)
    return table.scrollable_content_region.width - others - 2


async def test_table_text_follows_the_terminal_wider_and_narrower(engine: Engine, observer: Bus) -> None:
    app = make_app(engine)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await started(app, pilot)
        await seed(observer, 2)
        ttable = app.query_one("#tasks", DataTable)
        await until(lambda: ttable.row_count == 2)
        await pilot.pause()
        narrow = len(cells(ttable, 0)[4])
        for size, wider in (((160, 40), True), (FIRST_LOOK, False)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            app.refresh_state()
            await pilot.pause(0.3)
            now = len(cells(ttable, 0)[4])
            assert (now > narrow) if wider else (now == narrow), (size, now, narrow)
            assert now == room(ttable, 4)
            assert_fits(ttable)  # narrower again: the text column shrank, nothing scrolls sideways


def _conductor(**over: object) -> ConductorInfo:
    info: ConductorInfo = {
        "source": "ollama:gemma2:2b",
        "state": "idle",
        "ollama_model": "gemma2:2b",
        "ollama_reachable": None,
        "ollama_error": "",
        "ollama_warning": "",
        "next_beat_s": 28.0,
        "last_decision": "",
        "beats": 0,
        "decisions": 0,
        "approval": "manual",
        "last_trigger": "",
        "note": "",
        "envelope": {},
        "followups": 0,
        "review": "",
    }
    info.update(over)  # type: ignore[typeddict-item]
    return info


def test_the_header_says_what_is_known_of_the_conductor() -> None:
    # before the first beat nothing is checked; once Ollama did not answer, the rules decide
    assert conductor_source(_conductor()) == "ollama:gemma2:2b (not checked yet)"
    assert conductor_source(_conductor(source="rules", ollama_reachable=False)) == "rules (Ollama unreachable)"
    assert conductor_source(_conductor(ollama_reachable=True)) == "ollama:gemma2:2b"
    assert conductor_source(_conductor(source="rules", ollama_model=None)) == "rules"
    assert conductor_source(None) == "-"


async def test_the_header_in_the_app_before_and_after_the_first_check(engine: Engine) -> None:
    app = make_app(engine)
    async with app.run_test(size=FIRST_LOOK) as pilot:
        await started(app, pilot)
        header = app.query_one("#header", HeaderBar)
        for cond, want, not_want in (
            (_conductor(), "ollama:gemma2:2b (not checked yet)", "rules"),
            (_conductor(source="rules", ollama_reachable=False), "rules (Ollama unreachable)", "ollama:"),
        ):
            # a key that was checked: a missing one comes first in the header (tests/integration/test_tui_states.py)
            app.room.info = {**app.info, "conductor": cond, "spend": cast(SpendInfo, {"key_status": "ok"})}
            app.room.show_header()
            await pilot.pause()
            line = header.line.plain
            assert want in line and not_want not in line, line
            assert "conductor " in line and "approval manual" in line and "scale" in line, line  # long words
            assert header.line.cell_len <= header.content_size.width


class _WideCard(WorkerCard):
    @property
    def content_size(self) -> Size:
        return Size(200, 5)


def test_a_card_status_line_has_its_spaces_in_every_styled_run() -> None:
    ev = WorkerEvent(
        worker_id="d-x-w0",
        job_id="d-x-j0",
        decision_id="d-x",
        task_id="t-x",
        model="openrouter/google/gemini-2.5-flash-lite",
        role="research",
        state="retrying",
        reason="rate limited",
        tokens=40,
        at=time.time(),
    )
    card = _WideCard("d-x-w0", OutputRing(), ev, "a task")
    head = card.render().renderables[0]
    assert isinstance(head, Text)  # the status line: a Group holds whatever it is given
    assert head.plain == "retrying 40 tok $0.0000 google/gemini-2.5-flash-lite research"
    assert card.render().renderables[1].plain == "rate limited"  # type: ignore[union-attr]  # why: its own line
    # a styled run that starts with a space loses it in an SVG drawn by librsvg ("running40 tok"): every
    # run after the first starts with a visible character
    console = Console(width=200, color_system="truecolor", record=True)
    segments = list(head.render(console))
    starts = [s.text[0] for s in segments[1:] if s.text]
    assert starts and all(not c.isspace() for c in starts), [s.text for s in segments]

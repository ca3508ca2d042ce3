"""The key bar: what Textual's Footer showed, drawn by one widget; a bindings change repaints, never remounts."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from swarm_tui.tui.widgets.key_bar import KeyBar


class Saver(Static, can_focus=True):
    BINDINGS = [Binding("s", "save", "Save")]

    def action_save(self) -> None:
        pass


class KeysApp(App[None]):
    AUTO_FOCUS = None
    BINDINGS = [
        Binding("a", "approve", "Approve", tooltip="approve it"),
        Binding("r", "reject", "Reject"),
        Binding("x", "hidden", "Hidden", show=False),
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.done: list[str] = []
        self.reject_ok = True
        self.bells = 0

    def compose(self) -> ComposeResult:
        yield Saver("a focusable widget with its own key", id="box")
        yield KeyBar()

    def action_approve(self) -> None:
        self.done.append("approve")

    def action_help(self) -> None:
        self.done.append("help")

    def action_reject(self) -> None:
        self.done.append("reject")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reject" and not self.reject_ok:
            return None  # shown, dimmed
        return True

    def bell(self) -> None:
        self.bells += 1


def line(app: KeysApp) -> str:
    return app.query_one(KeyBar).render().plain


async def test_the_shown_keys_in_the_footers_layout_with_the_palette_docked_right() -> None:
    app = KeysApp()
    async with app.run_test(size=(80, 5)) as pilot:
        await pilot.pause()
        text = line(app)
        assert text.startswith(" a Approve  r Reject  q Quit ")
        assert "Hidden" not in text
        assert text.endswith("▏^p palette ") and len(text) == 80
        bar = app.query_one(KeyBar)
        assert not bar.children  # one widget, whatever the number of keys
        bar.compact = True
        await pilot.pause()
        assert line(app).startswith("a Approve r Reject q Quit ") and line(app).endswith("▏^p palette")


async def test_a_narrow_bar_shows_whole_keys_only_and_keeps_the_help_key() -> None:
    app = KeysApp()
    async with app.run_test(size=(40, 5)) as pilot:
        await pilot.pause()
        text = line(app)  # room for 28 cells: " ? Help " is kept (8), then what fits in order (" r Reject " not)
        assert text == " a Approve  ? Help " + " " * (40 - 19 - 12) + "▏^p palette "
        assert "Quit" not in text and "Reject" not in text
    app = KeysApp()
    async with app.run_test(size=(30, 5)) as pilot:
        await pilot.pause()
        assert line(app) == " ? Help " + " " * (30 - 8 - 12) + "▏^p palette "  # " a Approve " would be cut
        await pilot.click(KeyBar, offset=(2, 0))
        await pilot.pause()
        assert app.done == ["help"]


async def test_a_click_presses_the_key_and_a_disabled_key_rings_the_bell() -> None:
    app = KeysApp()
    async with app.run_test(size=(80, 5)) as pilot:
        await pilot.pause()
        await pilot.click(KeyBar, offset=(3, 0))  # on "Approve"
        await pilot.pause()
        assert app.done == ["approve"]
        app.reject_ok = False
        app.refresh_bindings()
        await pilot.pause()
        assert app.query_one(KeyBar).render().spans  # still drawn, styled
        await pilot.click(KeyBar, offset=(14, 0))  # on "Reject", now disabled
        await pilot.pause()
        assert app.done == ["approve"] and app.bells == 1
        await pilot.hover(KeyBar, offset=(3, 0))
        await pilot.pause()
        assert app.query_one(KeyBar).tooltip == "approve it"


async def test_a_disabled_key_is_dimmed() -> None:
    app = KeysApp()
    async with app.run_test(size=(80, 5)) as pilot:
        await pilot.pause()
        app.reject_ok = False
        app.refresh_bindings()
        await pilot.pause()
        rendered = app.query_one(KeyBar).render()
        at = rendered.plain.index("Reject")
        dims = [s for s in rendered.spans if s.start <= at < s.end and getattr(s.style, "dim", False)]
        assert dims
        at = rendered.plain.index("Approve")
        assert not [s for s in rendered.spans if s.start <= at < s.end and getattr(s.style, "dim", False)]


async def test_a_focus_move_repaints_the_bar_without_mounting_anything() -> None:
    app = KeysApp()
    async with app.run_test(size=(80, 5)) as pilot:
        await pilot.pause()
        nodes = len(list(app.screen.walk_children()))
        assert "Save" not in line(app)
        app.query_one("#box").focus()
        await pilot.pause()
        assert " s Save " in line(app)
        app.screen.set_focus(None)
        await pilot.pause()
        assert "Save" not in line(app) and line(app).startswith(" a Approve")
        assert len(list(app.screen.walk_children())) == nodes

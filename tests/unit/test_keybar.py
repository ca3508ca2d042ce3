"""The key bar: what Textual's Footer showed, drawn by one widget; a bindings change repaints, never remounts."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from swarm_tui.tui.keybar import KeyBar


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


async def test_a_narrow_bar_shows_whole_keys_only() -> None:
    app = KeysApp()
    async with app.run_test(size=(30, 5)) as pilot:
        await pilot.pause()
        text = line(app)
        assert text == " a Approve " + " " * (30 - 11 - 12) + "▏^p palette "  # " r Reject " would be cut
        assert len(text) == 30


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

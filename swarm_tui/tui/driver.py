"""Every reach into Textual's private names, in one place, pinned to one minor series of Textual and checked
by ``tests/unit/test_textual_compat.py`` (an upgrade that moves one of them fails there, not on a screen):

- ``SafeLinuxDriver``: Textual's Linux driver, made to notice when its terminal goes away (below);
- ``write_raw``: bytes straight to the terminal (the bell, OSC 9/777), past the screen;
- ``CrashSafeApp``: a crash's traceback without local variables (they could hold a key), and frames that write
  only the cells that changed (``screen_cells.py``: Textual repaints whole regions);
- ``safe_markdown_table``: a Markdown table whose cells' tooltips are plain text.

The Linux driver, made to notice when its terminal goes away (pty closed, ssh dropped).

Textual 8.2's ``LinuxDriver`` does not: on EOF its input thread keeps selecting a readable, empty stdin (a busy
loop, ~80-100% of a core), and its output thread dies on the first ``EIO``, after which the 31st write blocks
the event loop for good, so even SIGTERM's clean stop never runs (only ``kill -9`` ended it). Here:

- output goes through ``_GuardedFile``: the first ``OSError`` marks the terminal lost and every later write is
  dropped, so the writer thread lives on and nothing ever blocks on its queue;
- the input thread stops at EOF or ``EIO`` on a terminal and reports the loss;
- a loss calls ``app.terminal_lost()`` once, on the event loop: the same clean stop as SIGTERM (engine stop,
  bus drain, embedded nats-server stopped).

And it does not poll: Textual's input thread wakes every 0.1 s to check its exit flag and the parser's escape
timeout (10 wake-ups a second of an idle app, ~0.1-0.3 % of a core with the GIL hand-over). Here the thread
sleeps in ``select`` until input arrives, the parser's own timeout (a lone ESC) is due, or the exit flag is set
(setting it writes a byte to a pipe the thread also watches).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
import sys
import threading
from codecs import getincrementaldecoder
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.segment import Segments
from textual._compositor import ChopsUpdate, CompositorUpdate, LayoutUpdate
from textual._parser import ParseError, Parser
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.app import App, ComposeResult, ReturnType
from textual.binding import Binding
from textual.content import Content
from textual.drivers.linux_driver import LinuxDriver
from textual.screen import Screen

from swarm_tui.tui.screen_cells import ScreenCells

if TYPE_CHECKING:  # Markdown: ~50 ms of imports, loaded with the results screen, not at start
    from textual.widgets.markdown import MarkdownBlock

log = logging.getLogger(__name__)


class _GuardedFile:
    """A text file whose write/flush never raise: an OSError (EIO, EPIPE) reports the loss and mutes it."""

    def __init__(self, file: IO[str], on_lost: Any) -> None:
        self._file = file
        self._on_lost = on_lost
        self.lost = False

    def write(self, text: str) -> int:
        if self.lost:
            return len(text)
        try:
            return self._file.write(text)
        except (OSError, ValueError):
            self._lose()
            return len(text)

    def flush(self) -> None:
        if self.lost:
            return
        try:
            self._file.flush()
        except (OSError, ValueError):
            self._lose()

    def _lose(self) -> None:
        self.lost = True
        self._on_lost("output")

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class _WakingEvent(threading.Event):
    """The input thread's exit flag: setting it also wakes the thread's ``select`` (a byte on a pipe)."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self.wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"x")


POLL_S = 0.1  # Textual's select timeout: kept only where the parser's pending timeout cannot be read


def select_timeout(parser: Parser[Any]) -> float | None:
    """How long the input thread may sleep: until the parser's pending timeout (a lone ESC waiting to become
    the escape key), else until input or the exit flag (None)."""
    if not hasattr(parser, "_timeout_time"):  # another Textual: its polling interval
        return POLL_S
    due = parser._timeout_time
    return None if due is None else max(0.0, due - get_time())


class SafeLinuxDriver(LinuxDriver):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._lost_once = threading.Lock()
        self._lost = False
        if self._file is not None:
            self._file = _GuardedFile(self._file, self._terminal_lost)  # type: ignore[assignment]
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already wakes the thread: never block the setter
        self.exit_event = _WakingEvent(self._wake_w)

    def _terminal_lost(self, where: str) -> None:
        with self._lost_once:
            if self._lost:
                return
            self._lost = True
        if isinstance(self._file, _GuardedFile):
            self._file.lost = True  # mute the output too: nobody reads it any more
        log.warning("the terminal went away (%s): stopping", where)
        callback = getattr(self._app, "terminal_lost", None)
        if callback is not None:  # self._loop: the app's loop (Textual's Driver sets it)
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing left to stop
                self._loop.call_soon_threadsafe(callback)

    def start_application_mode(self) -> None:
        """Textual's, at start and on return from a suspend: what the terminal showed before is gone."""
        super().start_application_mode()  # type: ignore[no-untyped-call]
        cells = getattr(self._app, "screen_cells", None)
        if isinstance(cells, ScreenCells):
            cells.forget()

    def run_input_thread(self) -> None:
        """Textual's input loop, except that EOF or EIO on a terminal ends it and reports the loss."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        is_tty = os.isatty(self.fileno)
        try:
            while not self.exit_event.is_set():
                for key, mask in selector.select(select_timeout(parser)):
                    if key.fd == self._wake_r:  # the exit flag was set (the loop's test ends the thread)
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 512)
                        continue
                    if not mask & selectors.EVENT_READ:
                        continue
                    try:
                        data = os.read(self.fileno, 4096)
                    except OSError:
                        data = b""
                    if not data:  # EOF: a closed pty (or piped stdin at its end)
                        if is_tty:
                            self._terminal_lost("input")
                        return
                    for event in parser.feed(decode(data)):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
        finally:
            selector.close()
            with contextlib.suppress(EOFError, ParseError):
                for _ in parser.feed(""):
                    pass

    def close(self) -> None:
        """Textual's close (the writer thread), then the wake pipe (the input thread was joined before)."""
        super().close()
        if isinstance(self.exit_event, _WakingEvent):
            self.exit_event.wake_fd = -1  # a later set() must not write to a number the OS hands out again
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1


# --------------------------------------------------------------------------------------------- the App
def write_raw(app: App[Any], seq: str) -> bool:
    """Write ``seq`` to the terminal as it is, past the screen (the bell, a desktop notification). Whether it
    went out: never in a headless run (the tests), nor before the driver exists."""
    driver = app._driver
    if driver is None or app.is_headless:
        return False
    driver.write(seq)
    return True


def crash_traceback(console: Console) -> Segments:
    """The current exception's traceback WITHOUT local variables (they could hold a key), rendered."""
    import rich
    from rich.traceback import Traceback

    log.error("the app crashed", exc_info=sys.exc_info())
    tb = Traceback(show_locals=False, width=None, suppress=[rich])
    return Segments(console.render(tb, console.options))


class CrashSafeApp(App[ReturnType]):
    """An App whose crash shows a traceback without local variables, and logs it.

    Textual's own shows every frame's locals, and a frame of a request or a config holds a key."""

    # ctrl+l, as in a shell or vi: the terminal's content went out of step (a stray write, a glitch over ssh), and
    # since a frame writes only what changed, nothing else would ever put it right
    BINDINGS = [Binding("ctrl+l", "redraw", "Redraw", show=False)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.screen_cells = ScreenCells()  # what the terminal shows: a frame writes only what changed

    def action_redraw(self) -> None:
        """Write the whole screen again: forget what the terminal shows, then lay the screen out anew."""
        self.screen_cells.forget()
        self.screen.refresh(layout=True)

    def _fatal_error(self) -> None:
        tb = crash_traceback(self.console)
        self.bell()
        self._exit_renderables.append(tb)
        self._close_messages_no_wait()

    def _display(self, screen: Screen[Any], renderable: Any) -> None:
        """Textual's, with its frames passed through ``screen_cells`` (not inline: that driver moves the cursor
        relatively). A frame Textual holds back (a batch, a headless run) is never rendered: nothing of it is
        remembered."""
        if isinstance(renderable, ChopsUpdate | LayoutUpdate) and not self.is_inline:
            renderable = _OnlyChanged(renderable, self.screen_cells)
        super()._display(screen, renderable)


class _OnlyChanged(CompositorUpdate):
    """A compositor's update (a full frame or a partial one) as ``screen_cells`` lets it through: only where it
    differs from what is on screen."""

    def __init__(self, update: ChopsUpdate | LayoutUpdate, cells: ScreenCells) -> None:
        self.update = update
        self.cells = cells

    def __rich_console__(self, console: Any, options: Any) -> Any:
        return self.update.__rich_console__(console, options)

    def render_segments(self, console: Console) -> str:
        if isinstance(self.update, ChopsUpdate):
            return self.cells.frame(self.update.render_segments(console), self.cells.size)
        # Textual writes a full frame a line at a time; here each line goes as its runs, the pieces a partial
        # frame is made of, so that frames find each other's runs
        region, runs = self.update.region, []
        for y, line in enumerate(self.update.strips, region.y + 1):
            x = region.x + 1
            for strip in line:
                runs.append(f"\x1b[{y};{x}H{strip.render(console)}")
                x += strip.cell_length
        return self.cells.frame("".join(runs), (region.width, region.height))


# --------------------------------------------------------------------------------------------- Markdown
@functools.cache
def safe_markdown_table() -> type[MarkdownBlock]:
    """A Markdown table whose cells have their text as a ``Content`` tooltip: Textual gives each cell its text
    as a str, and a str tooltip is parsed as markup. Textual has no public table block to subclass, so the
    class is made on first use (with the results screen's Markdown, not at start)."""
    from textual.widgets._markdown import MarkdownTable, MarkdownTableContent

    class SafeTableContent(MarkdownTableContent):
        def compose(self) -> ComposeResult:
            for cell in super().compose():  # Textual's cells, their str tooltips made plain Content
                if isinstance(cell.tooltip, str):
                    cell.tooltip = Content(cell.tooltip)
                yield cell

    class SafeTable(MarkdownTable):
        def compose(self) -> ComposeResult:
            self._headers, self._rows = self._get_headers_and_rows()
            yield SafeTableContent(self._headers, self._rows)

    return SafeTable

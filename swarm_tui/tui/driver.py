"""Textual's Linux driver, made to notice when its terminal goes away (pty closed, ssh dropped).

Textual 8.2's ``LinuxDriver`` does not: on EOF its input thread keeps selecting a readable, empty stdin (a busy
loop, ~80-100% of a core), and its output thread dies on the first ``EIO``, after which the 31st write blocks
the event loop for good, so even SIGTERM's clean stop never runs (only ``kill -9`` ended it). Here:

- output goes through ``_GuardedFile``: the first ``OSError`` marks the terminal lost and every later write is
  dropped, so the writer thread lives on and nothing ever blocks on its queue;
- the input thread stops at EOF or ``EIO`` on a terminal and reports the loss;
- a loss calls ``app.terminal_lost()`` once, on the event loop: the same clean stop as SIGTERM (engine stop,
  bus drain, embedded nats-server stopped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
from codecs import getincrementaldecoder
from typing import IO, Any

from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

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


class SafeLinuxDriver(LinuxDriver):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._lost_once = threading.Lock()
        self._lost = False
        if self._file is not None:
            self._file = _GuardedFile(self._file, self._terminal_lost)  # type: ignore[assignment]

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

    def run_input_thread(self) -> None:
        """Textual's input loop, except that EOF or EIO on a terminal ends it and reports the loss."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        is_tty = os.isatty(self.fileno)
        try:
            while not self.exit_event.is_set():
                for _key, mask in selector.select(0.1):
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

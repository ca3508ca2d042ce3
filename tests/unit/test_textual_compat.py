"""Every private name of Textual that ``tui/driver.py`` uses exists on the installed Textual.

driver.py is the one module that reaches into Textual's privates (``tests/unit`` and the measuring scripts
check that no other does). Textual may move a private name in any release: then this test fails, naming it,
instead of a screen that crashes, a crash traceback that shows a key, or a driver that spins on a closed pty.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from textual.app import App
from textual.drivers.linux_driver import LinuxDriver

from swarm_tui.tui import driver

DRIVER = Path(driver.__file__)
TEXTUAL_SERIES = "8.2."  # pyproject pins textual>=8.2,<8.3: a new minor series is checked here first


def _classes() -> dict[str, type]:
    from textual._xterm_parser import XTermParser
    from textual.widgets._markdown import MarkdownTable, MarkdownTableContent

    return {
        "LinuxDriver": LinuxDriver,
        "App": App,
        "MarkdownTable": MarkdownTable,
        "MarkdownTableContent": MarkdownTableContent,
        "XTermParser": XTermParser,
    }


# The private attributes and methods driver.py uses, by the Textual class they belong to.
TEXTUAL_PRIVATES: dict[str, tuple[str, ...]] = {
    "LinuxDriver": ("_file", "_app", "_loop", "_debug"),
    "App": ("_driver", "_exit_renderables", "_fatal_error", "_close_messages_no_wait", "_display"),
    "MarkdownTable": ("_headers", "_rows", "_get_headers_and_rows"),
    "XTermParser": ("_timeout_time",),
}
# The private modules driver.py imports from, and what it takes from each.
TEXTUAL_PRIVATE_IMPORTS: dict[str, tuple[str, ...]] = {
    "textual._compositor": ("ChopsUpdate", "CompositorUpdate", "LayoutUpdate"),
    "textual._parser": ("ParseError", "Parser"),
    "textual._time": ("get_time",),
    "textual._xterm_parser": ("XTermParser",),
    "textual.widgets._markdown": ("MarkdownTable", "MarkdownTableContent"),
}
# Private names of driver.py's own (its classes' state): they must not be Textual's too, or a subclass would
# overwrite what Textual keeps there.
OWN_PRIVATES = {"_on_lost", "_lose", "_lost", "_lost_once", "_terminal_lost", "_wake_r", "_wake_w"}


def _textual_sets(cls: type, name: str) -> bool:
    """Whether a Textual class (or one of its Textual bases) has ``name``: as a class attribute, or assigned to
    ``self`` in its source."""
    if hasattr(cls, name):
        return True
    assigned = re.compile(rf"self\.{re.escape(name)}\b\s*(:[^=\n]*)?=[^=]")
    for k in cls.__mro__:
        if not k.__module__.startswith("textual"):
            continue
        if assigned.search(inspect.getsource(k)):
            return True
    return False


def _used_in_driver() -> tuple[set[str], dict[str, set[str]]]:
    """(every private attribute name driver.py reads or writes, the private modules it imports and names)."""
    tree = ast.parse(DRIVER.read_text())
    names: set[str] = set()
    imports: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("textual"):
            if any(part.startswith("_") for part in node.module.split(".")):
                imports.setdefault(node.module, set()).update(a.name for a in node.names)
    return names, imports


def test_the_installed_textual_is_the_pinned_series() -> None:
    assert version("textual").startswith(TEXTUAL_SERIES), version("textual")


@pytest.mark.parametrize(
    ("owner", "name"), [(owner, name) for owner, names in TEXTUAL_PRIVATES.items() for name in names]
)
def test_every_private_name_driver_uses_exists(owner: str, name: str) -> None:
    assert _textual_sets(_classes()[owner], name), f"Textual's {owner} has no {name} any more"


@pytest.mark.parametrize("module", sorted(TEXTUAL_PRIVATE_IMPORTS))
def test_every_private_module_driver_imports_has_what_it_takes(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in TEXTUAL_PRIVATE_IMPORTS[module] if not hasattr(mod, n)]
    assert not missing, f"{module} has no {missing}"


def test_the_lists_here_are_what_driver_uses() -> None:
    """A private name added to driver.py is listed above (and so checked), or is one of its own."""
    names, imports = _used_in_driver()
    listed = {n for ns in TEXTUAL_PRIVATES.values() for n in ns}
    assert names - listed - OWN_PRIVATES == set()
    assert imports == {m: set(ns) for m, ns in TEXTUAL_PRIVATE_IMPORTS.items()}


def test_the_drivers_own_names_are_not_textuals() -> None:
    clashes = [n for n in OWN_PRIVATES if _textual_sets(LinuxDriver, n)]
    assert clashes == []


def test_the_overridden_methods_are_still_textuals() -> None:
    """SafeLinuxDriver replaces the input thread's loop and CrashSafeApp the crash handler: both must still be
    what Textual calls."""
    assert "run_input_thread" in vars(LinuxDriver)
    assert "self.run_input_thread" in inspect.getsource(LinuxDriver)
    assert "self._fatal_error()" in inspect.getsource(App)


def test_every_frame_still_goes_through_display_as_the_updates_driver_reads() -> None:
    """CrashSafeApp passes every frame through ``screen_cells`` in ``App._display``: the screens still send
    their frames there, and the updates still carry what driver.py reads of them (a partial frame's text, a full
    frame's region and its lines of strips)."""
    from textual._compositor import ChopsUpdate, LayoutUpdate
    from textual.screen import Screen

    assert "app._display(" in inspect.getsource(Screen)
    assert "isinstance(renderable, CompositorUpdate)" in inspect.getsource(App._display)
    assert "render_segments" in vars(ChopsUpdate)
    layout = inspect.getsource(LayoutUpdate)
    assert "self.strips = strips" in layout and "self.region = region" in layout

"""The config file's ``[keys]`` table: binding id -> key, checked at load time like every other section.

An unknown id, a key two actions would share on one screen, or a key the app keeps for itself is a
``ConfigError`` naming it, so a typo (``approv``) or a clash (``approve = "r"`` while reject keeps ``r``) is
not silently lost. The ids and their default keys are the app's bindings (``tui/commands.py``; the engine
imports no Textual, so they are listed here and ``tests/unit/test_cli_keys.py`` checks that the two agree).
A value is one key or several separated by commas, in Textual's names (``ctrl+k``, ``plus``, ``question_mark``;
one character such as ``+`` or ``?`` stands for its name).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from swarm_tui.engine.errors import ConfigError

# The control room's bindings (id -> default key) and the results and compare screens' own.
ROOM_KEYS: Final[dict[str, str]] = {
    "approve": "a",
    "reject": "r",
    "edit": "e",
    "scale_up": "plus",
    "scale_down": "minus",
    "cancel": "c",
    "cancel_all": "C",
    "pause": "p",
    "new_task": "n",
    "expand": "enter",
    "attention": "exclamation_mark",
    "timeline": "t",
    "filter": "slash",
    "history": "h",
    "spend": "dollar_sign",
    "help": "question_mark",
    "quit": "q",
    "tab_decisions": "1",
    "tab_workers": "2",
    "tab_tasks": "3",
    "tab_guards": "4",
}
RESULTS_KEYS: Final[dict[str, str]] = {"copy_answer": "y", "save_results": "s", "compare": "d", "promote": "p"}
KEY_IDS: Final[tuple[str, ...]] = (*ROOM_KEYS, *RESULTS_KEYS)

# Keys with a fixed meaning that [keys] cannot take: everywhere (Textual's and the palette's), and on the results
# and compare screens (their fixed bindings in tui/screens/results.py and compare.py).
RESERVED: Final[dict[str, str]] = {
    "ctrl+p": "the command palette",
    "ctrl+q": "quitting at once",
    "ctrl+c": "copying the selected text",
    "ctrl+l": "redrawing the screen",
    "tab": "moving to the next panel",
    "shift+tab": "moving to the previous panel",
    "escape": "closing a dialog or clearing the filter",
    # the focused table (a DataTable) answers these itself before any screen binding sees them
    **dict.fromkeys(
        ("up", "down", "left", "right", "home", "end", "pageup", "pagedown", "ctrl+home", "ctrl+end"),
        "moving in the tables",
    ),
}
RESULTS_RESERVED: Final[dict[str, str]] = {
    **RESERVED,
    "q": "closing the results",
    "enter": "closing the results",
    "left": "the compare view's left column",
    "right": "the compare view's right column",
    "left_square_bracket": "the compare view's previous answer",
    "right_square_bracket": "the compare view's next answer",
}
# Textual's names for the keys that are not one character (textual.keys.Keys, without modifiers), and the
# modifiers it reports, in the order and case it reports them: lower case ("Ctrl+K" never matches) and sorted
# (its _xterm_parser sorts them; a binding is looked up by the exact string, so "ctrl+alt+up" never fires).
NAMED_KEYS: Final[frozenset[str]] = frozenset(
    ("up", "down", "left", "right", "home", "end", "pageup", "pagedown", "insert", "delete", "backspace")
    + ("enter", "escape", "tab", "space", *(f"f{n}" for n in range(1, 25)))
)
MODIFIERS: Final[tuple[str, ...]] = ("alt", "ctrl", "hyper", "meta", "shift", "super")
_NAMES = {"solidus": "slash", "reverse_solidus": "backslash", "commercial_at": "at", "hyphen_minus": "minus"}
_NAMES |= {"plus_sign": "plus", "low_line": "underscore"}


def key_name(key: str) -> str:
    """The key as Textual names it: one character other than a letter or digit by its Unicode name (``?`` is
    ``question_mark``), as Textual does for a binding (textual.keys._character_to_key)."""
    key = key.strip()
    if len(key) == 1 and not key.isalnum():
        try:
            name = unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
        except ValueError:
            return key
        return _NAMES.get(name, name)
    return key


def shown(key: str) -> str:
    """A key as an error line may print it: as given when it is plain printable text, else its repr (a value
    from the config file may hold an escape sequence that would retitle or clear the terminal)."""
    key = key.strip()
    return key if key.isprintable() and key.isascii() and len(key) <= 40 else repr(key[:40])


def textual_can_match(key: str) -> bool:
    """Whether Textual can ever report ``key``: modifiers in lower case and in its order (``MODIFIERS``), and a
    known key name, a character's Unicode name (``question_mark``) or one printable character; a lone character
    may be any case (``C``)."""
    if len(key) == 1:
        return key.isprintable() and not key.isspace()
    *mods, last = key.split("+")
    if not all(m in MODIFIERS for m in mods) or mods != _in_order(mods) or len(set(mods)) != len(mods) or not last:
        return False
    if len(last) == 1:  # after a modifier Textual names a letter or digit in lower case, other characters by name
        return last.isascii() and (last.islower() or last.isdigit())
    if last in NAMED_KEYS or last in _NAMES.values():
        return True
    if len(last) > 40 or not last.isascii() or not all(c.islower() or c.isdigit() or c == "_" for c in last):
        return False
    try:
        char = unicodedata.lookup(last.replace("_", " "))
    except KeyError:
        return False
    return key_name(char) == last  # "question_mark" is "?"; "plus_sign" or "latin_small_letter_a" never arrive


def _in_order(mods: list[str]) -> list[str]:
    return sorted(mods, key=lambda m: MODIFIERS.index(m) if m in MODIFIERS else len(MODIFIERS))


def _order_hint(keys: list[str]) -> str:
    """How to write the first key whose only fault is its modifiers' order ("ctrl+alt+up": alt+ctrl+up), or ""."""
    for k in keys:
        *mods, last = k.split("+")
        fixed = "+".join([*_in_order(mods), last])
        if mods and fixed != k and textual_can_match(fixed):
            return f"; write {shown(k)} as {fixed} (Textual orders modifiers {', '.join(MODIFIERS)})"
    return ""


def parse_keys(raw: Any, where: str) -> dict[str, str]:
    """The ``[keys]`` table as given (binding id -> key), after checking it; raises ``ConfigError``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f'bad value for keys in {where}: expected action = "key" pairs')
    for ident, value in raw.items():
        if ident not in KEY_IDS:
            raise ConfigError(f"unknown key keys.{ident} in {where}: [keys] allows {', '.join(KEY_IDS)}")
        keys = [k.strip() for k in value.split(",")]
        if not all(keys) or not all(textual_can_match(k) for k in keys):
            raise ConfigError(
                f"bad value {value[:40]!r} for keys.{ident} in {where}: expected a key as Textual names it "
                "(a, C, ctrl+k, f5, question_mark; modifiers in lower case), or several separated by commas"
                + _order_hint(keys)
            )
    _check_screen(ROOM_KEYS, RESERVED, raw, where)
    _check_screen(RESULTS_KEYS, RESULTS_RESERVED, raw, where)
    return dict(raw)


def _check_screen(defaults: Mapping[str, str], reserved: Mapping[str, str], raw: Mapping[str, str], where: str) -> None:
    """On one screen: no key taken by two actions (a remapped one or one left at its default), none reserved."""
    owner: dict[str, str] = {}
    for ident, default in defaults.items():
        remapped = ident in raw
        for key in (raw[ident] if remapped else default).split(","):
            name = key_name(key)
            if remapped and name in reserved:
                raise ConfigError(
                    f"bad value {raw[ident][:40]!r} for keys.{ident} in {where}: {shown(key)} is kept for "
                    f"{reserved[name]}; choose another key"
                )
            other = owner.get(name)
            if other is not None:
                either = ident if remapped else other
                raise ConfigError(
                    f"key {shown(key)} is bound twice in {where}: {_said(other, raw)} and {_said(ident, raw)}; "
                    f"give keys.{either} another key"
                )
            owner[name] = ident


def _said(ident: str, raw: Mapping[str, str]) -> str:
    return f"keys.{ident}" if ident in raw else f"{ident} (its default)"

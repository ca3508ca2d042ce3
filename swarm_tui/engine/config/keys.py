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
    "filter": "slash",
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
    "tab": "moving to the next panel",
    "shift+tab": "moving to the previous panel",
    "escape": "closing a dialog or clearing the filter",
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
        if not all(keys) or any(" " in k for k in keys):
            raise ConfigError(
                f"bad value {value!r} for keys.{ident} in {where}: expected a key (a, ctrl+k, f5), or several "
                "separated by commas"
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
                    f"bad value {raw[ident]!r} for keys.{ident} in {where}: {key.strip()} is kept for "
                    f"{reserved[name]}; choose another key"
                )
            other = owner.get(name)
            if other is not None:
                either = ident if remapped else other
                raise ConfigError(
                    f"key {key.strip()} is bound twice in {where}: {_said(other, raw)} and {_said(ident, raw)}; "
                    f"give keys.{either} another key"
                )
            owner[name] = ident


def _said(ident: str, raw: Mapping[str, str]) -> str:
    return f"keys.{ident}" if ident in raw else f"{ident} (its default)"

"""Make text from a model, a task or the bus inert for a terminal.

Control characters (C0 except newline and tab, DEL, C1 such as the 8-bit CSI U+009B) and bidi overrides are
replaced by visible stand-ins, so no text can move the cursor, restyle, set the clipboard (OSC 52), retitle
the window or clear the screen. Markup is never interpreted: callers render the result as plain ``Text``.
"""

from __future__ import annotations

import re

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_TABLE = {c: 0x2400 + c for c in range(0x20) if c not in (0x0A, 0x09)}  # U+2400.. control pictures
_TABLE[0x7F] = 0x2421
_TABLE.update({c: 0xFFFD for c in range(0x80, 0xA0)})
_TABLE.update({ord(c): 0xFFFD for c in _BIDI})
_TABLE_NO_NL = dict(_TABLE)
_TABLE_NO_NL[0x0A] = 0x20
_TABLE_NO_NL[0x09] = 0x20
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "]")


def plain(text: str, *, keep_newlines: bool = False) -> str:
    """The text with every control or bidi character replaced by a visible, harmless stand-in."""
    if not _UNSAFE.search(text) and (keep_newlines or "\n" not in text and "\t" not in text):
        return text
    return text.translate(_TABLE if keep_newlines else _TABLE_NO_NL)


def is_clean(text: str) -> bool:
    return _UNSAFE.search(text) is None

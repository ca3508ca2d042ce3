"""Text fitted to a message by the bytes it takes on the wire, not by its characters.

NATS bounds a message by bytes (``max_payload``, 1 MiB by default) and readers refuse an event over
``wire.MAX_MSG_BYTES``; a character bound says little about bytes: a 4-byte character takes 4 bytes in JSON,
a control character 6 (``\\u0001``). ``fit_text`` keeps the longest prefix of a text, cut at a character
boundary, whose JSON string (as the wire models write it) fits a byte budget, and says where it cut.
"""

from __future__ import annotations

import pydantic_core


def json_len(text: str) -> int:
    """The bytes ``text`` takes as a JSON string value, quotes excluded."""
    return len(pydantic_core.to_json(text)) - 2


def cut_note(cut: int) -> str:
    return f"\n[... {cut} characters cut: the text was over the message size limit]"


def fit_text(text: str, max_bytes: int, max_chars: int) -> str:
    """``text`` whole when it fits both budgets, else its longest fitting prefix followed by ``cut_note``."""
    if len(text) <= max_chars and json_len(text) <= max_bytes:
        return text
    note = cut_note(len(text))  # its longest form: the count it will show is at most this long
    room_bytes, room_chars = max_bytes - json_len(note), max_chars - len(note)
    if room_bytes <= 0 or room_chars <= 0:
        return ""
    lo, hi = 0, min(len(text), room_chars)  # the longest prefix that fits lies in [lo, hi]
    if json_len(text[:hi]) <= room_bytes:
        lo = hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_len(text[:mid]) <= room_bytes:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + cut_note(len(text) - lo)

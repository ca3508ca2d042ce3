"""Make text from a model, a task or the bus inert for a terminal, a clipboard and a file.

Control characters (C0 except newline and tab, DEL, C1 such as the 8-bit CSI U+009B) and bidi overrides are
replaced by visible stand-ins, so no text can move the cursor, restyle, set the clipboard (OSC 52), retitle
the window or clear the screen. Markup is never interpreted: callers render the result as plain ``Text``.

Characters that show nothing are replaced by U+FFFD (�) too, on screen, in copies and in exports alike: every
format character (Unicode category Cf: zero-width space, joiners, word joiner, BOM, soft hyphen, the tag
characters U+E0000..U+E007F that can spell a whole hidden sentence) and the other default-ignorable code points
(variation selectors, Hangul fillers, ...). A hidden instruction in an answer is then seen, not copied along
unseen into a prompt or a file. The one exception is a single emoji or text presentation selector (VS16
U+FE0F, VS15 U+FE0E) after a character: it only chooses how that character is drawn (❤️); a second one in a
row carries nothing visible and is replaced. And a zero-width joiner between two emoji stays: it draws them as one
(👩‍💻, ❤️‍🔥), and one bit between two visible pictures hides nothing worth a reader's while.
"""

from __future__ import annotations

import re

STAND_IN = "\ufffd"
# Unicode's format characters (Cf) and Default_Ignorable_Code_Point, as ranges (a scan of unicodedata at import
# would cost ~0.2 s of start-up; a test holds this list to this Python's unicodedata). U+FE0E/U+FE0F are left
# out: see the module's note.
INVISIBLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0D),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_PRESENTATION = "\ufe0e\ufe0f"
_TABLE = {c: 0x2400 + c for c in range(0x20) if c not in (0x0A, 0x09)}  # U+2400.. control pictures
_TABLE[0x7F] = 0x2421
_TABLE.update({c: 0xFFFD for c in range(0x80, 0xA0)})
_TABLE.update({c: 0xFFFD for lo, hi in INVISIBLE for c in range(lo, hi + 1)})
_TABLE_NO_NL = dict(_TABLE)
_TABLE_NO_NL[0x0A] = 0x20
_TABLE_NO_NL[0x09] = 0x20
# What decides whether anything needs replacing, in two speeds. ASCII text (most model output; a str knows it is
# ASCII without a scan) is searched for C0 and DEL only, and translated when one is there. Other text is searched
# with a class that is quick to test (the rare astral ranges, U+110BD..U+1D17A, as one span), then only what the
# exact class matches is replaced: translating a whole non-ASCII text costs ~75 ns a character.
_C0 = "\\x00-\\x08\\x0b-\\x1f\\x7f"
_BMP = "".join(f"{chr(lo)}-{chr(hi)}" if hi > lo else chr(lo) for lo, hi in INVISIBLE if hi <= 0xFFFF)
_ASTRAL = "".join(f"{chr(lo)}-{chr(hi)}" if hi > lo else chr(lo) for lo, hi in INVISIBLE if lo > 0xFFFF)
_QUICK = f"\\x80-\\x9f{_BMP}\U000110bd-\U0001d17a\U000e0000-\U000e0fff"
_EXACT = f"\\x80-\\x9f{_BMP}{_ASTRAL}".replace("\u200b-\u200f", "\u200b\u200c\u200e\u200f")
# a zero-width joiner is replaced unless it joins two emoji (after a picture, a skin tone or VS16, before a picture)
_EMOJI = "\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
_LONE_ZWJ = re.compile(f"(?<![{_EMOJI}\ufe0f])\u200d|\u200d(?![{_EMOJI}])")
_ASCII_KEEP_NL = re.compile(f"[{_C0}]")
_ASCII = re.compile(f"[{_C0}\\n\\t]")
_QUICK_KEEP_NL = re.compile(f"[{_C0}{_QUICK}]")
_QUICK_ANY = re.compile(f"[{_C0}\\n\\t{_QUICK}]")
_EXACT_KEEP_NL = re.compile(f"[{_C0}{_EXACT}]+")
_EXACT_ANY = re.compile(f"[{_C0}\\n\\t{_EXACT}]+")
_REPEATED_PRESENTATION = re.compile(f"(?<=[{_PRESENTATION}])[{_PRESENTATION}]+")


def plain(text: str, *, keep_newlines: bool = False) -> str:
    """The text with every control, bidi or invisible character replaced by a visible, harmless stand-in."""
    if text.isascii():
        if (_ASCII_KEEP_NL if keep_newlines else _ASCII).search(text) is None:
            return text
        return text.translate(_TABLE if keep_newlines else _TABLE_NO_NL)
    if (_QUICK_KEEP_NL if keep_newlines else _QUICK_ANY).search(text) is not None:
        table = _TABLE if keep_newlines else _TABLE_NO_NL
        text = (_EXACT_KEEP_NL if keep_newlines else _EXACT_ANY).sub(lambda m: m.group().translate(table), text)
        if "\u200d" in text:
            text = _LONE_ZWJ.sub(STAND_IN, text)
    if ("\ufe0f" in text or "\ufe0e" in text) and (
        "\ufe0f\ufe0f" in text or "\ufe0e\ufe0e" in text or "\ufe0e\ufe0f" in text or "\ufe0f\ufe0e" in text
    ):
        text = _REPEATED_PRESENTATION.sub(lambda m: STAND_IN * len(m.group()), text)
    return text


def is_clean(text: str) -> bool:
    """Whether ``plain`` would leave the text as it is (newlines and tabs allowed)."""
    return plain(text, keep_newlines=True) == text

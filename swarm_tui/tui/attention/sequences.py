"""The terminal side of the needs-you alerts: the bytes of a bell and a desktop notification, and whether tmux
lets the notification through. No Textual here; the App writes what ``alert_sequence`` returns.

- The bell is BEL (0x07). tmux handles it itself (a bell flag on the window, and the outer terminal's bell per
  ``bell-action``), so it is never wrapped.
- A desktop notification is sent twice, as OSC 9 (``ESC ] 9 ; text BEL``: iTerm2, WezTerm, kitty, Windows
  Terminal, foot, Ghostty) and OSC 777 (``ESC ] 777 ; notify ; title ; text BEL``: VTE terminals such as GNOME
  Terminal and Tilix, urxvt with its notify extension, foot, WezTerm). A terminal ignores the one it does not
  know: unknown OSC strings are consumed and dropped (ECMA-48's control-string syntax).
- Inside tmux an OSC never reaches the outer terminal unless wrapped in tmux's DCS passthrough
  (``ESC P tmux ; <sequence with every ESC doubled> ESC \\``), and tmux 3.3+ drops even that unless
  ``allow-passthrough`` is on. So: wrapped when it is on, not sent at all when it is off (the bell still rings).

The text comes from the engine's words about the need, which can quote a provider's error: it is made plain and
every control character, ``;`` and the ESC/BEL/ST that end an OSC are removed, so nothing in it can end the
sequence early and drive the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess

from swarm_tui.engine.info import Need
from swarm_tui.textsafe import plain

BEL = "\x07"
TITLE = "swarm-tui"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f;]")
MAX_TEXT = 160

_tmux_allowed: bool | None = None


def notification_text(need: Need) -> str:
    """One line for a notification: plain, no control character or ``;``, at most MAX_TEXT characters."""
    text = _UNSAFE.sub(" ", plain(str(need.get("what", "")))).strip()
    text = re.sub(r" {2,}", " ", text)
    return text[:MAX_TEXT] or str(need.get("kind", "attention"))


def osc_notifications(text: str) -> str:
    return f"\x1b]9;{TITLE}: {text}{BEL}\x1b]777;notify;{TITLE};{text}{BEL}"


def tmux_wrap(seq: str) -> str:
    """tmux's passthrough: the sequence inside a DCS, its ESCs doubled."""
    return "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"


def in_tmux(env: dict[str, str] | None = None) -> bool:
    return bool((env if env is not None else os.environ).get("TMUX"))


def tmux_passthrough_allowed() -> bool:
    """Whether this tmux passes DCS passthrough on (``allow-passthrough`` on or all; asked once, 1 s at most).

    tmux before 3.3 has no such option and passes it through always; ``show-options`` then fails, and an
    unknown answer counts as not allowed: a notification that may be swallowed is not worth a stray sequence."""
    global _tmux_allowed
    if _tmux_allowed is None:
        try:
            out = subprocess.run(
                ["tmux", "show-options", "-gv", "allow-passthrough"],
                capture_output=True,
                text=True,
                timeout=1.0,
                check=False,
            )
            _tmux_allowed = out.returncode == 0 and out.stdout.strip() in ("on", "all")
        except (OSError, subprocess.SubprocessError):
            _tmux_allowed = False
    return _tmux_allowed


def tmux_passthrough_known() -> bool:
    """What ``tmux_passthrough_allowed`` found, without asking (False until it has been asked)."""
    return bool(_tmux_allowed)


def alert_sequence(
    need: Need,
    *,
    bell: bool,
    desktop: bool,
    tmux: bool,
    passthrough: bool,
) -> str:
    """What to write for one need: the bell, then the notifications (wrapped for tmux when it lets them by)."""
    out = BEL if bell else ""
    if desktop:
        seq = osc_notifications(notification_text(need))
        if not tmux:
            out += seq
        elif passthrough:
            out += tmux_wrap(seq)
    return out

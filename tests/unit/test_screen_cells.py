"""A frame writes only the runs that changed (``tui/screen_cells.py``): Textual repaints whole regions, and over
ssh each repaint of the same cells is bytes on the link."""

from __future__ import annotations

import random
import re

from swarm_tui.tui.screen_cells import ScreenCells

SIZE = (120, 36)
BOLD, DIM, BLUE, RESET = "\x1b[1m", "\x1b[2m", "\x1b[48;5;17m", "\x1b[0m"


def header(countdown: int) -> str:
    # as Textual renders a line: every segment styled (its colours), then reset
    return f"\x1b[1;1H{BOLD} DEMO {RESET}{BLUE} bus connected {RESET}{DIM}next beat {countdown}s{RESET}"


def frame(*runs: str) -> str:
    return "\n".join(runs)


def test_a_frame_the_screen_already_shows_writes_nothing() -> None:
    cells = ScreenCells()
    first = frame(header(30), f"\x1b[2;1H{BOLD}Tasks{RESET}", "\x1b[3;1Hno live workers")
    assert cells.frame(first, SIZE) == first.replace("\n", "")  # the first frame goes out whole
    again = frame(header(30), f"\x1b[2;1H{BOLD}Tasks{RESET}", "\x1b[3;1Hno live workers", "\x1b[2;5H")
    assert cells.frame(again, SIZE) == "\x1b[2;5H"  # only the cursor's place at the end
    assert cells.dropped > 0


def test_a_changed_segment_goes_out_alone_at_its_place() -> None:
    cells = ScreenCells()
    cells.frame(header(30), SIZE)
    out = cells.frame(header(20), SIZE)
    # " DEMO " (6) + " bus connected " (15): the countdown's segment starts at column 22
    assert out == f"\x1b[1;22H{DIM}next beat 20s{RESET}"


def test_a_run_another_run_wrote_over_is_written_again() -> None:
    cells = ScreenCells()
    line = "\x1b[5;1Habcdefghij"
    cells.frame(line, SIZE)
    assert cells.frame("\x1b[5;4HXYZ", SIZE) == "\x1b[5;4HXYZ"
    assert cells.frame(line, SIZE) == line  # its cells 4-6 show XYZ now: not dropped


def test_a_new_size_or_a_new_screen_mode_writes_everything_again() -> None:
    cells = ScreenCells()
    line = "\x1b[5;1Habcdefghij"
    cells.frame(line, SIZE)
    assert cells.frame(line, (100, 30)) == line
    cells.forget()
    assert cells.frame(line, (100, 30)) == line


def test_wide_characters_take_their_cells() -> None:
    cells = ScreenCells()
    cells.frame("\x1b[1;1H界界", SIZE)  # 4 cells: columns 1-4
    cells.frame("\x1b[1;5Hzz", SIZE)  # beside it, not over it
    assert cells.frame("\x1b[1;1H界界", SIZE) == ""


def _apply(grid: dict[tuple[int, int], tuple[str, str]], out: str) -> None:
    """A small terminal: absolute moves, SGR (reset or set) and one-cell characters."""
    y = x = 1
    style = ""
    for token in re.findall(r"\x1b\[(\d+);(\d+)H|(\x1b\[[0-9;]*m)|(.)", out, flags=re.S):
        if token[0]:
            y, x = int(token[0]), int(token[1])
        elif token[2]:
            style = "" if token[2] == RESET else token[2]
        elif token[3] != "\n":
            grid[(y, x)] = (style, token[3])
            x += 1


def test_what_it_lets_through_leaves_the_terminal_as_the_whole_frames_would() -> None:
    """Random frames of runs (overlapping, of other lengths, repeated, restyled) on a small screen: a terminal
    fed only what ScreenCells lets through shows, after every frame, what one fed every frame whole shows."""
    rnd = random.Random(25)
    cells = ScreenCells()
    whole: dict[tuple[int, int], tuple[str, str]] = {}
    diffed: dict[tuple[int, int], tuple[str, str]] = {}
    for _ in range(400):
        runs = []
        for _ in range(rnd.randint(1, 6)):
            y, x = rnd.randint(1, 4), rnd.choice((1, 3, 5, 8))
            segs = [rnd.choice((BOLD, DIM, BLUE)) + rnd.choice(("ab", "a", "abc", "b")) + RESET for _ in range(3)]
            runs.append(f"\x1b[{y};{x}H" + "".join(segs[: rnd.randint(1, 3)]))
        text = "\n".join(runs)
        _apply(whole, text)
        _apply(diffed, cells.frame(text, SIZE))
        assert diffed == whole
    assert cells.dropped > 0

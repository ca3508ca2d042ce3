"""The config file's [keys] table is checked like every other section: an unknown id, a key two actions share on
one screen, or a key the app keeps for itself is one clear line and exit 2; a good remap loads as given."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding

from swarm_tui.engine.config.keys import RESERVED, RESULTS_KEYS, ROOM_KEYS, key_name
from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.errors import ConfigError
from swarm_tui.tui.commands import RESULTS_BINDINGS, ROOM_BINDINGS
from tests.support.env import base_env, run_cli


def _load(tmp_path: Path, body: str) -> dict[str, str]:
    p = tmp_path / "c.toml"
    p.write_text("[keys]\n" + body)
    return load_config(p, base_env(tmp_path)).keys


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ('approve = "a"\nreject = "a"\n', ["key a is bound twice", "keys.approve", "keys.reject"]),
        ('approve = "r"\n', ["key r is bound twice", "keys.approve", "reject (its default)"]),
        ('help = "!"\n', ["bound twice", "attention (its default)", "keys.help"]),
        ('approv = "x"\n', ["unknown key keys.approv", "[keys] allows approve, reject"]),
        ('approve = "ctrl+p"\n', ["keys.approve", "ctrl+p is kept for the command palette"]),
        ('copy_answer = "q"\n', ["keys.copy_answer", "q is kept for closing the results"]),
        ('cancel = "tab"\n', ["keys.cancel", "tab is kept for"]),
        ('pause = ""\n', ["keys.pause", "expected a key"]),
        ("pause = 3\n", ['expected action = "key" pairs']),
    ],
)
def test_a_bad_keys_table_is_one_clear_line_and_exit_2(tmp_path: Path, body: str, needles: list[str]) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[keys]\n" + body)
    with pytest.raises(ConfigError) as err:
        load_config(p, base_env(tmp_path))
    for needle in needles:
        assert needle in str(err.value), str(err.value)
    assert str(p) in str(err.value)
    res = run_cli(["--config", str(p), "config"], base_env(tmp_path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


def test_good_remaps_load_as_given(tmp_path: Path) -> None:
    # a key left free by a remap may be taken; the same key on two screens (pause and promote: p) is no clash
    body = 'approve = "y"\ncancel_all = "ctrl+k"\nreject = "a,x"\npromote = "p"\ncompare = "r"\n'
    assert _load(tmp_path, body) == {
        "approve": "y",
        "cancel_all": "ctrl+k",
        "reject": "a,x",
        "promote": "p",
        "compare": "r",
    }


def test_the_ids_and_defaults_are_the_apps_bindings() -> None:
    """The engine lists the app's keys without importing Textual: the two lists must agree."""
    for ours, bindings in ((ROOM_KEYS, ROOM_BINDINGS), (RESULTS_KEYS, RESULTS_BINDINGS)):
        theirs = {b.id: b.key for b in bindings if isinstance(b, Binding) and b.id}
        assert ours == theirs
    assert key_name("?") == "question_mark" and key_name("+") == "plus" and key_name("/") == "slash"
    assert not set(RESERVED) & {key_name(k) for k in ROOM_KEYS.values()}


def test_the_key_names_the_loader_accepts_are_textuals() -> None:
    """The loader accepts a name only where Textual reports one (the engine imports no Textual: a list)."""
    from textual.keys import Keys, _character_to_key

    from swarm_tui.engine.config.keys import NAMED_KEYS, textual_can_match

    assert NAMED_KEYS <= {k.value for k in Keys}
    for char in "?!/+-@_[]":
        assert textual_can_match(_character_to_key(char)), char
    for bad in ("Ctrl+K", "ctrl+", "plus_sign", "latin_small_letter_a", "\u200b", "\x1b[2J", "ctrl+ctrl+a"):
        assert not textual_can_match(bad), bad

"""The typed config sections and OPTIONS cannot drift apart, and every way of making a Config fills them."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from swarm_tui.engine.config.load import Config, load_config
from swarm_tui.engine.config.options import OPTIONS
from swarm_tui.engine.config.sections import SECTION_TYPES


def _declared() -> dict[str, object]:
    """Every section field as "section.name" -> its annotated type."""
    out: dict[str, object] = {}
    for cls in SECTION_TYPES:
        hints = typing.get_type_hints(cls)
        for name in cls.fields:
            out[f"{cls.name}.{name}"] = hints[name]
    return out


def test_sections_and_options_name_the_same_keys_with_the_same_types() -> None:
    """A Literal field is its values' type in OPTIONS, and the option's check lets exactly its values through."""
    declared = _declared()
    for o in OPTIONS:
        hint = declared[o.key]
        if typing.get_origin(hint) is typing.Literal:
            values = typing.get_args(hint)
            assert o.check is not None and all(o.check(v) for v in values) and not o.check("?"), o.key
            declared[o.key] = type(values[0])
        elif typing.get_origin(hint) is tuple:  # a list of numbers (budget.alerts): read into a tuple
            declared[o.key] = tuple
    assert declared == {o.key: o.type for o in OPTIONS}


def test_section_fields_restate_no_default() -> None:
    """OPTIONS is the one place a default lives: a default on a section field would be a second one."""
    for cls in SECTION_TYPES:
        assert cls.fields, cls
        for name in cls.fields:
            assert name not in vars(cls), (cls, name)  # a class attribute of a field's name would be a default


def test_every_section_is_an_attribute_of_config_with_its_own_type() -> None:
    cfg = load_config(None, {})
    assert len({cls.name for cls in SECTION_TYPES}) == len(SECTION_TYPES)
    for cls in SECTION_TYPES:
        assert type(getattr(cfg, cls.name)) is cls
    # and the attribute's declared type is that class, so mypy sees e.g. cfg.swarm.scale as an int
    hints = typing.get_type_hints(Config)
    assert {name: t for name, t in hints.items() if t in SECTION_TYPES} == {c.name: c for c in SECTION_TYPES}


def test_sections_hold_the_loaded_values(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[swarm]\nscale = 4\n[ollama]\ntimeout_s = 7\n[approval]\nmode = "auto"\n')
    cfg = load_config(p, {"SWARM_BUDGET_USD": "2.5", "SWARM_NATS_PROBE_DEFAULT": "no"})
    assert cfg.swarm.scale == 4 and type(cfg.swarm.scale) is int
    assert cfg.ollama.timeout_s == 7.0 and type(cfg.ollama.timeout_s) is float  # a TOML int read as a float
    assert cfg.approval.mode == "auto"
    assert cfg.budget.daily_usd == 2.5  # the environment
    assert cfg.nats.probe_default is False
    assert cfg.swarm.max_scale == 50  # a default, from OPTIONS
    for o in OPTIONS:
        section, name = o.key.split(".")
        assert getattr(getattr(cfg, section), name) == cfg.values[o.key]


def test_replace_rebuilds_the_sections_and_leaves_the_original_alone() -> None:
    cfg = load_config(None, {})
    new = cfg.replace(swarm__scale=3, ollama__timeout_s=120, paths__data_dir="/x")
    assert new.swarm.scale == 3 and new.values["swarm.scale"] == 3
    assert new.ollama.timeout_s == 120.0 and type(new.ollama.timeout_s) is float
    assert new.paths.data_dir == "/x"
    assert cfg.swarm.scale == 10 and cfg.ollama.timeout_s == 60.0 and cfg.paths.data_dir == ""
    assert new.roles == cfg.roles and new.roles is not cfg.roles


@pytest.mark.parametrize(
    "changes",
    [{"swarm__scal": 3}, {"swarm__scale": "3"}, {"swarm__scale": 3.0}, {"swarm__scale": True}, {"ollama__model": 2}],
)
def test_replace_refuses_an_unknown_key_or_a_wrong_type(changes: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        load_config(None, {}).replace(**changes)


def test_sections_are_frozen_and_hide_secrets() -> None:
    cfg = load_config(None, {"OPENROUTER_API_KEY": "sk-or-v1-SECRET123", "SWARM_NATS_TOKEN": "tok-SECRET456"})
    assert cfg.openrouter.api_key == "sk-or-v1-SECRET123"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.swarm.scale = 5  # type: ignore[misc]
    shown = repr(cfg.openrouter) + repr(cfg.nats)
    assert "SECRET" not in shown and "api_key='(set)'" in shown and "password='(not set)'" in shown


def test_a_section_is_built_from_exactly_its_fields_and_compares_by_value() -> None:
    from swarm_tui.engine.config.sections import UiSection, build_section

    cfg = load_config(None, {})
    assert build_section(UiSection, cfg.values) == cfg.ui and hash(build_section(UiSection, cfg.values)) == hash(cfg.ui)
    values = {k: getattr(cfg.ui, k) for k in UiSection.fields}
    with pytest.raises(TypeError, match="missing or unknown"):
        UiSection(**values, extra=1)  # type: ignore[call-arg]  # the unknown field is what is tested
    values.pop(UiSection.fields[0])
    with pytest.raises(TypeError, match="missing or unknown"):
        UiSection(**values)

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_tui.engine.config.load import load_config
from swarm_tui.engine.errors import ConfigError
from tests.support.env import base_env, run_cli


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[budget]\ndaily_usd = -3\n", "budget.daily_usd"),
        ('[approval]\nmode = "sometimes"\n', "approval.mode"),
        ('[swarm]\nscale = "ten"\n', "swarm.scale"),
        ("[swarm]\nscale = 60\nmax_scale = 50\n", "swarm.scale"),
        ("[budget]\nceiling = 3\n", "budget.ceiling"),
        ("[nonsense]\nx = 1\n", "[nonsense]"),
        ('[openrouter]\napi_base = "http://x/v2"\n', "openrouter.api_base"),
        ('[roles.research]\nmodel = "openrouter/a/b:nitro"\n', "roles.research.model"),
        ("this is = = not toml", "not valid TOML"),
        ("[log]\nmax_bytes = 1024\n", "log.max_bytes"),
        ('[log]\nmax_bytes = "256MB"\n', "log.max_bytes"),
        ("[log]\nmax_age_days = 0\n", "log.max_age_days"),
        ("[nats]\nevents_max_mb = 256\n", "is now log.max_bytes, in bytes"),
        ("[nats]\nevents_max_age_days = 7\n", "is now log.max_age_days"),
    ],
)
def test_bad_values_exit_2_with_one_clear_line(tmp_path: Path, body: str, needle: str) -> None:
    p = write(tmp_path, body)
    res = run_cli(["--config", str(p), "config"], base_env(tmp_path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0] and str(p) in lines[0]
    assert "Traceback" not in res.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    res = run_cli(["status", "--config", str(tmp_path / "nope.toml")], base_env(tmp_path))
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "nope.toml" in res.stderr


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    res = run_cli(["config"], base_env(tmp_path, SWARM_BUDGET_USD="lots"))
    assert res.returncode == 2
    assert "SWARM_BUDGET_USD" in res.stderr and "budget.daily_usd" in res.stderr


def test_environment_wins_over_file(tmp_path: Path) -> None:
    p = write(tmp_path, '[budget]\ndaily_usd = 2.5\n[approval]\nmode = "auto"\n')
    cfg = load_config(p, {"SWARM_BUDGET_USD": "7", "XDG_CONFIG_HOME": str(tmp_path)})
    assert cfg.budget.daily_usd == 7.0
    assert cfg.approval.mode == "auto"
    assert cfg.source == str(p)


def test_xdg_config_file_is_read(tmp_path: Path) -> None:
    d = tmp_path / "xdg" / "swarm-tui"
    d.mkdir(parents=True)
    (d / "config.toml").write_text("[swarm]\nscale = 3\n")
    cfg = load_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert cfg.swarm.scale == 3


def test_roles_from_config(tmp_path: Path) -> None:
    p = write(tmp_path, '[roles.summarise]\nmodel = "openrouter/meta-llama/llama-3.1-8b-instruct"\nmax_tokens = 300\n')
    cfg = load_config(p, {})
    assert list(cfg.roles) == ["summarise"]
    assert cfg.roles["summarise"].max_tokens == 300


def test_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    p = write(tmp_path, "[openrouter]\napi_key = 12345\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, {})
    assert "12345" not in str(ei.value)


def test_config_command_masks_secrets(tmp_path: Path) -> None:
    secret = "sk-or-v1-SECRETSECRET0123456789"
    env = base_env(tmp_path, OPENROUTER_API_KEY=secret, SWARM_NATS_TOKEN="natstok-abcdef")
    res = run_cli(["config"], env)
    assert res.returncode == 0
    assert secret not in res.stdout and "natstok-abcdef" not in res.stdout
    assert 'openrouter.api_key = "(set)"' in res.stdout
    res = run_cli(["config", "--json"], env)
    assert secret not in res.stdout and '"(set)"' in res.stdout


def test_log_limits_default_and_from_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[log]\nmax_age_days = 7\nmax_bytes = 33554432\n"), env={})
    assert (cfg.log.max_age_days, cfg.log.max_bytes) == (7, 32 * 1024 * 1024)
    default = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert (default.log.max_age_days, default.log.max_bytes) == (30, 256 * 1024 * 1024)

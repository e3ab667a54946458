"""Config: defaults, the shipped TOML, environment overrides, and readable errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from sambertd import config

SHIPPED = Path(__file__).parent.parent / "config" / "sambertd.toml"


def test_shipped_file_lists_every_setting_with_its_default() -> None:
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    defaults = config.Config()
    assert set(raw) == set(config.sections())
    for name, cls in config.sections().items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(raw[name]) == fields, f"[{name}] in sambertd.toml is out of step"
        for key, value in raw[name].items():
            expected = getattr(getattr(defaults, name), key)
            assert (tuple(value) if isinstance(value, list) else value) == expected, f"{name}.{key}"


def test_loading_the_shipped_file_equals_defaults() -> None:
    loaded = config.load(SHIPPED, env={})
    assert dataclasses.replace(loaded, source="defaults") == config.Config()


def test_env_overrides_win(tmp_path: Path) -> None:
    cfg = config.load(
        SHIPPED,
        env={
            "SAMBERTD_SERVER_PORT": "9000",
            "SAMBERTD_ENGINE_ENGINES": "baker, baker",
            "SAMBERTD_FRONTEND_SANDHI": "off",
            "SAMBERTD_FRONTEND_MAX_SENTENCE_CHARS": "30",
        },
    )
    assert cfg.server.port == 9000
    assert cfg.engine.engines == ("baker", "baker")
    assert cfg.frontend.sandhi is False
    assert cfg.frontend.max_sentence_chars == 30


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[server]\nport = 7000\n")
    assert config.load(env={"SAMBERTD_CONFIG": str(path)}).server.port == 7000


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[server]\nport = 'x'\n", {}, r"\[server\].port: expected int"),
        ("[server]\nport = 70000\n", {}, "not a TCP port"),
        ("[server]\nprot = 1\n", {}, "unknown setting.*prot"),
        ("[servers]\n", {}, "unknown section.*servers"),
        ("[server\n", {}, "not valid TOML"),
        ("", {"SAMBERTD_SERVER_PORT": "eighty"}, "expected int"),
        ("", {"SAMBERTD_BOGUS_X": "1"}, "SAMBERTD_BOGUS_X: no such section"),
        ("", {"SAMBERTD_FRONTEND_SANDHI": "maybe"}, "expected bool"),
        ("[audio]\nformat = 'ogg'\n", {}, "unknown format"),
        ("[audio]\nsample_rate = 44100\n", {}, "sample_rate"),
        ("[engine]\nengines = []\n", {}, "engines is empty"),
    ],
)
def test_errors_are_readable(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError, match=message):
        config.load(path, env=env)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.toml", env={})

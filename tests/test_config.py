"""Configuration: the documented defaults file equals the built-in defaults; unknown keys are errors."""

from __future__ import annotations

import pytest

from vecstore.config import DEFAULT_CONFIG_PATH, Config, load_config
from vecstore.errors import ConfigError


def test_default_toml_equals_builtin_defaults():
    loaded = load_config(DEFAULT_CONFIG_PATH)
    defaults = Config()
    assert loaded.train.downsample == pytest.approx(defaults.train.downsample)
    assert loaded.train.class_weights == pytest.approx(defaults.train.class_weights)
    for section in ("store", "ingest", "postprocess", "index", "classify", "similar"):
        assert getattr(loaded, section) == getattr(defaults, section), section


def test_default_toml_documents_every_key():
    text = DEFAULT_CONFIG_PATH.read_text()
    for section, values in Config().__dict__.items():
        assert f"[{section}]" in text
        for key in values.__dict__:
            assert f"\n{key} =" in text, f"{section}.{key} is not documented in configs/default.toml"


def test_overlay_changes_only_named_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[classify]\nmin_bad_ccds = 10\nprob_cut = 1\n")
    config = load_config(path)
    assert config.classify.min_bad_ccds == 10 and config.classify.prob_cut == 1.0
    assert config.classify.k == 7 and config.ingest == Config().ingest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[classify]\nmin_bad_ccd = 3\n", "unknown key"),
        ("[clasify]\nk = 3\n", "unknown section"),
        ("[classify]\nk = 'seven'\n", "expected int"),
        ("[classify\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_errors(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/vec.toml")

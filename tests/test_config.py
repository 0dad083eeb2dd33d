"""Configuration: the documented defaults file equals the built-in defaults; unknown keys are errors."""

from __future__ import annotations

import dataclasses

import pytest

from vecstore.config import DEFAULT_CONFIG_PATH, ClassifyConfig, Config, IngestConfig, load_config
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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nembedding_dtype = "float64"\n', r"\[store\] embedding_dtype = 'float64': expected one of"),
        ('[ingest]\ndevices = "gpu0"\n', r"devices = 'gpu0': expected cpu, cpu:N, cuda"),
        ('[ingest]\non_bad_ccd = "ignore"\n', "expected one of skip, error"),
        ("[ingest]\nbatch_size = 0\n", r"batch_size = 0: must be >= 1"),
        ('[postprocess]\nmethod = "pca"\n', "expected one of auto, paper, quantile, robust"),
        ('[index]\ncorpus = "HNSW32,SQ8"\n', "quantiser"),
        ("[index]\nhnsw_ef_search = 0\n", "must be >= 1"),
        ('[classify]\nrule = "majority"\n', "expected one of calibrated, paper"),
        ("[classify]\nk = 0\n", r"k = 0: must be >= 1"),
        ("[classify]\np = 2\n", "indexes are L1"),
        ("[classify]\nprob_cut = 0\n", r"prob_cut = 0.0: must be in \(0, 1\]"),
        ("[classify]\nprob_cut = 1.5\n", r"must be in \(0, 1\]"),
        ("[classify]\nthreshold = 2\n", "must be <= 1"),
        ('[train]\nobjective = "auc"\n', "expected one of accuracy, f1, recall_at_precision"),
        ("[train]\nfolds = 1\n", "must be >= 2"),
        ("[train]\ngrid_step = 0.75\n", r"must be in \(0, 0.5\]"),
        ("[train]\ntest_fraction = 1\n", r"must be in \(0, 1\)"),
        ("[train]\ndownsample = { Clouds = 0.5 }\n", r"unknown key\(s\) \['Clouds'\]"),
        ("[train]\nclass_weights = { PSF = 0 }\n", "PSF: must be > 0"),
        ("[similar]\nk = 0\n", "must be >= 1"),
    ],
)
def test_values_a_knob_does_not_accept_fail_at_load(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)  # the message names the file


def test_a_section_built_in_code_is_checked_too():
    with pytest.raises(ConfigError, match=r"\[classify\] k = 0"):
        ClassifyConfig(k=0)


def test_ingest_options_are_the_ingest_section_plus_the_run():
    from ingest.engine.driver import IngestOptions

    built_in = dataclasses.asdict(IngestConfig())
    options = dataclasses.asdict(IngestOptions())
    assert {k: v for k, v in options.items() if k in built_in} == built_in  # the same defaults, not a copy
    assert set(options) - set(built_in) == {"release", "image_root"}
    custom = IngestConfig(batch_size=3, workers=0, devices="cpu:2")
    assert IngestOptions.from_config(custom, workers=None, seed=5, release="r").batch_size == 3
    assert IngestOptions.from_config(custom, workers=None, seed=5, release="r").seed == 5
    with pytest.raises(ConfigError, match="on_bad_ccd"):
        IngestOptions(on_bad_ccd="maybe")

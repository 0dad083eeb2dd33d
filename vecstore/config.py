"""Configuration: frozen dataclasses with defaults, overlaid by small TOML files.

``configs/default.toml`` documents every knob with its default. A user's TOML overlays only what it names;
an unknown section or key is an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vecstore.errors import ConfigError


@dataclass(frozen=True)
class StoreConfig:
    embedding_dtype: str = "float16"  # raw embeddings on disk: "float16" halves the size, "float32" exact
    lock_timeout_s: float = 30.0  # how long a reader/writer retries when another process holds the catalog
    compact_target_rows: int = 8192  # `vec compact` merges parts smaller than this into parts of up to it
    compact_trigger_parts: int = 256  # Store.maybe_compact runs once compacting would remove more parts


@dataclass(frozen=True)
class IngestConfig:
    embedder: str = "dinov2_vitb14_reg"
    preset: str = ""  # empty = the embedder's default preset
    weights: str = ""  # path to a weights file; empty = the hub when online
    devices: str = "cpu"
    batch_size: int = 16
    workers: int = 2  # DataLoader worker processes that decode and preprocess
    ccds_per_exposure: int = 0  # 0 = every CCD; 20 = the paper's seeded random draw
    seed: int = 0
    on_bad_ccd: str = "skip"  # "skip" records a failure row and goes on; "error" stops
    index_save_every_s: float = 300.0  # how often the corpus index is saved during a long ingest


@dataclass(frozen=True)
class PostprocessConfig:
    method: str = "auto"  # auto | paper | quantile | robust (auto: quantile for qa statistics, else paper)
    n_components: int = 15
    variance_threshold: float = 0.001


@dataclass(frozen=True)
class IndexConfig:
    reference: str = "Flat"  # labelled reference set: exact search
    corpus: str = "HNSW32,Flat"  # every CCD: approximate search
    hnsw_ef_search: int = 128
    hnsw_ef_construction: int = 80


@dataclass(frozen=True)
class TrainConfig:
    test_fraction: float = 0.3
    seed: int = 0
    good_per_bad: float = 1.0  # good CCDs drawn per labelled bad CCD
    max_ebv: float = 0.04
    downsample: dict[str, float] = field(
        default_factory=lambda: {"Clouds_Transparency": 1 / 3, "Ghost_Scatter": 0.5, "NObjects": 0.75}
    )
    class_weights: dict[str, float] = field(
        default_factory=lambda: {"Clouds_Transparency": 3.0, "Ghost_Scatter": 2.0, "NObjects": 4 / 3}
    )
    good_from: str = ""  # exposures known to be good: a file of expnums, release:TAG, or a WHERE on exposures
    folds: int = 5  # cross-validation folds (grouped by exposure) that choose the calibrated (t, f)
    objective: str = "accuracy"  # accuracy | f1 | recall_at_precision
    precision_target: float = 0.95  # for objective = recall_at_precision
    grid_step: float = 0.05  # spacing of the t and f grids


@dataclass(frozen=True)
class ClassifyConfig:
    rule: str = "calibrated"  # calibrated (thresholds from vec train) | paper (Luo et al.'s 0.9 cut)
    k: int = 7
    p: int = 1  # Minkowski power of the kNN metric; vec's indexes are L1 (p = 1)
    prob_cut: float = 0.9
    threshold: float = -1.0  # calibrated rule's CCD threshold t; negative = the one `vec train` chose
    fraction: float = -1.0  # calibrated rule's CCD fraction f; negative = the one `vec train` chose
    ccds_per_exposure: int = 20
    min_bad_ccds: int = 3
    seed: int = 0


@dataclass(frozen=True)
class SimilarConfig:
    k: int = 20


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)


def _coerce(value: Any, target: Any, where: str) -> Any:
    """Check a TOML value against the default's type; ints are accepted where floats are expected."""
    if isinstance(target, bool):
        ok = isinstance(value, bool)
    elif isinstance(target, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(target, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(target, dict):
        ok = isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values())
        value = {str(k): float(v) for k, v in value.items()} if ok else value
    else:
        ok = isinstance(value, type(target))
    if not ok:
        raise ConfigError(f"{where}: expected {type(target).__name__}, got {value!r}")
    return value


def _overlay_section(section: Any, values: dict[str, Any], name: str, source: str) -> Any:
    known = {f.name for f in fields(section)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} in [{name}]; valid keys: {sorted(known)}")
    updates = {
        key: _coerce(value, getattr(section, key), f"{source}: [{name}] {key}")
        for key, value in values.items()
    }
    return replace(section, **updates)


def overlay(config: Config, data: dict[str, Any], source: str = "config") -> Config:
    """Return ``config`` with the sections and keys of ``data`` applied; unknown names are errors."""
    sections = {f.name for f in fields(config)}
    updates = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"{source}: unknown section [{name}]; valid sections: {sorted(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{name}] must be a table of keys")
        updates[name] = _overlay_section(getattr(config, name), values, name, source)
    return replace(config, **updates)


def load_config(path: str | Path | None = None) -> Config:
    """Defaults, overlaid by the TOML file at ``path`` when given."""
    config = Config()
    if path is None:
        return config
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return overlay(config, data, source=str(path))


def config_file(name: str) -> Path:
    """One of the TOML files vec ships (``default.toml``, ``categories.toml``).

    A wheel carries them as package data in ``vecstore/configs/`` (pyproject maps the repository's
    top-level ``configs/`` there); a source checkout reads that top-level folder itself.
    """
    packaged = Path(__file__).resolve().parent / "configs" / name
    return packaged if packaged.exists() else Path(__file__).resolve().parents[1] / "configs" / name


DEFAULT_CONFIG_PATH = config_file("default.toml")

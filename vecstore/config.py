"""Configuration: frozen dataclasses with defaults, overlaid by small TOML files, every knob checked at load.

``configs/default.toml`` documents every knob with its default. A user's TOML overlays only what it names;
an unknown section or key is an error (a typo must not silently fall back to a default), and so is a value
of the wrong type or outside what the knob accepts (a choice, a range, a form): :class:`ConfigError` when
the file is read, not a ValueError deep inside a later run. A section checks itself whenever it is built,
so a library caller's ``ClassifyConfig(k=0)`` is refused the same way.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from vecstore.errors import ConfigError, IndexSpecError
from vecstore.index_spec import validate_spec
from vecstore.vocabulary import CATEGORIES


@dataclass(frozen=True)
class Accepts:
    """What one knob accepts: a choice, a closed or open range, a form (regular expression), an index spec.

    For a table knob (``downsample``) the range applies to each value and ``keys`` lists the valid keys.
    """

    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is refused
    high_open: bool = False
    form: str | None = None  # a regular expression the whole (lower-cased) text must match
    form_hint: str = ""
    index_spec: bool = False
    keys: tuple[str, ...] = ()
    why: str = ""  # said after the problem

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None."""
        problem = self._problem(value)
        return f"{problem} ({self.why})" if problem and self.why else problem

    def _problem(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return self._table_problem(value)
        if self.choices and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}"
        if self.form and not re.fullmatch(self.form, str(value).strip().lower()):
            return f"expected {self.form_hint}"
        if self.index_spec:
            try:
                validate_spec(value)
            except IndexSpecError as exc:
                return str(exc)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._range_problem(value)
        return None

    def _range_problem(self, value: float) -> str | None:
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if not (below or above):
            return None
        low = "" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}{')' if self.high_open else ']'}"
        if not high:
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if not low:
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return f"must be in {low}, {high}"

    def _table_problem(self, table: dict) -> str | None:
        unknown = sorted(set(table) - set(self.keys)) if self.keys else []
        if unknown:
            return f"unknown key(s) {unknown}; valid keys: {', '.join(self.keys)}"
        for key, value in table.items():
            problem = self._range_problem(value)
            if problem:
                return f"{key}: {problem}"
        return None


def knob(default: Any = None, *, factory: Any = None, **accepts: Any) -> Any:
    """A config field with what it accepts (see :class:`Accepts`)."""
    metadata = {"accepts": Accepts(**accepts)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class Section:
    """A config section: checks every knob when built (so at load, and for library callers too)."""

    NAME: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in fields(self):
            accepts = spec.metadata.get("accepts")
            value = getattr(self, spec.name)
            problem = accepts.problem(value) if accepts else None
            if problem:
                raise ConfigError(f"[{self.NAME}] {spec.name} = {value!r}: {problem}")


UNIT = {"low": 0.0, "high": 1.0}  # a share or a probability, 0 and 1 included
PROBABILITY_CUT = {"low": 0.0, "low_open": True, "high": 1.0}  # 0 would call everything bad
DEVICES = {
    "form": r"cpu(:\d+)?|cuda(:\d+(,\d+)*)?",
    "form_hint": "cpu, cpu:N, cuda or cuda:N[,M...]",
}


@dataclass(frozen=True)
class StoreConfig(Section):
    NAME = "store"
    # raw embeddings on disk: "float16" halves the size, "float32" exact
    embedding_dtype: str = knob("float16", choices=("float16", "float32"))
    # how long a reader/writer retries when another process holds the catalog
    lock_timeout_s: float = knob(30.0, low=0.0)
    # `vec compact` merges parts smaller than this into parts of up to it
    compact_target_rows: int = knob(8192, low=1)
    # Store.maybe_compact runs once compacting would remove more parts than this
    compact_trigger_parts: int = knob(256, low=0)
    # `vec merge`: CCDs per commit into the destination (~12 MB of float32 768-d vectors)
    merge_chunk_rows: int = knob(4096, low=1)


@dataclass(frozen=True)
class IngestConfig(Section):
    NAME = "ingest"
    embedder: str = "dinov2_vitb14_reg"  # a registered embedder (checked when it is built)
    preset: str = ""  # empty = the embedder's default preset
    weights: str = ""  # path to a weights file; empty = the hub when online
    devices: str = knob("cpu", **DEVICES)
    batch_size: int = knob(16, low=1)  # CCDs per forward pass and per committed part
    workers: int = knob(2, low=0)  # DataLoader worker processes that decode and preprocess
    ccds_per_exposure: int = knob(0, low=0)  # 0 = every CCD; 20 = the paper's seeded random draw
    seed: int = knob(0, low=0)
    # "skip" records a failure row and goes on; "error" stops
    on_bad_ccd: str = knob("skip", choices=("skip", "error"))
    # how often the corpus index is saved during a long ingest
    index_save_every_s: float = knob(300.0, low=0.0, low_open=True)


@dataclass(frozen=True)
class PostprocessConfig(Section):
    NAME = "postprocess"
    # auto: qa statistics voted on in both the robust and the quantile space (robust alone without labels);
    # quantile for a hybrid's qa block; else paper (vecstore.postprocess)
    method: str = knob("auto", choices=("auto", "paper", "quantile", "robust", "robust+quantile"))
    # magnitude: named (NAME_e1, NAME_e2) ellipticity pairs enter robust/quantile distances as hypot(e1, e2)
    orientation: str = knob("magnitude", choices=("magnitude", "components"))
    n_components: int = knob(15, low=1)
    variance_threshold: float = knob(0.001, low=0.0)


@dataclass(frozen=True)
class IndexConfig(Section):
    NAME = "index"
    reference: str = knob("Flat", index_spec=True)  # labelled reference set: exact search
    corpus: str = knob("HNSW32,Flat", index_spec=True)  # every CCD: approximate search
    hnsw_ef_search: int = knob(128, low=1)  # HNSW search breadth (at least k is used)
    hnsw_ef_construction: int = knob(80, low=1)


@dataclass(frozen=True)
class TrainConfig(Section):
    NAME = "train"
    test_fraction: float = knob(0.3, low=0.0, low_open=True, high=1.0, high_open=True)
    seed: int = knob(0, low=0)
    good_per_bad: float = knob(1.0, low=0.0, low_open=True)  # good CCDs drawn per labelled bad CCD
    max_ebv: float = knob(0.04, low=0.0, low_open=True)
    downsample: dict[str, float] = knob(
        factory=lambda: {"Clouds_Transparency": 1 / 3, "Ghost_Scatter": 0.5, "NObjects": 0.75},
        low=0.0,
        low_open=True,
        high=1.0,
        keys=CATEGORIES,
    )
    class_weights: dict[str, float] = knob(
        factory=lambda: {"Clouds_Transparency": 3.0, "Ghost_Scatter": 2.0, "NObjects": 4 / 3},
        low=0.0,
        low_open=True,
        keys=CATEGORIES,
    )
    good_from: str = ""  # exposures known to be good: a file of expnums, release:TAG, or a WHERE on exposures
    # cross-validation folds (grouped by exposure) that choose the calibrated (t, f)
    folds: int = knob(5, low=2)
    objective: str = knob("accuracy", choices=("accuracy", "f1", "recall_at_precision"))
    precision_target: float = knob(0.95, **PROBABILITY_CUT)  # for objective = recall_at_precision
    grid_step: float = knob(0.05, low=0.0, low_open=True, high=0.5)  # spacing of the t and f grids
    # let cross-validation also choose t_l, at which one CCD of a CCD-level category (labels that name
    # single CCDs, e.g. Bad_CCD, Noise) makes its exposure bad alone; false: the fraction rule only
    single_ccd_rule: bool = True
    tune_iterations: int = knob(40, low=1)  # candidates `vec train --tune` draws (HalvingRandomSearchCV)
    # a CCD whose k-th neighbour is farther than this quantile of the held-out labelled CCDs' is "unknown"
    unknown_quantile: float = knob(0.99, low=0.5, high=1.0)


@dataclass(frozen=True)
class ClassifyConfig(Section):
    NAME = "classify"
    # calibrated (thresholds from vec train) | paper (Luo et al.'s 0.9 cut)
    rule: str = knob("calibrated", choices=("calibrated", "paper"))
    k: int = knob(7, low=1)
    p: int = knob(1, choices=(1,), why="Minkowski power of the kNN metric: vec's indexes are L1")
    prob_cut: float = knob(0.9, **PROBABILITY_CUT)
    threshold: float = knob(-1.0, high=1.0)  # calibrated rule's CCD threshold t; negative = vec train's
    fraction: float = knob(-1.0, high=1.0)  # calibrated rule's CCD fraction f; negative = vec train's
    # calibrated rule's single-CCD threshold t_l; negative = vec train's (which may be off); above 1 = off
    local_threshold: float = -1.0
    ccds_per_exposure: int = knob(20, low=0)
    min_bad_ccds: int = knob(3, low=1)
    seed: int = knob(0, low=0)
    # exposures per transaction of a `classify --all` run: the unit lost on a crash
    chunk_exposures: int = knob(100, low=1)
    # where the exact k-NN of a calibrated model runs: cpu (numba), cuda / cuda:N (torch), or auto (CUDA
    # when torch sees a GPU and a search has >= 1000 queries, else cpu); same neighbours everywhere
    knn_device: str = knob("auto", form=r"auto|cpu|cuda(:\d+)?", form_hint="auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class SimilarConfig(Section):
    NAME = "similar"
    k: int = knob(20, low=1)
    # CCDs the label-free corpus space (no trained model yet) is fitted on: a seeded sample; 0 = every CCD
    corpus_sample: int = knob(100_000, low=0)
    seed: int = knob(0, low=0)  # seed of that sample


@dataclass(frozen=True)
class LabelsConfig(Section):
    NAME = "labels"
    # how analysts' verdicts on one exposure or CCD combine (query/analysts.py): majority (the most
    # named verdict; a tie is left out of training) | unanimous (all must agree, else it is a tie)
    consensus: str = knob("majority", choices=("majority", "unanimous"))


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)


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
    try:
        return replace(section, **updates)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


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

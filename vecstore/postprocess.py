"""The post-processor: raw embeddings -> the vectors the L1 indexes hold, as plain arrays.

Methods (``postprocess.method``; ``auto`` picks per embedder, see :func:`resolve_methods`, and for a
``qa`` store's trained model votes in two spaces, see :func:`candidate_methods`):

- ``paper``: MinMaxScaler -> PCA(15) -> VarianceThreshold(0.001), the paper's HPO choice, for DINOv2.
- ``robust``: (x - median) / IQR per feature (scikit-learn's RobustScaler), no PCA: for the ``qa``
  statistics, whose tails are heavy (max/median up to 600x). MinMax squeezes their good population into
  a sliver of [0, 1]; robust scaling spreads it over a few units and keeps how far outside it an
  artifact lies. ``auto``'s choice for ``qa`` without labels (the label-free space of ``vec similar``).
- ``quantile``: each feature through its empirical CDF on the training CCDs (QuantileTransformer,
  uniform output), no PCA: every statistic bounded to [0, 1] and weighed alike in L1, so a dead
  amplifier and a barely unusual CCD land equally far from the good ones. Used for the ``qa`` block of a
  hybrid, whose blocks are balanced by total variance, which heavy tails would distort.
- ``robust+quantile`` (``auto`` on a ``qa`` store, training a model on labels): both are fitted, and a
  CCD's class probabilities are the mean of its k-neighbour votes in the two spaces (:func:`view_methods`;
  the first space is the model's own: its corpus index, the neighbours shown, the unknown distance). The
  two scalers err on different CCDs (robust where one heavy statistic dominates L1, quantile where a
  far outlier counts no more than a near one), and the averaged vote halved the false alarms of the
  better-cross-validated single scaler on nine simulated surveys (README, "Post-processor per
  embedder"). Before, ``auto`` deployed whichever of the two cross-validated better.
Orientation (``postprocess.orientation``, ``magnitude`` by default, for ``robust`` and ``quantile``): a
PSF ellipticity measured as two components (``psf_e1``, ``psf_e2``, any ``NAME_e1`` / ``NAME_e2`` pair
of named features) enters the distance as its magnitude ``hypot(e1, e2)`` only. Its angle is the
direction of wind shake, trailing or optics and differs from one exposure to the next, so two bad-PSF
CCDs elongated at right angles would otherwise lie farther apart than either from a round good one; the
good CCDs' components sit near 0 with a tiny IQR, so under robust scaling the angle dominated L1
(measured: README, "Post-processor per embedder"). The raw vectors keep both components for SQL;
``components`` (and the paper's pipeline, kept exactly as published) use them as measured.

A hybrid vector (``dinov2+qa``) is processed block by block, each with its own method, and each block is
then brought to unit total variance so that 768 ViT dimensions do not drown 28 statistics.

vec fits with scikit-learn, then keeps only the fitted arrays (``.npz`` read with ``allow_pickle=False``),
so a stored model never executes code on load and applying it is a few numpy operations.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecstore.errors import BadInputError, ConfigError, TrainingError

FORMAT_VERSION = 1
BOTH_SCALERS = "robust+quantile"  # a vote in two spaces: view_methods
METHODS = ("paper", "quantile", "robust", BOTH_SCALERS)
ORIENTATIONS = ("magnitude", "components")
N_QUANTILES = 1000  # scikit-learn's default; fewer when fitted on fewer CCDs


@dataclass(frozen=True, eq=False)
class PostProcessor:
    scale: np.ndarray  # MinMaxScaler: x * scale + offset maps the fit range to [0, 1]
    offset: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray  # (n_components, dim)
    keep: np.ndarray  # VarianceThreshold's boolean mask over the PCA components
    n_components: int
    variance_threshold: float
    # Per-input-column factor applied after the scaler; ones except for multi-block vectors (dinov2+qa),
    # where each block is brought to the same total variance so that neither dominates PCA and L1.
    column_weights: np.ndarray | None = None
    # Columns that go through their empirical CDF first (np.interp on these quantiles); None = none.
    quantiles: np.ndarray | None = None  # (n_quantiles, dim); NaN in columns that are not transformed
    steps: tuple[str, ...] = ("MinMaxScaler", "PCA", "VarianceThreshold")
    # (e1, e2) column pairs replaced by (hypot(e1, e2), 0) before anything else; None = none.
    magnitude_pairs: np.ndarray | None = None  # (n_pairs, 2) int

    @property
    def input_dim(self) -> int:
        return int(self.scale.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.keep.sum())

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Raw embeddings (n, dim) -> post-processed vectors (n, output_dim) float32."""
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise BadInputError(f"post-processor expects (n, {self.input_dim}) vectors, got {x.shape}")
        if self.magnitude_pairs is not None:
            x = pair_magnitudes(x, self.magnitude_pairs)
        if self.quantiles is not None:
            x = quantile_transform(x, self.quantiles)
        scaled = x * self.scale + self.offset
        if self.column_weights is not None:
            scaled = scaled * self.column_weights
        projected = (scaled - self.pca_mean) @ self.pca_components.T
        return np.ascontiguousarray(projected[:, self.keep], dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / "postprocess.npz",
            scale=self.scale,
            offset=self.offset,
            pca_mean=self.pca_mean,
            pca_components=self.pca_components,
            keep=self.keep,
            column_weights=np.ones_like(self.scale) if self.column_weights is None else self.column_weights,
            **({} if self.quantiles is None else {"quantiles": self.quantiles}),
            **({} if self.magnitude_pairs is None else {"magnitude_pairs": self.magnitude_pairs}),
        )
        settings = {
            "format": FORMAT_VERSION,
            "steps": list(self.steps),
            "n_components": self.n_components,
            "variance_threshold": self.variance_threshold,
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
        }
        (directory / "postprocess.json").write_text(json.dumps(settings, indent=1))

    @classmethod
    def load(cls, directory: Path) -> PostProcessor:
        settings = json.loads((directory / "postprocess.json").read_text())
        if settings.get("format") != FORMAT_VERSION:
            raise BadInputError(
                f"{directory}: post-processor format {settings.get('format')} is not supported"
            )
        with np.load(directory / "postprocess.npz", allow_pickle=False) as arrays:
            return cls(
                scale=arrays["scale"],
                offset=arrays["offset"],
                pca_mean=arrays["pca_mean"],
                pca_components=arrays["pca_components"],
                keep=arrays["keep"].astype(bool),
                n_components=int(settings["n_components"]),
                variance_threshold=float(settings["variance_threshold"]),
                column_weights=None if np.all(arrays["column_weights"] == 1) else arrays["column_weights"],
                quantiles=arrays["quantiles"] if "quantiles" in arrays.files else None,
                steps=tuple(settings["steps"]),
                magnitude_pairs=(
                    arrays["magnitude_pairs"].astype(np.int64) if "magnitude_pairs" in arrays.files else None
                ),
            )


def sklearn_pipeline(n_components: int = 15, variance_threshold: float = 0.001, seed: int = 0):
    """The scikit-learn pipeline the paper used; vec fits it and keeps the arrays."""
    from sklearn.decomposition import PCA
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    return Pipeline(
        [
            ("scaler", MinMaxScaler()),
            # "full" SVD: deterministic, unlike the randomized solver sklearn picks for large inputs.
            ("pca", PCA(n_components=n_components, svd_solver="full", random_state=seed)),
            ("threshold", VarianceThreshold(variance_threshold)),
        ]
    )


def from_sklearn(pipeline) -> PostProcessor:
    """Extract the fitted arrays of a fitted :func:`sklearn_pipeline`."""
    return _from_steps(*(pipeline.named_steps[k] for k in ("scaler", "pca", "threshold")))


def _from_steps(scaler, pca, threshold, column_weights: np.ndarray | None = None) -> PostProcessor:
    if getattr(pca, "whiten", False):
        raise BadInputError("whitened PCA is not supported by the stored post-processor")
    return PostProcessor(
        scale=scaler.scale_.astype(np.float64),
        offset=scaler.min_.astype(np.float64),
        pca_mean=pca.mean_.astype(np.float64),
        pca_components=pca.components_.astype(np.float64),
        keep=threshold.get_support(),
        n_components=int(pca.n_components_),
        variance_threshold=float(threshold.threshold),
        column_weights=column_weights,
    )


def fit_postprocessor(
    vectors: np.ndarray,
    n_components: int = 15,
    variance_threshold: float = 0.001,
    blocks: list[tuple[str, int]] | None = None,
    method: str | tuple[str, ...] = "paper",
    magnitude_pairs: list[tuple[int, int]] | None = None,
) -> PostProcessor:
    """Fit on the training embeddings (n, dim) with ``method`` (one for all blocks, or one per block).

    ``paper``: MinMax -> PCA -> VarianceThreshold; fewer samples than components is an error. ``blocks``
    (name, width) describe a concatenated vector; each block is then rescaled after MinMax to unit total
    variance before PCA (see :class:`PostProcessor`). Other methods: :func:`fit_per_block`, which also
    applies ``magnitude_pairs`` (see :func:`orientation_pairs`); the paper's pipeline ignores them.
    """
    if method != "paper":
        return fit_per_block(vectors, method, n_components, variance_threshold, blocks, magnitude_pairs)
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) <= n_components or x.shape[1] < n_components:
        raise TrainingError(
            f"cannot fit PCA({n_components}) on {x.shape[0]} vectors of dimension {x.shape[1]}: "
            f"need more than {n_components} of each"
        )
    if not blocks:
        processor = from_sklearn(sklearn_pipeline(n_components, variance_threshold).fit(x))
    else:
        processor = _fit_blocks(x, n_components, variance_threshold, blocks)
    if processor.output_dim == 0:
        raise TrainingError(
            f"VarianceThreshold({variance_threshold}) removed every PCA component; lower the threshold"
        )
    return processor


def block_weights(scaled: np.ndarray, blocks: list[tuple[str, int]]) -> np.ndarray:
    """Column factors giving each block unit total variance (a constant block keeps factor 1)."""
    widths = [int(width) for _, width in blocks]
    if sum(widths) != scaled.shape[1]:
        raise BadInputError(
            f"blocks {blocks} add up to {sum(widths)} columns, vectors have {scaled.shape[1]}"
        )
    weights = np.ones(scaled.shape[1])
    start = 0
    for width in widths:
        total = scaled[:, start : start + width].var(axis=0).sum()
        weights[start : start + width] = 1.0 / np.sqrt(total) if total > 0 else 1.0
        start += width
    return weights


def _fit_blocks(
    x: np.ndarray, n_components: int, variance_threshold: float, blocks: list[tuple[str, int]]
) -> PostProcessor:
    pipeline = sklearn_pipeline(n_components, variance_threshold)
    scaler = pipeline.named_steps["scaler"].fit(x)
    scaled = scaler.transform(x)
    weights = block_weights(scaled, blocks)
    weighted = scaled * weights
    pca = pipeline.named_steps["pca"].fit(weighted)
    threshold = pipeline.named_steps["threshold"].fit(pca.transform(weighted))
    return _from_steps(scaler, pca, threshold, column_weights=weights)


# ------------------------------------------------------------------------------ per-embedder methods
def resolve_methods(
    configured: str, embedder: str, blocks: list[tuple[str, int]] | None
) -> str | tuple[str, ...]:
    """The method of each block: ``configured`` everywhere, or for ``auto`` robust scaling on a ``qa``
    store, quantile on the qa block of a hybrid (see the module docstring) and the paper's pipeline on
    everything else."""
    if configured != "auto":
        if configured not in METHODS:
            raise ConfigError(
                f"postprocess.method {configured!r}: expected auto or one of {', '.join(METHODS)}"
            )
        return configured
    if not blocks:
        return "robust" if embedder == "qa" else "paper"
    methods = tuple("quantile" if name == "qa" else "paper" for name, _ in blocks)
    return "paper" if set(methods) == {"paper"} else methods


def orientation_pairs(feature_names, orientation: str = "magnitude") -> list[tuple[int, int]]:
    """The (e1, e2) column pairs whose angle the distance ignores: every ``NAME_e1`` with a ``NAME_e2``
    among the named features under ``magnitude``, none under ``components`` or for unnamed vectors."""
    if orientation not in ORIENTATIONS:
        raise ConfigError(
            f"postprocess.orientation {orientation!r}: expected one of {', '.join(ORIENTATIONS)}"
        )
    if orientation == "components" or not feature_names:
        return []
    index = {name: i for i, name in enumerate(feature_names)}
    return [
        (i, index[name[:-1] + "2"])
        for name, i in index.items()
        if name.endswith("_e1") and name[:-1] + "2" in index
    ]


def pair_magnitudes(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """A copy of ``x`` with each (e1, e2) column pair replaced by (hypot(e1, e2), 0)."""
    out = np.array(x, dtype=np.float64, copy=True)
    for first, second in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        out[:, first] = np.hypot(x[:, first], x[:, second])
        out[:, second] = 0.0  # constant: the variance threshold drops its output
    return out


def candidate_methods(
    configured: str, embedder: str, blocks: list[tuple[str, int]] | None
) -> list[str | tuple[str, ...]]:
    """The methods cross-validation scores when a model is trained on labels, best guess first (ties go
    to the first).

    For ``auto`` on a ``qa`` store the vote of both heavy-tail scalers (module docstring). Otherwise the
    one :func:`resolve_methods` gives.
    """
    first = resolve_methods(configured, embedder, blocks)
    return [BOTH_SCALERS] if configured == "auto" and first == "robust" else [first]


def view_methods(method: str | tuple[str, ...]) -> tuple[str | tuple[str, ...], ...]:
    """The post-processors a trained model votes with, its own space first: two for ``robust+quantile``,
    else ``method`` alone (a per-block tuple is one space)."""
    return ("robust", "quantile") if method == BOTH_SCALERS else (method,)


def quantile_transform(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Columns with finite quantiles -> [0, 1] exactly as QuantileTransformer(uniform); others unchanged.

    The mean of the forward and the mirrored interpolation is scikit-learn's way of sending a value that
    repeats in the quantiles (a statistic that is often exactly 0) to the middle of its flat step.
    """
    out = np.array(x, dtype=np.float64, copy=True)
    levels = np.linspace(0.0, 1.0, quantiles.shape[0])
    for j in np.flatnonzero(np.isfinite(quantiles[0])):
        q, column = quantiles[:, j], x[:, j]
        out[:, j] = 0.5 * (np.interp(column, q, levels) - np.interp(-column, -q[::-1], -levels[::-1]))
    return out


@dataclass
class _Block:
    """One block's fitted pieces, in input columns ``start:stop``."""

    start: int
    stop: int
    scale: np.ndarray
    offset: np.ndarray
    quantiles: np.ndarray | None
    mean: np.ndarray
    components: np.ndarray  # (n_out, width)
    step: str


def _fit_block(x: np.ndarray, method: str, n_components: int, n_quantiles: int, seed: int = 0) -> _Block:
    width = x.shape[1]
    identity = (np.zeros(width), np.eye(width))
    if method == "quantile":
        from sklearn.preprocessing import QuantileTransformer

        fitted = QuantileTransformer(n_quantiles=n_quantiles, subsample=10**9, random_state=seed).fit(x)
        return _Block(
            0, width, np.ones(width), np.zeros(width), fitted.quantiles_, *identity, "QuantileTransformer"
        )
    if method == "robust":
        from sklearn.preprocessing import RobustScaler

        fitted = RobustScaler().fit(x)
        scale = 1.0 / fitted.scale_
        return _Block(0, width, scale, -fitted.center_ * scale, None, *identity, "RobustScaler")
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import MinMaxScaler

    scaler = MinMaxScaler().fit(x)
    n = min(n_components, width, len(x) - 1)
    if n < 1:
        raise TrainingError(f"cannot fit PCA on {len(x)} vectors: need at least 2")
    pca = PCA(n_components=n, svd_solver="full", random_state=seed).fit(scaler.transform(x))
    return _Block(
        0, width, scaler.scale_, scaler.min_, None, pca.mean_, pca.components_, f"MinMaxScaler+PCA({n})"
    )


def fit_per_block(
    vectors: np.ndarray,
    methods: str | tuple[str, ...],
    n_components: int = 15,
    variance_threshold: float = 0.001,
    blocks: list[tuple[str, int]] | None = None,
    magnitude_pairs: list[tuple[int, int]] | None = None,
) -> PostProcessor:
    """Fit each block with its method, balance the blocks' output variance, drop constant outputs.

    ``magnitude_pairs`` (e1, e2) columns enter as (hypot(e1, e2), 0) (module docstring, "Orientation").
    """
    pairs = np.asarray(magnitude_pairs or [], dtype=np.int64).reshape(-1, 2)
    x = np.asarray(vectors, dtype=np.float64)
    if len(pairs):
        if pairs.min() < 0 or pairs.max() >= x.shape[1]:
            raise BadInputError(f"magnitude pairs {pairs.tolist()} outside the {x.shape[1]} columns")
        x = pair_magnitudes(x, pairs)
    layout = [(str(name), int(width)) for name, width in (blocks or [("all", x.shape[1])])]
    if sum(w for _, w in layout) != x.shape[1]:
        raise BadInputError(
            f"blocks {layout} add up to {sum(w for _, w in layout)} columns, vectors have {x.shape[1]}"
        )
    per_block = (methods,) * len(layout) if isinstance(methods, str) else tuple(methods)
    n_quantiles = max(2, min(N_QUANTILES, len(x)))
    fitted, start = [], 0
    for (name, width), method in zip(layout, per_block, strict=True):
        block = _fit_block(x[:, start : start + width], method, n_components, n_quantiles)
        block.start, block.stop, block.step = start, start + width, f"{name}: {block.step}"
        fitted.append(block)
        start += width
    processor = _assemble(x, fitted, len(layout) > 1, variance_threshold, n_quantiles)
    if not len(pairs):
        return processor
    # x was already paired; the processor pairs what it transforms from now on.
    step = f"orientation: {len(pairs)} (e1, e2) pair(s) -> hypot"
    return dataclasses.replace(processor, magnitude_pairs=pairs, steps=(step, *processor.steps))


def _assemble(
    x, fitted: list[_Block], balance: bool, variance_threshold: float, n_quantiles: int
) -> PostProcessor:
    dim = x.shape[1]
    scale, offset, weights = np.ones(dim), np.zeros(dim), np.ones(dim)
    quantiles = np.full((n_quantiles, dim), np.nan)
    mean = np.zeros(dim)
    rows = []
    for b in fitted:
        cols = slice(b.start, b.stop)
        scale[cols], offset[cols] = b.scale, b.offset
        if b.quantiles is not None:
            quantiles[:, cols] = b.quantiles
        block_x = x[:, cols] if b.quantiles is None else quantile_transform(x[:, cols], b.quantiles)
        out = (block_x * b.scale + b.offset - b.mean) @ b.components.T
        total = out.var(axis=0).sum()
        # Weighting a block's input columns by w scales its outputs by w: unit total variance per block.
        w = 1.0 / np.sqrt(total) if balance and total > 0 else 1.0
        weights[cols], mean[cols] = w, b.mean * w
        component_rows = np.zeros((b.components.shape[0], dim))
        component_rows[:, cols] = b.components
        rows.append(component_rows)
    components = np.vstack(rows)
    has_quantiles = bool(np.isfinite(quantiles[0]).any())
    processor = PostProcessor(
        scale=scale,
        offset=offset,
        pca_mean=mean,
        pca_components=components,
        keep=np.ones(len(components), dtype=bool),
        n_components=len(components),
        variance_threshold=variance_threshold,
        column_weights=weights if balance else None,
        quantiles=quantiles if has_quantiles else None,
        steps=(*(b.step for b in fitted), *(("block balance",) if balance else ()), "VarianceThreshold"),
    )
    keep = processor.transform(x).astype(np.float64).var(axis=0) > variance_threshold
    if not keep.any():
        raise TrainingError(
            f"VarianceThreshold({variance_threshold}) removed every output; lower the threshold"
        )
    return dataclasses.replace(processor, keep=keep)

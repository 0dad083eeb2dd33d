"""The post-processor: MinMaxScaler -> PCA -> VarianceThreshold, as plain arrays.

The paper's HPO chose MinMaxScaler, PCA(15) and VarianceThreshold(0.001). vec fits those with
scikit-learn, then keeps only their fitted arrays (``.npz`` read with ``allow_pickle=False``), so a stored
model never executes code on load and applying it is a few numpy operations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecstore.errors import VecError

FORMAT_VERSION = 1


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
            raise VecError(f"post-processor expects (n, {self.input_dim}) vectors, got {x.shape}")
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
        )
        settings = {
            "format": FORMAT_VERSION,
            "steps": ["MinMaxScaler", "PCA", "VarianceThreshold"],
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
            raise VecError(f"{directory}: post-processor format {settings.get('format')} is not supported")
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
        raise VecError("whitened PCA is not supported by the stored post-processor")
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
) -> PostProcessor:
    """Fit on the training embeddings (n, dim). Fewer samples than components is an error.

    ``blocks`` (name, width) describe a concatenated vector; each block is then rescaled after MinMax to
    unit total variance before PCA (see :class:`PostProcessor`).
    """
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) <= n_components or x.shape[1] < n_components:
        raise VecError(
            f"cannot fit PCA({n_components}) on {x.shape[0]} vectors of dimension {x.shape[1]}: "
            f"need more than {n_components} of each"
        )
    if not blocks:
        processor = from_sklearn(sklearn_pipeline(n_components, variance_threshold).fit(x))
    else:
        processor = _fit_blocks(x, n_components, variance_threshold, blocks)
    if processor.output_dim == 0:
        raise VecError(
            f"VarianceThreshold({variance_threshold}) removed every PCA component; lower the threshold"
        )
    return processor


def block_weights(scaled: np.ndarray, blocks: list[tuple[str, int]]) -> np.ndarray:
    """Column factors giving each block unit total variance (a constant block keeps factor 1)."""
    widths = [int(width) for _, width in blocks]
    if sum(widths) != scaled.shape[1]:
        raise VecError(f"blocks {blocks} add up to {sum(widths)} columns, vectors have {scaled.shape[1]}")
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

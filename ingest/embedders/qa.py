"""The ``qa`` embedder (image-quality statistics, no weights) and the ViT + qa hybrids.

``qa`` registers :func:`ingest.embedders.qa_features.qa_features` like any embedder: its vector's
components are named (``feature_names``), so a store built with it exposes them to SQL by name (the
``features`` view).

``dinov2+qa`` (and ``test_vit+qa`` for tests and the demo) concatenate a ViT's CLS vector and the qa
features. Their blocks differ in size (768 vs ``QA_DIM`` = 28) and units; the post-processor rescales each
block, after its MinMaxScaler, to the same total variance (``PostProcessor.fit(..., blocks=...)``), so that
PCA and the L1 distance see both and neither dominates by sheer number of dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ingest.embedders.qa_features import QA_DIM, QA_FEATURE_NAMES, qa_features
from ingest.embedders.registry import (
    Embedder,
    EmbedderConfig,
    TorchEmbedder,
    create_embedder,
    register_embedder,
)

# Bump when a feature's definition changes: vectors of two versions are not comparable, and the store
# refuses to mix them. v2: zero_fraction counts near-zero (fpack-dithered) pixels, sky statistics come
# from live amplifiers, psf_found added with neutral PSF values when no star is found (27 features).
# v3: log_exptime added (28 features).
QA_VERSION = "qa-v3"


def _exptime(meta: Mapping[str, Any] | None) -> float | None:
    value = (meta or {}).get("exptime")
    return float(value) if value is not None and float(value) > 0 else None


class QAEmbedder(Embedder):
    """Named image statistics; runs wholly in the DataLoader workers (no model, no device)."""

    def embed_images(
        self, images: Sequence[np.ndarray], metas: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        metas = metas or [None] * len(images)
        if not len(images):
            return np.empty((0, QA_DIM), dtype=np.float32)
        return np.stack(
            [qa_features(image, exptime=_exptime(meta)) for image, meta in zip(images, metas, strict=True)]
        )

    def preparer(self) -> Callable[[np.ndarray, Mapping[str, Any]], Any]:
        return _QAFeatures()

    @property
    def feature_names(self) -> tuple[str, ...]:
        return QA_FEATURE_NAMES


class _QAFeatures:
    def __call__(self, pixels: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
        return qa_features(pixels, exptime=_exptime(meta))


class HybridEmbedder(Embedder):
    """A ViT's vector followed by the qa features: the workers preprocess and measure, the device embeds."""

    def __init__(self, config: EmbedderConfig, vit: TorchEmbedder):
        super().__init__(config, weights_sha256=vit.weights_sha256, preset=vit.preset)
        self.vit = vit

    def to(self, device: str) -> HybridEmbedder:
        super().to(device)
        self.vit.to(device)
        return self

    @property
    def blocks(self) -> tuple[tuple[str, int], ...]:
        return ((self.vit.config.name, self.vit.dim), ("qa", QA_DIM))

    def embed_images(
        self, images: Sequence[np.ndarray], metas: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        metas = metas or [None] * len(images)
        prepare = self.preparer()
        return self.embed_prepared([prepare(image, meta) for image, meta in zip(images, metas, strict=True)])

    def preparer(self) -> Callable[[np.ndarray, Mapping[str, Any]], Any]:
        return _HybridPrepare(self.vit.preparer())

    def embed_prepared(self, payloads: Sequence[Any]) -> np.ndarray:
        if not len(payloads):
            return np.empty((0, self.dim), dtype=np.float32)
        vit_vectors = self.vit.embed_prepared([p[0] for p in payloads])
        qa_vectors = np.stack([np.asarray(p[1], dtype=np.float32) for p in payloads])
        return np.concatenate([vit_vectors, qa_vectors], axis=1)


class _HybridPrepare:
    def __init__(self, vit_prepare: Callable):
        self.vit_prepare = vit_prepare

    def __call__(self, pixels: np.ndarray, meta: Mapping[str, Any]) -> tuple:
        return self.vit_prepare(pixels, meta), qa_features(pixels, exptime=_exptime(meta))


QA = EmbedderConfig(
    name="qa",
    dim=QA_DIM,
    arch=QA_VERSION,
    patch_size=None,
    default_preset=None,
    needs_weights=False,
    needs_torch=False,
    description="image-quality statistics (sky, noise, PSF, gradients, streaks...), no weights",
)


@register_embedder(QA)
def _create_qa(config: EmbedderConfig, *, weights, preset) -> Embedder:
    return QAEmbedder(config, weights_sha256=QA_VERSION, preset=None)


def _register_hybrid(vit_name: str, name: str, vit_dim: int, description: str) -> None:
    config = EmbedderConfig(
        name=name,
        dim=vit_dim + QA_DIM,
        arch=f"{vit_name}+{QA_VERSION}",
        patch_size=14,
        default_preset=None,
        needs_weights=vit_name != "test_vit",
        description=description,
    )

    @register_embedder(config)
    def _create(config: EmbedderConfig, *, weights, preset) -> Embedder:
        vit = create_embedder(vit_name, weights=weights, preset=preset)
        return HybridEmbedder(config, vit)


_register_hybrid("dinov2_vitb14_reg", "dinov2+qa", 768, "DINOv2 ViT-B/14 CLS + qa features, blocks balanced")
_register_hybrid("test_vit", "test_vit+qa", 64, "tiny test ViT + qa features (tests and the demo)")

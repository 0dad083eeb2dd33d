"""Embedders by name: the registry API, and every module that registers an embedder.

timm's layout: the machinery is in :mod:`ingest.embedders.registry`; each embedder module registers itself
when imported, and this package imports each of them explicitly, so ``create_embedder(name)`` sees them all
whichever module was imported first.

- :mod:`~ingest.embedders.vit`: DINOv2 ViT-B/14 with registers (``dinov2_vitb14_reg``) and ``test_vit``;
- :mod:`~ingest.embedders.qa`: the weight-free ``qa`` statistics (:mod:`~ingest.embedders.qa_features`)
  and the ViT + qa hybrids (``dinov2+qa``, ``test_vit+qa``).
"""

from ingest.embedders import qa, vit  # noqa: F401 - imported for their registrations
from ingest.embedders.registry import (
    Embedder,
    EmbedderConfig,
    TorchEmbedder,
    create_embedder,
    get_embedder_config,
    list_embedders,
    register_embedder,
    resolve_devices,
)

__all__ = [
    "Embedder",
    "EmbedderConfig",
    "TorchEmbedder",
    "create_embedder",
    "get_embedder_config",
    "list_embedders",
    "register_embedder",
    "resolve_devices",
]

"""Embedder registry: a name -> something that turns CCD images into fixed-length float32 vectors.

Interface
---------
``Embedder`` (every embedder, torch or not):
    ``.config`` (``EmbedderConfig``), ``.dim``, ``.weights_sha256``, ``.preset`` / ``.preset_name``
    (``None`` for embedders that read raw arrays), ``.device``, ``.to(device)``, ``.provenance()`` and the
    general entry point ``embed_images(images, metas=None) -> np.ndarray (N, dim) float32`` taking 2-D CCD
    arrays and, optionally, one mapping of header values per image (e.g. ``{"exptime": 90.0}``).
``TorchEmbedder`` (the ViTs) adds the split used by the batch pipeline: DataLoader workers call
    ``preprocess(image) -> (3, H, W)`` (a pure function of the image and the preset, see
    ``ingest.preprocess``) and the main process calls ``embed(batch (N, 3, H, W)) -> (N, dim)``, which runs
    under ``torch.inference_mode()`` and, on CUDA, bf16 autocast with fused (SDPA) attention.
    ``embed_images`` is ``embed(preprocess_batch(images))``.

``weights_sha256`` is the sha256 hex of the weights file's bytes; seeded random weights are
``"random:seed=N"``; weights from timm's hub are ``"timm-hub:<model>.<tag>:sha256=<hex>"`` where the hex is
``state_dict_sha256`` of the loaded tensors (the hub file's own path is not exposed).

Registered embedders
--------------------
``dinov2_vitb14_reg`` and ``test_vit`` (:mod:`ingest.embedders.vit`), ``qa`` and the ViT + qa hybrids
(:mod:`ingest.embedders.qa`); ``list_embedders()`` names them all.

Adding an embedder
------------------
Decorate a factory ``(config, *, weights, preset) -> Embedder`` with
``@register_embedder(EmbedderConfig(...))`` in a module of this package and import that module in
``ingest/embedders/__init__.py`` (timm's way: each module registers itself when it is imported, and the
package imports every one, so any import of the package sees the full registry). A non-torch embedder
(``qa``) subclasses ``Embedder``, sets ``needs_torch=False`` and ``default_preset=None``, and implements
only ``embed_images``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ingest.preprocess import Preset, get_preset, preprocess, preprocess_batch
from vecstore.errors import BadInputError, ConfigError, EmbedderError


@dataclass(frozen=True)
class EmbedderConfig:
    """What an embedder is, independent of its weights: enough to size a store and check provenance."""

    name: str
    dim: int
    arch: str  # architecture id, e.g. timm's model name
    patch_size: int | None  # None for embedders that are not patch-based
    default_preset: str | None  # None for embedders that take raw CCD arrays
    needs_weights: bool  # True: useless without trained weights (file or hub)
    needs_torch: bool = True
    weights_url: str | None = None  # where to get the weights file
    description: str = ""


EmbedderFactory = Callable[..., "Embedder"]

_REGISTRY: dict[str, tuple[EmbedderConfig, EmbedderFactory]] = {}


def register_embedder(config: EmbedderConfig) -> Callable[[EmbedderFactory], EmbedderFactory]:
    """Decorator registering ``factory(config, *, weights, preset) -> Embedder`` under ``config.name``."""

    def decorate(factory: EmbedderFactory) -> EmbedderFactory:
        if config.name in _REGISTRY:
            raise EmbedderError(f"embedder {config.name!r} is registered twice")
        _REGISTRY[config.name] = (config, factory)
        return factory

    return decorate


def list_embedders() -> list[str]:
    """Names of all registered embedders, sorted."""
    return sorted(_REGISTRY)


def get_embedder_config(name: str) -> EmbedderConfig:
    """The config of a registered embedder, without building it."""
    return _lookup(name)[0]


def create_embedder(
    name: str, *, weights: str | Path | None = None, device: str = "cpu", preset: str | Preset | None = None
) -> Embedder:
    """Build the embedder ``name`` on ``device`` ('cpu', 'cuda', 'cuda:N').

    ``weights`` is a weights file (required in practice for ``dinov2_vitb14_reg`` offline); ``preset``
    overrides the embedder's default preprocessing preset.
    """
    config, factory = _lookup(name)
    target_device = _single_device(device)
    chosen = _choose_preset(config, preset)
    embedder = factory(config, weights=weights, preset=chosen)
    return embedder.to(target_device)


def resolve_devices(spec: str) -> list[str]:
    """'cpu' -> ['cpu']; 'cuda' -> every visible GPU; 'cuda:0,1' -> ['cuda:0', 'cuda:1'].

    EmbedderError if CUDA is asked for and unavailable, a GPU index does not exist, or the spec is
    malformed.
    """
    text = spec.strip().lower()
    if text == "cpu":
        return ["cpu"]
    if text != "cuda" and not text.startswith("cuda:"):
        raise EmbedderError(f"unknown device {spec!r}: expected 'cpu', 'cuda', 'cuda:N' or 'cuda:N,M,...'")
    if not torch.cuda.is_available():
        raise EmbedderError(
            f"device {spec!r} asked for CUDA but torch.cuda.is_available() is False on this host "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu"
        )
    count = torch.cuda.device_count()
    if text == "cuda":
        return [f"cuda:{index}" for index in range(count)]
    indices = _parse_gpu_indices(spec, text.removeprefix("cuda:"))
    absent = [index for index in indices if index >= count]
    if absent:
        raise EmbedderError(
            f"device {spec!r}: GPU {absent} not present; this host has {count} (0..{count - 1})"
        )
    return [f"cuda:{index}" for index in indices]


class Embedder(abc.ABC):
    """CCD images -> (N, dim) float32 vectors. See the module docstring for the contract."""

    def __init__(self, config: EmbedderConfig, *, weights_sha256: str, preset: Preset | None) -> None:
        self.config = config
        self.weights_sha256 = weights_sha256
        self.preset = preset
        self.device = "cpu"

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def preset_name(self) -> str | None:
        return None if self.preset is None else self.preset.name

    def provenance(self) -> dict[str, Any]:
        """What a store records with every vector so that vectors of different recipes are never mixed."""
        return {
            "embedder": self.config.name,
            "dim": self.dim,
            "weights_sha256": self.weights_sha256,
            "preset": None if self.preset is None else self.preset.key,
        }

    def to(self, device: str) -> Embedder:
        """Move to ``device``; the base class only records it (non-torch embedders run on the CPU)."""
        self.device = _single_device(device)
        return self

    @abc.abstractmethod
    def embed_images(
        self, images: Sequence[np.ndarray], metas: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        """2-D CCD arrays (and optional per-image header values) -> (N, dim) float32."""

    # The batch pipeline's two stages: ``preparer()`` is a small picklable callable that DataLoader worker
    # processes apply to each CCD (pixels, meta) -> payload; ``embed_prepared`` turns a batch of payloads
    # into vectors in the process that owns the device. By default the worker does all the work.
    def preparer(self) -> Callable[[np.ndarray, Mapping[str, Any]], Any]:
        return _EmbedInWorker(self.config.name, self.preset_name)

    def embed_prepared(self, payloads: Sequence[Any]) -> np.ndarray:
        if not len(payloads):
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([np.asarray(p, dtype=np.float32) for p in payloads])

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Names of the vector's components when they mean something on their own (``qa``), else None."""
        return None


class TorchEmbedder(Embedder):
    """A torch module and its read-out (``forward``: batch -> (N, dim) tensor), fed by a preset."""

    def __init__(
        self,
        config: EmbedderConfig,
        model: nn.Module,
        forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
        *,
        weights_sha256: str,
        preset: Preset,
    ) -> None:
        super().__init__(config, weights_sha256=weights_sha256, preset=preset)
        self.model = model.eval()
        self._forward = forward

    def to(self, device: str) -> TorchEmbedder:
        super().to(device)
        self.model.to(self.device)
        return self

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One CCD array -> (3, H, W) float32 with this embedder's preset (safe in DataLoader workers)."""
        return preprocess(image, self.preset)

    def embed(self, batch: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) tensor of this embedder's preset -> (N, dim) float32 numpy."""
        self._check_batch(batch)
        if batch.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            vectors = self._forward(self.model, batch.to(self.device, dtype=torch.float32, non_blocking=True))
        return vectors.float().cpu().numpy()

    def _autocast(self) -> contextlib.AbstractContextManager:
        # bf16 on CUDA: the tensor cores' fast path and a range as wide as fp32's, so the raw ADU of the
        # ``paper`` preset cannot overflow as they could in fp16. CPU stays fp32 (bit-reproducible).
        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed_images(
        self, images: Sequence[np.ndarray], metas: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        """Preprocess then embed; ``metas`` are not used by image-only embedders."""
        return self.embed(preprocess_batch(images, self.preset))

    def preparer(self) -> Callable[[np.ndarray, Mapping[str, Any]], Any]:
        return _Preprocess(self.preset)

    def embed_prepared(self, payloads: Sequence[Any]) -> np.ndarray:
        if not len(payloads):
            return np.empty((0, self.dim), dtype=np.float32)
        return self.embed(torch.stack([torch.as_tensor(p) for p in payloads]))

    def _check_batch(self, batch: torch.Tensor) -> None:
        expected = self.preset.shape
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            got = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise BadInputError(
                f"embedder {self.config.name!r} with preset {self.preset.key} takes (N, {expected[0]}, "
                f"{expected[1]}, {expected[2]}) tensors, got {got}"
            )
        if not batch.is_floating_point():
            raise BadInputError(
                f"embedder {self.config.name!r} takes floating-point tensors, got {batch.dtype}"
            )


class _Preprocess:
    """Worker stage of a torch embedder: the preset's preprocessing (no model in the worker)."""

    def __init__(self, preset: Preset):
        self.preset = preset

    def __call__(self, pixels: np.ndarray, meta: Mapping[str, Any]) -> torch.Tensor:
        return preprocess(pixels, self.preset)


class _EmbedInWorker:
    """Worker stage of an embedder without a model: the worker computes the vector itself."""

    def __init__(self, name: str, preset: str | None):
        self.name, self.preset = name, preset
        self._embedder: Embedder | None = None

    def __call__(self, pixels: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
        if self._embedder is None:
            self._embedder = create_embedder(self.name, preset=self.preset)
        return self._embedder.embed_images([pixels], [meta])[0]


def _lookup(name: str) -> tuple[EmbedderConfig, EmbedderFactory]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise EmbedderError(
            f"unknown embedder {name!r}; valid embedders: {', '.join(sorted(_REGISTRY))}"
        ) from None


def _choose_preset(config: EmbedderConfig, preset: str | Preset | None) -> Preset | None:
    requested = preset if preset is not None else config.default_preset
    if requested is None:
        return None
    chosen = get_preset(requested)
    if config.patch_size and (chosen.height % config.patch_size or chosen.width % config.patch_size):
        raise ConfigError(
            f"preset {chosen.key} ({chosen.height} x {chosen.width}) is not a multiple of embedder "
            f"{config.name!r}'s patch size {config.patch_size}"
        )
    return chosen


def _single_device(spec: str) -> str:
    devices = resolve_devices(spec)
    if len(devices) != 1:
        raise EmbedderError(
            f"device {spec!r} names {len(devices)} devices; an Embedder runs on one; "
            "create one per device from resolve_devices()"
        )
    return devices[0]


def _parse_gpu_indices(spec: str, text: str) -> list[int]:
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise EmbedderError(f"device {spec!r}: expected GPU indices like 'cuda:0' or 'cuda:0,1'") from None
    if any(index < 0 for index in indices) or len(set(indices)) != len(indices):
        raise EmbedderError(f"device {spec!r}: GPU indices must be distinct and >= 0")
    return indices

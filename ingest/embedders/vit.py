"""DINOv2 ViTs with registers on timm: one builder, one checkpoint loader, one CLS read-out, and the two
registered ViT embedders, ``dinov2_vitb14_reg`` (the paper's model) and the tiny ``test_vit``.

The ViT-B/14 embedder and the tiny reference model in ``tests/data/dinov2-reference`` go through the same
three functions: ``build_dinov2_vit`` -> ``load_dinov2_checkpoint`` -> ``dinov2_cls_embedding``.

Architecture: timm's ``vit_base_patch14_reg4_dinov2`` (patch 14, 4 register tokens, layer scale, pos-embed
for a 37 x 37 grid = 518 px, ``no_embed_class``: the pos-embed covers patch tokens only) built with
``dynamic_img_size=True`` so any H x W that is a multiple of 14 works.

Position-embedding interpolation: Meta's ``DinoVisionTransformer.interpolate_pos_encoding`` for the
``*_reg`` hub models (``interpolate_antialias=True``, ``interpolate_offset=0.0``) resizes the 37 x 37 patch
pos-embed with ``F.interpolate(mode="bicubic", antialias=True, size=(H/14, W/14))`` and leaves the CLS
entry alone. timm's dynamic path (``resample_abs_pos_embed``) makes exactly that call (bicubic,
``antialias=True``, ``size=``, ``align_corners=None``), and with ``no_embed_class`` the CLS entry is folded
into ``cls_token`` at load time instead of being added at run time, which is the same sum. Verified
against Meta's own outputs to <3e-6 at 224x224, 224x448, 518x518 and 280x140; the wrong variants differ
by 1e-2..2e-1 (no antialias: 0.17; bilinear: 0.02; the old offset-0.1 ``scale_factor`` path: 0.017).
Note that antialias changes bicubic *upsampling* too (PyTorch's antialiased kernel uses a = -0.5 rather
than -0.75), which matters for ``paper``'s 168 x 84 grid.

Checkpoint layouts (detected from the keys):
  Meta (``dinov2_vitb14_reg4_pretrain.pth``): ``cls_token``, ``pos_embed`` (1, 1 + 37*37, D) with a CLS
  entry, ``register_tokens``, ``mask_token``, ``blocks.N.ls1.gamma`` ...;
  timm: ``cls_token`` (CLS pos-embed already added), ``reg_token``, ``pos_embed`` (1, 37*37, D), no
  ``mask_token``. The conversion is timm's ``_convert_dinov2`` (called by its ``checkpoint_filter_fn``),
  reproduced here so a timm upgrade cannot change it silently and so errors can name the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import socket
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ingest.embedders.registry import Embedder, EmbedderConfig, TorchEmbedder, register_embedder
from ingest.preprocess import Preset
from vecstore.errors import EmbedderError

# timm's name for the DINOv2 ViT-B/14 with 4 registers; its hub tag holds Meta's weights converted.
TIMM_VITB14_REG4 = "vit_base_patch14_reg4_dinov2"
TIMM_VITB14_REG4_HUB_TAG = "lvd142m"
META_VITB14_REG4_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"

# Keys only Meta's layout has.
_META_ONLY_KEYS = ("register_tokens", "mask_token")


def build_dinov2_vit(
    *,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    patch_size: int = 14,
    num_register_tokens: int = 4,
    img_size: int = 518,
    mlp_ratio: float = 4.0,
    init_values: float = 1e-5,
    pretrained: bool = False,
    device: str | None = None,
) -> nn.Module:
    """A DINOv2-with-registers ViT (timm ``vit_base_patch14_reg4_dinov2`` layout), eval mode, no head.

    The defaults are ViT-B/14; ``img_size`` sets the pos-embed grid the checkpoint was trained with (518 ->
    37 x 37), not the input size. ``pretrained=True`` fetches timm's hub weights (needs the internet and
    the ViT-B/14 defaults). ``device="meta"`` builds shapes only, without timm's random initialisation
    (~5 s for ViT-B/14 on a CPU), for a model whose every tensor is then loaded by
    ``load_dinov2_checkpoint`` / ``load_dinov2_state_dict``.
    """
    with torch.device(device) if device else contextlib.nullcontext():
        model = timm.create_model(
            TIMM_VITB14_REG4 + (f".{TIMM_VITB14_REG4_HUB_TAG}" if pretrained else ""),
            pretrained=pretrained,
            num_classes=0,
            dynamic_img_size=True,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            reg_tokens=num_register_tokens,
            mlp_ratio=mlp_ratio,
            init_values=init_values,
        )
    enable_fused_attention(model)
    return model.eval()


def enable_fused_attention(model: nn.Module) -> int:
    """Make every timm attention block use ``F.scaled_dot_product_attention``; returns how many.

    timm decides per block at construction from ``timm.layers.use_fused_attn()`` (off if TIMM_FUSED_ATTN=0
    or while exporting); SDPA is the flash / memory-efficient kernel on CUDA and never materialises the
    (tokens x tokens) attention matrix, which for ``paper``'s 14,117 tokens is 800 MB per head in fp32.
    """
    if not hasattr(F, "scaled_dot_product_attention"):
        return 0
    switched = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = True
            switched += 1
    return switched


def dinov2_cls_embedding(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The final-norm CLS token, Meta's ``x_norm_clstoken`` (what DINOv2's ``forward`` returns in eval)."""
    tokens = model.forward_features(batch)  # (N, 1 + registers + patches, D), after the final LayerNorm
    return tokens[:, 0]


def checkpoint_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """``"meta"`` or ``"timm"``, from keys only Meta's DINOv2 checkpoints have."""
    return "meta" if any(key in state_dict for key in _META_ONLY_KEYS) else "timm"


def meta_to_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's DINOv2 key layout -> timm's (the mapping of timm's ``_convert_dinov2``).

    Drops ``mask_token`` (training only); ``register_tokens`` -> ``reg_token``; adds the CLS pos-embed entry
    to ``cls_token`` and keeps the patch entries as ``pos_embed`` (timm's ``no_embed_class``); SwiGLU
    ``mlp.w12/w3`` -> ``mlp.fc1/fc2`` (ViT-g only). Layer scale is ``ls1.gamma`` in both.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key == "mask_token":
            continue
        if key == "register_tokens":
            converted["reg_token"] = value
        elif key == "cls_token" and "pos_embed" in state_dict:
            converted["cls_token"] = value + state_dict["pos_embed"][:, :1]
        elif key == "pos_embed":
            converted["pos_embed"] = value[:, 1:]
        else:
            converted[key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = value
    return converted


def read_checkpoint(path: str | Path, *, download_hint: str = "") -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, sha256 hex of the file's bytes) of a weights-only torch checkpoint.

    The file is read once and both hashed and parsed from the same bytes, so the digest describes exactly
    the weights loaded. ``download_hint`` is appended to the error when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise EmbedderError(f"weights file {path} does not exist{download_hint}")
    payload = path.read_bytes()
    try:
        loaded = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise EmbedderError(f"weights file {path} is not a weights-only torch checkpoint: {exc}") from exc
    state_dict = _unwrap_state_dict(loaded)
    if state_dict is None:
        raise EmbedderError(f"weights file {path} does not hold a state dict of tensors")
    return state_dict, hashlib.sha256(payload).hexdigest()


def load_dinov2_checkpoint(model: nn.Module, path: str | Path, *, download_hint: str = "") -> str:
    """Load a DINOv2 checkpoint in Meta's or timm's layout into ``model`` strictly; returns its sha256.

    EmbedderError names the file and lists missing / unexpected / wrongly-shaped keys when the file is
    for another architecture.
    """
    state_dict, sha256 = read_checkpoint(path, download_hint=download_hint)
    load_dinov2_state_dict(model, state_dict, source=f"weights file {path}", download_hint=download_hint)
    return sha256


def load_dinov2_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, download_hint: str = ""
) -> None:
    """Load a Meta- or timm-layout state dict into ``model`` strictly; ``source`` names it in errors.

    The tensors are assigned, not copied, so ``model`` may have been built on the meta device; they are
    made float32 first so a half-precision file cannot turn the model into a half-precision one.
    """
    layout = checkpoint_layout(state_dict)
    if layout == "meta":
        state_dict = meta_to_timm_state_dict(state_dict)
    problems = describe_state_dict_mismatch(model, state_dict)
    if problems:
        raise EmbedderError(
            f"{source} ({layout} layout, keys named as in timm) does not fit this model "
            f"({_describe_model(model)}): {problems}{download_hint}"
        )
    model.load_state_dict({key: value.float() for key, value in state_dict.items()}, strict=True, assign=True)


def describe_state_dict_mismatch(
    model: nn.Module, state_dict: dict[str, torch.Tensor], shown: int = 4
) -> str:
    """'' if ``state_dict`` fits ``model`` exactly, else a short account of missing, unexpected and
    wrongly-shaped keys (the first ``shown`` of each)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} in file vs {tuple(value.shape)} expected"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape", wrong_shape)):
        if items:
            more = f" ... ({len(items)} in all)" if len(items) > shown else ""
            parts.append(f"{label}: {', '.join(items[:shown])}{more}")
    return "; ".join(parts)


def seeded_random_state_dict(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Weights for ``model`` that depend only on ``seed``, the keys and the shapes.

    Independent of timm's own initialisation (which may change between versions): one ``torch.Generator``
    fills the tensors in sorted key order. Matrices get N(0, 1/fan_in) so activations stay O(1) and the
    CLS output varies with the input; LayerNorm and layer-scale weights are 1; biases and tokens
    N(0, 0.02^2). The CPU generator gives the same numbers in every process and on every machine.
    """
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, reference in sorted(model.state_dict().items()):
        shape = tuple(reference.shape)
        if key.endswith(".gamma") or (key.endswith("weight") and len(shape) == 1):
            weights[key] = torch.ones(shape)
        elif key.endswith("weight"):
            fan_in = math.prod(shape[1:])
            weights[key] = torch.randn(shape, generator=generator) / fan_in**0.5
        else:
            weights[key] = torch.randn(shape, generator=generator) * 0.02
    return weights


def _unwrap_state_dict(loaded: object) -> dict[str, torch.Tensor] | None:
    # Training scripts often save {"model": state_dict} or {"state_dict": ...}.
    for wrapper in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return None
    return dict(loaded)


def _describe_model(model: nn.Module) -> str:
    embed_dim = getattr(model, "embed_dim", "?")
    depth = len(getattr(model, "blocks", ()))
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", "?")
    return f"DINOv2 ViT embed_dim {embed_dim}, depth {depth}, pos-embed grid {grid}"


# ----------------------------------------------------------------------------------------------- registered
TEST_VIT_SEED = 0


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 hex over the model's tensors (sorted names, dtype, shape, bytes): identifies loaded weights."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return digest.hexdigest()


VITB14_REG = EmbedderConfig(
    name="dinov2_vitb14_reg",
    dim=768,
    arch=TIMM_VITB14_REG4,
    patch_size=14,
    default_preset="cpu224",
    needs_weights=True,
    weights_url=META_VITB14_REG4_URL,
    description="DINOv2 ViT-B/14 with 4 registers (the paper's model), normed CLS token",
)

TEST_VIT = EmbedderConfig(
    name="test_vit",
    dim=64,
    arch=f"{TIMM_VITB14_REG4}(embed_dim=64,depth=2,num_heads=2)",
    patch_size=14,
    default_preset="tiny112",
    needs_weights=False,
    description="tiny DINOv2-layout ViT with seeded random weights, for tests",
)


@register_embedder(VITB14_REG)
def _create_vitb14_reg(config: EmbedderConfig, *, weights: str | Path | None, preset: Preset) -> Embedder:
    hint = (
        f"; download Meta's dinov2_vitb14_reg4_pretrain.pth from {config.weights_url} and pass it with "
        "--weights FILE, or use --embedder qa (no weights needed)"
    )
    if weights is None:
        model = _vitb14_from_timm_hub(config, hint)
        sha256 = f"timm-hub:{TIMM_VITB14_REG4}.{TIMM_VITB14_REG4_HUB_TAG}:sha256={state_dict_sha256(model)}"
    else:
        # Read the file before building the 86M-parameter model so a bad path fails at once.
        state_dict, sha256 = read_checkpoint(weights, download_hint=hint)
        model = build_dinov2_vit(device="meta")
        load_dinov2_state_dict(model, state_dict, source=f"weights file {weights}", download_hint=hint)
    _check_output_dim(model, config)
    return TorchEmbedder(config, model, dinov2_cls_embedding, weights_sha256=sha256, preset=preset)


@register_embedder(TEST_VIT)
def _create_test_vit(config: EmbedderConfig, *, weights: str | Path | None, preset: Preset) -> Embedder:
    # Same shape as the Meta reference model (init_values=1.0), so its checkpoint loads here too.
    model = build_dinov2_vit(embed_dim=64, depth=2, num_heads=2, init_values=1.0, device="meta")
    if weights is None:
        load_dinov2_state_dict(model, seeded_random_state_dict(model, TEST_VIT_SEED), source="seeded weights")
        sha256 = f"random:seed={TEST_VIT_SEED}"
    else:
        sha256 = load_dinov2_checkpoint(model, weights)
    _check_output_dim(model, config)
    return TorchEmbedder(config, model, dinov2_cls_embedding, weights_sha256=sha256, preset=preset)


def _hub_reachable(host: str = "huggingface.co", timeout_s: float = 3.0) -> bool:
    """One quick connection attempt, so that an offline machine fails in seconds, not after a minute of
    the hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _vitb14_from_timm_hub(config: EmbedderConfig, hint: str) -> nn.Module:
    if not _hub_reachable():
        raise EmbedderError(
            f"embedder {config.name!r} needs weights and no file was given; timm's hub "
            f"({TIMM_VITB14_REG4}.{TIMM_VITB14_REG4_HUB_TAG}) is not reachable from this machine{hint}"
        )
    try:
        return build_dinov2_vit(pretrained=True)
    except Exception as exc:  # huggingface_hub / urllib raise many types when offline or blocked
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise EmbedderError(
            f"embedder {config.name!r} needs weights and no file was given; timm's hub "
            f"({TIMM_VITB14_REG4}.{TIMM_VITB14_REG4_HUB_TAG}) could not be reached ({reason}){hint}"
        ) from exc


def _check_output_dim(model: nn.Module, config: EmbedderConfig) -> None:
    if getattr(model, "num_features", config.dim) != config.dim:
        raise EmbedderError(
            f"embedder {config.name!r}: model gives {model.num_features}-d, config says {config.dim}"
        )

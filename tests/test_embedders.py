"""Embedders: Meta's DINOv2 reference outputs, checkpoint layouts, errors, test_vit determinism, devices."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import ingest.embedders.registry as registry
import ingest.embedders.vit as vit
from ingest.embedders import (
    Embedder,
    EmbedderConfig,
    TorchEmbedder,
    create_embedder,
    get_embedder_config,
    list_embedders,
    register_embedder,
    resolve_devices,
)
from ingest.embedders.vit import (
    META_VITB14_REG4_URL,
    build_dinov2_vit,
    checkpoint_layout,
    dinov2_cls_embedding,
    load_dinov2_checkpoint,
    load_dinov2_state_dict,
    seeded_random_state_dict,
    state_dict_sha256,
)
from ingest.preprocess import preprocess_batch
from vecstore.errors import BadInputError, ConfigError, EmbedderError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(__file__).parent / "data" / "dinov2-reference"
REFERENCE = json.loads((REFERENCE_DIR / "reference.json").read_text())
META_TINY = REFERENCE_DIR / "tiny_dinov2_reg4_meta_layout.pth"


def build_reference_tiny() -> torch.nn.Module:
    """The reference model's architecture, from reference.json, through the embedders' builder."""
    config = REFERENCE["config"]
    assert config["interpolate_antialias"] is True and config["interpolate_offset"] == 0.0
    return build_dinov2_vit(
        embed_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        patch_size=config["patch_size"],
        num_register_tokens=config["num_register_tokens"],
        img_size=config["img_size"],
        mlp_ratio=config["mlp_ratio"],
        init_values=config["init_values"],
        device="meta",  # every tensor comes from the checkpoint, as in the embedders
    )


def reference_case(size: str) -> tuple[torch.Tensor, np.ndarray]:
    case = REFERENCE["cases"][size]
    return torch.from_numpy(np.load(REFERENCE_DIR / case["input"])), np.load(
        REFERENCE_DIR / case["expected_cls"]
    )


def cls_of(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return dinov2_cls_embedding(model, batch).numpy()


def sky_images(count: int, seed: int = 0, shape: tuple[int, int] = (400, 200)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        image = 1000.0 + 20.0 * rng.standard_normal(shape)
        image += index * 50.0 * np.linspace(0.0, 1.0, shape[0])[:, None]  # a different gradient each
        images.append(image.astype(np.float32))
    return images


def meta_interpolate_pos_encoding(pos_embed: torch.Tensor, height: int, width: int, patch_size: int = 14):
    """Transcription of DINOv2's ``DinoVisionTransformer.interpolate_pos_encoding`` for the ``*_reg`` models
    (interpolate_antialias=True, interpolate_offset=0.0), written independently of timm: (1, 1 + h*w, D)."""
    previous_dtype = pos_embed.dtype
    npatch_model = pos_embed.shape[1] - 1
    side = int(math.sqrt(npatch_model))
    assert side * side == npatch_model
    class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:].float()
    dim = pos_embed.shape[-1]
    h0, w0 = height // patch_size, width // patch_size
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=True,
        size=(h0, w0),
    )
    assert (h0, w0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)


# --- Meta's reference outputs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_tiny() -> torch.nn.Module:
    model = build_reference_tiny()
    load_dinov2_checkpoint(model, META_TINY)
    return model


@pytest.mark.parametrize("size", sorted(REFERENCE["cases"]))
def test_reference_cls_matches_meta(reference_tiny, size):
    batch, expected = reference_case(size)
    got = cls_of(reference_tiny, batch)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) < 1e-5


def test_reference_comparison_detects_wrong_interpolation(reference_tiny, monkeypatch):
    # The guard is only worth something if a plausible mistake fails it: timm's resampling without
    # antialias (its pre-DINOv2 default elsewhere) is off by ~0.1.
    original = timm.models.vision_transformer.resample_abs_pos_embed
    monkeypatch.setattr(
        timm.models.vision_transformer,
        "resample_abs_pos_embed",
        lambda *args, **kwargs: original(*args, **{**kwargs, "antialias": False}),
    )
    batch, expected = reference_case("224x448")
    assert float(np.abs(cls_of(reference_tiny, batch) - expected).max()) > 1e-3


def test_reference_comparison_detects_wrong_key_mapping():
    # Dropping the CLS entry of Meta's pos-embed instead of folding it into cls_token.
    state_dict = torch.load(META_TINY, weights_only=True)
    converted = vit.meta_to_timm_state_dict(state_dict)
    converted["cls_token"] = state_dict["cls_token"]
    model = build_reference_tiny()
    model.load_state_dict(converted, assign=True)
    batch, expected = reference_case("224x224")
    assert float(np.abs(cls_of(model, batch) - expected).max()) > 1e-3


@pytest.mark.parametrize("grid", [(168, 84), (74, 37), (32, 16), (8, 4)])
def test_pos_embed_interpolation_is_metas_at_preset_grids(reference_tiny, grid):
    # The reference cases only downsample the 37x37 grid; the paper's 168x84 upsamples, where
    # antialiased bicubic differs from plain bicubic too. Compare with Meta's formula directly.
    meta_pos_embed = torch.load(META_TINY, weights_only=True)["pos_embed"]
    expected = meta_interpolate_pos_encoding(meta_pos_embed, grid[0] * 14, grid[1] * 14)
    dim = meta_pos_embed.shape[-1]
    with torch.inference_mode():
        tokens = reference_tiny._pos_embed(torch.zeros(1, grid[0], grid[1], dim))
    patch_pos = tokens[:, 1 + reference_tiny.num_reg_tokens :]
    assert float((patch_pos - expected[:, 1:]).abs().max()) < 1e-6


# --- checkpoint layouts -----------------------------------------------------------------------------------


def test_meta_and_timm_layouts_give_identical_outputs(tmp_path, reference_tiny):
    timm_file = tmp_path / "tiny_timm_layout.pth"
    torch.save(reference_tiny.state_dict(), timm_file)
    assert checkpoint_layout(torch.load(META_TINY, weights_only=True)) == "meta"
    assert checkpoint_layout(torch.load(timm_file, weights_only=True)) == "timm"

    from_timm = build_reference_tiny()
    sha256 = load_dinov2_checkpoint(from_timm, timm_file)

    assert sha256 == hashlib.sha256(timm_file.read_bytes()).hexdigest()
    for size in REFERENCE["cases"]:
        batch, _ = reference_case(size)
        np.testing.assert_array_equal(cls_of(from_timm, batch), cls_of(reference_tiny, batch))


def test_vitb14_accepts_metas_documented_key_layout():
    # dinov2_vitb14_reg4_pretrain.pth as documented by Meta: a CLS slot in pos_embed, register_tokens,
    # mask_token, layer scale as ls1/ls2.gamma. Built from the documented names, not from our converter.
    dim, blocks = 768, 12
    layout = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 1 + 37 * 37, dim),
        "register_tokens": (1, 4, dim),
        "mask_token": (1, dim),
        "patch_embed.proj.weight": (dim, 3, 14, 14),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for block in range(blocks):
        for name, shape in {
            "norm1.weight": (dim,), "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
            "ls1.gamma": (dim,), "norm2.weight": (dim,), "norm2.bias": (dim,),
            "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
            "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,),
            "ls2.gamma": (dim,),
        }.items():  # fmt: skip
            layout[f"blocks.{block}.{name}"] = shape
    generator = torch.Generator().manual_seed(0)
    state_dict = {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}
    model = build_dinov2_vit(device="meta")

    load_dinov2_state_dict(model, state_dict, source="Meta-layout ViT-B/14")

    assert torch.equal(model.reg_token, state_dict["register_tokens"])
    assert torch.equal(model.cls_token, state_dict["cls_token"] + state_dict["pos_embed"][:, :1])
    assert torch.equal(model.blocks[11].ls2.gamma, state_dict["blocks.11.ls2.gamma"])


@pytest.mark.slow
def test_vitb14_architecture_and_timm_layout_file_round_trip(tmp_path):
    model = build_dinov2_vit(device="meta")
    with torch.device("meta"):
        reference = timm.create_model("vit_base_patch14_reg4_dinov2", pretrained=False, num_classes=0)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert model.num_features == 768 and len(model.blocks) == 12 and model.num_reg_tokens == 4
    load_dinov2_state_dict(model, seeded_random_state_dict(model, seed=1), source="seed 1")
    weights = tmp_path / "vitb14_timm_layout.pth"
    torch.save(model.state_dict(), weights)

    embedder = create_embedder("dinov2_vitb14_reg", weights=weights)

    assert embedder.dim == 768 and embedder.preset_name == "cpu224"
    assert embedder.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    batch = preprocess_batch(sky_images(1, shape=(4094, 2046)), "cpu224")
    vectors = embedder.embed(batch)
    assert vectors.shape == (1, 768) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    np.testing.assert_array_equal(vectors, cls_of(model, batch))


# --- errors -----------------------------------------------------------------------------------------------


def test_missing_weights_file_names_the_path_and_the_url(tmp_path):
    missing = tmp_path / "nowhere" / "dinov2_vitb14_reg4_pretrain.pth"
    with pytest.raises(EmbedderError) as error:
        create_embedder("dinov2_vitb14_reg", weights=missing)
    assert str(missing) in str(error.value)
    assert META_VITB14_REG4_URL in str(error.value) and "--weights" in str(error.value)


def test_wrong_architecture_file_is_refused_with_the_differences():
    with pytest.raises(EmbedderError) as error:
        create_embedder("dinov2_vitb14_reg", weights=META_TINY)
    message = str(error.value)
    assert str(META_TINY) in message
    assert "missing keys: blocks.2." in message
    assert "pos_embed (1, 1369, 64) in file vs (1, 1369, 768) expected" in message
    assert META_VITB14_REG4_URL in message


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EmbedderError, match="not a weights-only torch checkpoint"):
        create_embedder("test_vit", weights=junk)


def test_without_a_file_the_hub_is_tried_and_the_error_says_where_to_get_weights(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    # Offline mode makes the hub fail at once instead of retrying for ~50 s as it does without network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(EmbedderError) as error:
        create_embedder("dinov2_vitb14_reg")
    message = str(error.value)
    assert "timm's hub" in message and META_VITB14_REG4_URL in message and "--weights" in message


def test_unknown_embedder_names_the_valid_ones():
    with pytest.raises(EmbedderError) as error:
        create_embedder("dinov3")
    assert "'dinov3'" in str(error.value)
    for name in ("dinov2_vitb14_reg", "test_vit"):
        assert name in str(error.value)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        create_embedder("test_vit", preset="huge")
    assert "'huge'" in str(error.value) and "cpu224" in str(error.value) and "paper" in str(error.value)


# --- test_vit -----------------------------------------------------------------------------------------------


def test_test_vit_config_and_provenance():
    embedder = create_embedder("test_vit")
    assert isinstance(embedder, TorchEmbedder) and embedder.config == get_embedder_config("test_vit")
    assert embedder.dim == 64 and embedder.preset_name == "tiny112" and embedder.device == "cpu"
    assert embedder.weights_sha256 == "random:seed=0"
    assert embedder.provenance() == {
        "embedder": "test_vit",
        "dim": 64,
        "weights_sha256": "random:seed=0",
        "preset": "tiny112@v1",
    }


def test_test_vit_embeds_and_separates_different_images():
    embedder = create_embedder("test_vit")
    images = sky_images(3)

    vectors = embedder.embed_images(images)

    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    np.testing.assert_array_equal(
        vectors, embedder.embed(torch.stack([embedder.preprocess(i) for i in images]))
    )
    assert not np.allclose(vectors[0], vectors[2], atol=1e-2), "random weights must still see the input"
    assert embedder.embed_images([]).shape == (0, 64)


_SUBPROCESS_EMBED = """
import sys
import numpy as np
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_embedders import sky_images
from ingest.embedders import create_embedder
np.save({out!r}, create_embedder("test_vit").embed_images(sky_images(4)))
"""


def test_test_vit_is_identical_in_another_process(tmp_path):
    out = tmp_path / "vectors.npy"
    code = _SUBPROCESS_EMBED.format(root=str(ROOT), tests=str(ROOT / "tests"), out=str(out))
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=300, cwd=tmp_path)

    here = create_embedder("test_vit").embed_images(sky_images(4))

    assert float(np.abs(np.load(out) - here).max()) <= 1e-6


def test_test_vit_loads_the_reference_checkpoint(reference_tiny):
    embedder = create_embedder("test_vit", weights=META_TINY)
    batch = preprocess_batch(sky_images(2), "tiny112")
    assert embedder.weights_sha256 == hashlib.sha256(META_TINY.read_bytes()).hexdigest()
    np.testing.assert_array_equal(embedder.embed(batch), cls_of(reference_tiny, batch))


def test_state_dict_digest_identifies_the_weights():
    first, second = create_embedder("test_vit"), create_embedder("test_vit")
    assert state_dict_sha256(first.model) == state_dict_sha256(second.model)
    with torch.no_grad():
        second.model.norm.bias[0] += 1e-3
    assert state_dict_sha256(first.model) != state_dict_sha256(second.model)


def test_embed_refuses_batches_of_another_preset():
    embedder = create_embedder("test_vit")
    with pytest.raises(BadInputError, match=r"tiny112@v1 takes \(N, 3, 112, 56\)"):
        embedder.embed(torch.zeros(1, 3, 448, 224))
    with pytest.raises(BadInputError):
        embedder.embed(torch.zeros(3, 112, 56))


def test_preset_can_be_overridden_if_it_fits_the_patch_size():
    embedder = create_embedder("test_vit", preset="cpu224")
    assert embedder.embed_images(sky_images(1)).shape == (1, 64)
    assert embedder.provenance()["preset"] == "cpu224@v1"


# --- fused attention, autocast, devices ---------------------------------------------------------------------


def test_fused_attention_is_switched_on_even_if_timm_default_is_off(monkeypatch):
    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", 0)
    model = build_dinov2_vit(embed_dim=64, depth=2, num_heads=2)
    flags = [module.fused_attn for module in model.modules() if hasattr(module, "fused_attn")]
    assert flags == [True, True]


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_cuda_path_uses_bf16_autocast_and_cpu_does_not():
    embedder = create_embedder("test_vit")
    assert not isinstance(embedder._autocast(), torch.autocast)
    embedder.device = "cuda:0"  # only the choice of context is checked; nothing runs on a GPU
    context = embedder._autocast()
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


def test_resolve_devices_cpu():
    assert resolve_devices("cpu") == ["cpu"]
    assert resolve_devices(" CPU ") == ["cpu"]


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:0,1"])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmbedderError, match=r"torch.cuda.is_available\(\) is False.*--device cpu"):
        resolve_devices(spec)
    with pytest.raises(EmbedderError, match="is_available"):
        create_embedder("test_vit", device=spec)


def test_cuda_device_lists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_devices("cuda") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cuda:1") == ["cuda:1"]
    assert resolve_devices("cuda:0,1") == ["cuda:0", "cuda:1"]
    with pytest.raises(EmbedderError, match=r"GPU \[2\] not present; this host has 2"):
        resolve_devices("cuda:0,2")
    with pytest.raises(EmbedderError, match="distinct"):
        resolve_devices("cuda:1,1")
    with pytest.raises(EmbedderError, match="GPU indices"):
        resolve_devices("cuda:x")
    with pytest.raises(EmbedderError, match="one"):
        create_embedder("test_vit", device="cuda:0,1")


def test_unknown_device_is_refused():
    with pytest.raises(EmbedderError, match="expected 'cpu', 'cuda'"):
        resolve_devices("tpu")


# --- registry extension point ----------------------------------------------------------------------------


def test_a_non_torch_embedder_fits_the_interface(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class MeanLevel(Embedder):
        """Sky level per second and noise: what an image-statistics embedder looks like."""

        def embed_images(self, images, metas=None):
            metas = metas or [{}] * len(images)
            rows = [
                [np.median(i) / m.get("exptime", 1.0), np.std(i)] for i, m in zip(images, metas, strict=True)
            ]
            return np.asarray(rows, dtype=np.float32).reshape(len(images), self.dim)

    config = EmbedderConfig(
        name="mean_level", dim=2, arch="statistics", patch_size=None, default_preset=None,
        needs_weights=False, needs_torch=False,
    )  # fmt: skip

    @register_embedder(config)
    def _create(config, *, weights, preset):
        return MeanLevel(config, weights_sha256="none", preset=preset)

    embedder = create_embedder("mean_level")
    vectors = embedder.embed_images(sky_images(2), [{"exptime": 10.0}, {"exptime": 10.0}])

    assert "mean_level" in list_embedders() and embedder.preset_name is None
    assert vectors.shape == (2, 2) and vectors[0, 0] == pytest.approx(100.0, rel=0.01)
    assert embedder.provenance()["preset"] is None
    with pytest.raises(EmbedderError, match="registered twice"):
        register_embedder(config)(_create)

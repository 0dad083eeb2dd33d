"""Preprocessing presets: the paper's exact recipe, the robust sky stretch, determinism, speed, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ingest.preprocess import (
    Preset,
    get_preset,
    list_presets,
    preprocess,
    preprocess_batch,
    robust_sky_stats,
)
from vecstore.errors import BadInputError, ConfigError

CCD_SHAPE = (4094, 2046)
ROBUST_PRESETS = ["cpu224", "sky518", "tiny112"]
SKY_ADU, NOISE_ADU = 1200.0, 25.0


def sky_ccd(seed: int = 0, shape: tuple[int, int] = CCD_SHAPE) -> np.ndarray:
    """Flat sky with Gaussian read+photon noise, float32 like a CP image."""
    rng = np.random.default_rng(seed)
    return (SKY_ADU + NOISE_ADU * rng.standard_normal(shape)).astype(np.float32)


def add_saturated_stars(image: np.ndarray, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Copy of ``image`` with ``count`` 9x9 saturated stars, and a mask of the 60x60 boxes around them."""
    rng = np.random.default_rng(seed)
    starry, near_star = image.copy(), np.zeros(image.shape, dtype=bool)
    for row, col in zip(
        rng.integers(40, image.shape[0] - 40, count),
        rng.integers(40, image.shape[1] - 40, count),
        strict=True,
    ):
        starry[row - 4 : row + 5, col - 4 : col + 5] = 65535.0
        near_star[row - 30 : row + 30, col - 30 : col + 30] = True
    return starry, near_star


def paper_reference(image: np.ndarray) -> torch.Tensor:
    """The authors' recipe written out by hand: NaN/inf -> 0, plain bilinear to 2352 x 1176, grey x 3."""
    raw = torch.tensor(image, dtype=torch.float32)
    raw = torch.where(torch.isfinite(raw), raw, torch.zeros_like(raw))
    resized = F.interpolate(
        raw[None, None], size=(2352, 1176), mode="bilinear", align_corners=False, antialias=False
    )
    return resized[0].repeat(3, 1, 1)


# --- registry ---------------------------------------------------------------------------------------------


def test_registry_lists_the_presets_with_their_token_costs():
    assert {"paper", "cpu224", "sky518", "tiny112"} <= set(list_presets())
    assert get_preset("paper").tokens(14) == 168 * 84 == 14_112
    assert get_preset("cpu224").tokens(14) == 32 * 16 == 512
    assert get_preset("paper").key == "paper@v1"
    for name in list_presets():
        preset = get_preset(name)
        assert preset.height % 14 == 0 and preset.width % 14 == 0, name
        assert preset.height == 2 * preset.width, "H is the CCD's long axis (4094 rows x 2046 cols)"


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        get_preset("imagenet")
    assert "'imagenet'" in str(error.value)
    for name in list_presets():
        assert name in str(error.value)


def test_preset_rejects_unknown_normalisation():
    with pytest.raises(ConfigError, match="normalisation"):
        Preset(name="x", version=1, height=28, width=14, normalisation="zscale", antialias=True)


# --- paper ------------------------------------------------------------------------------------------------


def test_paper_preset_is_the_authors_recipe_exactly():
    image = sky_ccd()
    image[100:140, 300] = np.nan  # a masked column
    image[2000, 1000] = np.inf
    image[3000, 17] = -np.inf

    out = preprocess(image, "paper")

    assert out.shape == (3, 2352, 1176) and out.dtype == torch.float32
    assert torch.equal(out, paper_reference(image))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.isfinite(out).all()


def test_paper_preset_keeps_raw_values_and_zeroes_nans():
    image = np.full(CCD_SHAPE, 1000.0, dtype=np.float32)
    image[:, 1023:] = np.nan  # right half masked -> 0, left half keeps its raw ADU

    out = preprocess(image, "paper")

    assert float(out[0, 1000, 100]) == 1000.0
    assert float(out[0, 1000, 1100]) == 0.0


# --- robust presets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ROBUST_PRESETS)
def test_robust_preset_shape_range_and_channels(name):
    preset = get_preset(name)
    starry, _ = add_saturated_stars(sky_ccd(), count=20)

    out = preprocess(starry, preset)

    assert out.shape == (3, preset.height, preset.width) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert float(out.min()) >= np.arcsinh(preset.clip_low) - 1e-6
    assert float(out.max()) <= np.arcsinh(preset.clip_high) + 1e-6
    assert torch.equal(out[0], out[2])
    assert abs(float(out.median())) < 0.05, "sky maps to ~0"


@pytest.mark.parametrize("name", ["paper", *ROBUST_PRESETS])
def test_presets_are_bit_reproducible(name):
    image, _ = add_saturated_stars(sky_ccd(seed=3), count=5)
    assert torch.equal(preprocess(image, name), preprocess(image.copy(), name))


def test_robust_stats_ignore_a_few_saturated_stars():
    clean = sky_ccd()
    starry, near_star = add_saturated_stars(clean, count=30)

    median, sigma = robust_sky_stats(starry)

    assert median == pytest.approx(SKY_ADU, abs=0.05 * NOISE_ADU)
    assert sigma == pytest.approx(NOISE_ADU, rel=0.02)
    # Away from the stars the stretched image is what it would be without them.
    clean_out, starry_out = preprocess(clean, "cpu224")[0], preprocess(starry, "cpu224")[0]
    away = torch.from_numpy(~near_star)[None, None].float()
    away = F.interpolate(away, size=clean_out.shape, mode="area")[0, 0] == 1.0
    assert float((clean_out - starry_out)[away].abs().max()) < 0.01
    assert float(starry_out.max()) == pytest.approx(np.arcsinh(50.0), abs=1e-5), "stars hit the clip"


def test_robust_stretch_removes_exposure_time_and_sky_level():
    # A 3x longer exposure in a brighter band: every pixel scaled and offset; the stretch undoes both.
    image, _ = add_saturated_stars(sky_ccd(), count=5)
    scaled = (3.0 * image.astype(np.float64) + 500.0).astype(np.float32)
    difference = preprocess(image, "cpu224") - preprocess(scaled, "cpu224")
    assert float(difference.abs().max()) < 1e-3


def test_antialiased_downsampling_averages_the_noise():
    # Plain bilinear keeps the full per-pixel noise (it reads 4 of ~84 pixels per output pixel); the
    # antialiased resize averages each footprint, so pure sky noise shrinks by ~sqrt(84) ~ 9x.
    image = sky_ccd()
    antialiased = preprocess(image, "cpu224")[0]
    plain = dataclasses.replace(get_preset("cpu224"), name="cpu224-plain", antialias=False)
    aliased = preprocess(image, plain)[0]
    assert float(antialiased.std()) < 0.2 < float(aliased.std())


def test_nan_pixels_become_sky_in_robust_presets():
    image = sky_ccd()
    image[:, 1000:1010] = np.nan  # a masked bad column band
    image[5, 5] = np.inf

    out = preprocess(image, "cpu224")

    assert torch.isfinite(out).all()
    assert float(out[0, :, 109:111].abs().max()) < 0.5, "the masked band looks like sky, not a trench"


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_constant_or_empty_ccd_gives_zeros(fill):
    out = preprocess(np.full((200, 100), fill, dtype=np.float32), "tiny112")
    assert torch.equal(out, torch.zeros(3, 112, 56))


# --- inputs -----------------------------------------------------------------------------------------------


def test_input_is_not_modified_and_other_dtypes_are_accepted():
    image = sky_ccd(shape=(400, 200))
    image[3, 3] = np.nan
    before = image.copy()

    out = preprocess(image, "tiny112")

    np.testing.assert_array_equal(image, before)
    big_endian = image.astype(">f4")
    assert torch.equal(preprocess(big_endian, "tiny112"), out)
    as_int = np.nan_to_num(image).astype(np.int32)
    assert preprocess(as_int, "tiny112").shape == (3, 112, 56)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 10, 10), np.float32), np.zeros((0, 10), np.float32), np.array(["a"])]
)
def test_bad_arrays_are_refused(bad):
    with pytest.raises(BadInputError):
        preprocess(bad, "tiny112")


def test_preprocess_batch_stacks_and_handles_empty():
    images = [sky_ccd(seed=s, shape=(400, 200)) for s in range(3)]
    batch = preprocess_batch(images, "tiny112")
    assert batch.shape == (3, 3, 112, 56)
    assert torch.equal(batch[1], preprocess(images[1], "tiny112"))
    assert preprocess_batch([], "cpu224").shape == (0, 3, 448, 224)


def test_cpu224_on_a_full_ccd_gives_its_shape_and_finite_values():
    # how fast: bench/qa_bench.py ("preprocess cpu224"); timings are not asserted in tests
    tensor = preprocess(sky_ccd(), "cpu224")
    assert tuple(tensor.shape) == (3, 448, 224) and torch.isfinite(tensor).all()

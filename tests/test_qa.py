"""Tests of the weight-free QA features on synthetic CCDs whose answer is known or whose direction is sure."""

from __future__ import annotations

import math
import re

import fitsio
import numpy as np
import pytest
import sep

from ingest.embedders import create_embedder
from ingest.embedders.qa_features import QA_DIM, QA_FEATURE_NAMES, QA_FEATURES, qa_features, qa_features_batch
from vecstore.errors import BadInputError

SHAPE = (1024, 512)  # rows x columns: a quarter-size DECam CCD with the same 2:1 aspect
SKY = 1000.0
NOISE = math.sqrt(SKY)


# ------------------------------------------------------------------------------------ synthetic CCDs


def sky_image(shape=SHAPE, level=SKY, noise=NOISE, seed=0) -> np.ndarray:
    """Flat sky with Gaussian noise (Poisson-like: noise = sqrt(level) by default)."""
    return np.random.default_rng(seed).normal(level, noise, shape).astype(np.float32)


def star_positions(shape=SHAPE, count=60, margin=40, seed=1) -> list[tuple[float, float]]:
    """``count`` (x, y) positions on a jittered grid, so stars are isolated and away from the edges."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    across = max(1, round(math.sqrt(count * (cols - 2 * margin) / (rows - 2 * margin))))
    down = math.ceil(count / across)
    step_x = (cols - 2 * margin) / across
    step_y = (rows - 2 * margin) / down
    positions = []
    for k in range(count):
        i, j = divmod(k, across)
        x = margin + (j + 0.5) * step_x + rng.uniform(-0.2, 0.2) * step_x
        y = margin + (i + 0.5) * step_y + rng.uniform(-0.2, 0.2) * step_y
        positions.append((x, y))
    return positions


def _render(image, x, y, flux, profile, half_size) -> None:
    """Add ``flux`` x a profile(dx, dy) averaged over 5x5 sub-pixels (pixel-integrated) around (x, y)."""
    x0, y0 = round(x), round(y)
    sub = (np.arange(5) - 2) / 5.0
    offsets = np.arange(-half_size, half_size + 1)
    dx = (x0 + offsets[None, :, None, None] + sub[None, None, None, :]) - x
    dy = (y0 + offsets[:, None, None, None] + sub[None, None, :, None]) - y
    stamp = profile(dx, dy).mean(axis=(2, 3))
    rows = slice(y0 - half_size, y0 + half_size + 1)
    cols = slice(x0 - half_size, x0 + half_size + 1)
    image[rows, cols] += (flux * stamp / stamp.sum()).astype(np.float32)


def add_gaussian_star(image, x, y, flux, fwhm, ellipticity=0.0, theta_deg=0.0) -> None:
    """Elliptical Gaussian; ``fwhm`` is the geometric mean of the axes, ``theta`` from +x towards +y."""
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    major, minor = sigma / math.sqrt(1 - ellipticity), sigma * math.sqrt(1 - ellipticity)
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))

    def profile(dx, dy):
        along, across = dx * c + dy * s, -dx * s + dy * c
        return np.exp(-0.5 * ((along / major) ** 2 + (across / minor) ** 2))

    _render(image, x, y, flux, profile, int(5 * major) + 2)


def add_donut(image, x, y, flux, ring_radius=6.0, ring_width=1.5) -> None:
    """Out-of-focus star: a ring with a hole in the middle."""

    def profile(dx, dy):
        return np.exp(-0.5 * ((np.hypot(dx, dy) - ring_radius) / ring_width) ** 2)

    _render(image, x, y, flux, profile, int(ring_radius + 5 * ring_width) + 2)


def starfield(shape=SHAPE, count=60, fwhm=4.0, seed=0, **star_kwargs) -> np.ndarray:
    image = sky_image(shape, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for x, y in star_positions(shape, count, seed=seed + 1):
        add_gaussian_star(image, x, y, rng.uniform(3e4, 3e5), fwhm, **star_kwargs)
    return image


def features(image, **kwargs) -> dict[str, float]:
    return dict(zip(QA_FEATURE_NAMES, qa_features(image, **kwargs).tolist(), strict=True))


def fpacked(image, directory, seed=1) -> np.ndarray:
    """``image`` after a round trip through fpack-style compression, as real CP ``.fits.fz`` files hold it.

    Rice tiles with q = 4 (a quarter of the noise per quantisation level) and SUBTRACTIVE_DITHER_1, fpack's
    default. (SUBTRACTIVE_DITHER_2 would keep exact zeros exact and hide the problem.)
    """
    path = str(directory / f"fpacked-{seed}.fits")
    fitsio.write(
        path,
        image,
        compress="RICE",
        qlevel=4.0,
        qmethod=fitsio.SUBTRACTIVE_DITHER_1,
        dither_seed=seed,
        clobber=True,
    )
    return fitsio.read(path)


# -------------------------------------------------------------------------------------- the API


def test_qa_embedder_names_every_component():
    embedder = create_embedder("qa")
    assert embedder.dim == QA_DIM == len(embedder.feature_names) == 28
    assert embedder.feature_names == QA_FEATURE_NAMES and "psf_found" in QA_FEATURE_NAMES


def test_feature_names_are_unique_snake_case_and_match_dim():
    assert len(QA_FEATURE_NAMES) == len(set(QA_FEATURE_NAMES)) == len(QA_FEATURES) == QA_DIM
    for spec in QA_FEATURES:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", spec.name), spec.name
        assert spec.unit and spec.description
        assert math.isfinite(spec.fallback)


def test_output_is_float32_vector_in_name_order():
    image = sky_image()
    vector = qa_features(image)
    assert vector.dtype == np.float32 and vector.shape == (QA_DIM,)
    assert vector[QA_FEATURE_NAMES.index("sky_median")] == pytest.approx(SKY, rel=0.01)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(100, dtype=np.float32),
        np.zeros((4, 64, 32), dtype=np.float32),
        np.zeros((0, 32), dtype=np.float32),
        np.zeros((64, 32), dtype=np.complex64),
        np.array([["a", "b"], ["c", "d"]]),
        np.float32(3.0),
    ],
    ids=["1-D", "3-D", "empty", "complex", "strings", "scalar"],
)
def test_bad_images_raise_bad_input(bad):
    with pytest.raises(BadInputError, match="qa_features"):
        qa_features(bad)


@pytest.mark.parametrize(
    "kwargs", [{"exptime": -1.0}, {"exptime": 0.0}, {"exptime": float("nan")}, {"saturation": float("inf")}]
)
def test_bad_exptime_or_saturation_raise_bad_input(kwargs):
    with pytest.raises(BadInputError):
        qa_features(sky_image((64, 32)), **kwargs)


def test_batch_matches_single_images_and_takes_per_image_exptimes():
    images = [sky_image((128, 64), seed=1), starfield((256, 128), count=6, seed=2), sky_image((41, 50))]
    batch = qa_features_batch(images, exptime=[30.0, None, 90.0])
    assert batch.shape == (3, QA_DIM) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], qa_features(images[0], exptime=30.0))
    np.testing.assert_array_equal(batch[1], qa_features(images[1]))
    np.testing.assert_array_equal(batch[2], qa_features(images[2], exptime=90.0))
    assert qa_features_batch([]).shape == (0, QA_DIM)
    with pytest.raises(BadInputError, match="one per image"):
        qa_features_batch(images, exptime=[30.0])


def test_input_dtype_and_byte_order_do_not_matter_and_input_is_untouched():
    image = starfield((256, 128), count=8, seed=3)
    image[5, 5] = np.nan
    original = image.copy()
    big_endian = image.astype(">f4")
    np.testing.assert_array_equal(qa_features(big_endian), qa_features(image))
    np.testing.assert_array_equal(image, original)  # NaN replacement works on a copy
    as_int = np.nan_to_num(image).astype(np.int32)
    assert np.isfinite(qa_features(as_int)).all()


# ------------------------------------------------------------------------------ sky and noise


def test_poisson_sky_gives_sky_noise_and_rate():
    image = np.random.default_rng(4).poisson(SKY, SHAPE).astype(np.float32)
    values = features(image, exptime=50.0)
    assert values["sky_median"] == pytest.approx(SKY, rel=0.01)
    assert values["sky_noise"] == pytest.approx(NOISE, rel=0.03)
    assert values["noise_to_poisson"] == pytest.approx(1.0, rel=0.03)
    assert values["log_sky_rate"] == pytest.approx(math.log10(SKY / 50.0), abs=0.01)
    assert features(image)["log_sky_rate"] == 0.0  # documented fallback without exptime


def test_an_underexposed_frame_has_a_short_log_exptime_and_a_normal_sky_rate():
    """A shutter open for a tenth of the planned time: the same sky per second, a tenth of the sky."""
    rng = np.random.default_rng(5)
    planned = features(rng.poisson(SKY, SHAPE).astype(np.float32), exptime=90.0)
    short = features(rng.poisson(SKY / 10.0, SHAPE).astype(np.float32), exptime=9.0)
    assert planned["log_exptime"] == pytest.approx(math.log10(90.0))
    assert short["log_exptime"] == pytest.approx(math.log10(9.0))
    assert short["log_sky_rate"] == pytest.approx(planned["log_sky_rate"], abs=0.02)
    assert features(rng.poisson(SKY, SHAPE).astype(np.float32))["log_exptime"] == 0.0  # no exptime


def test_extra_read_noise_raises_noise_to_poisson():
    image = sky_image(noise=3.0 * NOISE)
    values = features(image)
    assert values["sky_noise"] == pytest.approx(3.0 * NOISE, rel=0.03)
    assert values["noise_to_poisson"] == pytest.approx(3.0, rel=0.05)


# ------------------------------------------------------------------------------ bad pixels


def test_nan_and_inf_pixels_are_counted_and_output_stays_finite():
    image = starfield(seed=5)
    rng = np.random.default_rng(5)
    broken = rng.random(SHAPE) < 0.03
    image[broken] = np.nan
    image[0, :10] = np.inf
    vector = qa_features(image)
    values = dict(zip(QA_FEATURE_NAMES, vector.tolist(), strict=True))
    assert np.isfinite(vector).all()
    assert values["nan_fraction"] == pytest.approx((broken.sum() + 10) / image.size, rel=0.01)
    assert values["sky_median"] == pytest.approx(SKY, rel=0.01)
    assert features(sky_image())["nan_fraction"] == 0.0


def test_dead_amplifier_half_sets_zero_fraction_and_amp_features():
    healthy = features(sky_image())
    assert healthy["zero_fraction"] == 0.0
    assert healthy["amp_level_diff"] < 0.5
    assert healthy["amp_noise_log_ratio"] < 0.05

    image = sky_image()
    image[:, SHAPE[1] // 2 :] = 0.0  # amplifier B dead
    values = features(image)
    assert values["zero_fraction"] == pytest.approx(0.5)
    assert values["amp_level_diff"] == pytest.approx(SKY / NOISE, rel=0.05)
    assert values["amp_noise_log_ratio"] == pytest.approx(math.log(1001.0), rel=0.01)
    assert values["sky_median"] == pytest.approx(SKY, rel=0.01)  # zeros are left out of the sky


# Sky levels of real CP ooi cutouts in ../shared/data (not sky-subtracted): ~100 ADU with 7 ADU noise
# (g, dark), ~1000 with ~30, ~3000 with ~50-100 (z). A dead amplifier sits at 0, 14 (g) to 50 sigma
# below the live sky, so "near zero" = within 5 sigma of 0 (capped at half the sky) separates the two
# even after fpack has dithered the zeros into small values; each sky is tested.
REAL_SKIES = [(100.0, 7.0), (SKY, NOISE), (3000.0, 60.0)]


@pytest.mark.parametrize("level, noise", REAL_SKIES, ids=["g-dark", "r", "z"])
@pytest.mark.parametrize("dead_reads", ["zeros", "read-noise"])
def test_dead_amplifier_survives_fpack_dithering(tmp_path, level, noise, dead_reads):
    live = sky_image(level=level, noise=noise, seed=23)
    dead = live.copy()
    dead_half = dead[:, SHAPE[1] // 2 :]
    # A dead amplifier reads exact zeros, or (bias level only) just its read noise around 0.
    read_noise = np.random.default_rng(24).normal(0.0, noise / 4, dead_half.shape)
    dead_half[:] = 0.0 if dead_reads == "zeros" else read_noise
    dead = fpacked(dead, tmp_path)
    assert np.count_nonzero(dead == 0) == 0  # dithering left no exact zero: the case real files pose
    both_live, one_dead = features(fpacked(live, tmp_path)), features(dead)

    assert both_live["zero_fraction"] == 0.0
    assert one_dead["zero_fraction"] == pytest.approx(0.5, abs=0.002)
    assert one_dead["sky_median"] == pytest.approx(level, rel=0.01)
    assert one_dead["sky_noise"] == pytest.approx(both_live["sky_noise"], rel=0.05)
    assert both_live["sky_noise"] == pytest.approx(noise, rel=0.05)
    assert one_dead["noise_to_poisson"] == pytest.approx(both_live["noise_to_poisson"], rel=0.05)
    assert one_dead["amp_level_diff"] > 10 and one_dead["amp_noise_log_ratio"] > 1


def test_sky_subtracted_image_is_not_counted_as_near_zero():
    # Around 0 a live pixel cannot be told from a dead one by its value: only exact zeros count.
    image = sky_image(level=0.0)
    image[:100, :100] = 0.0
    values = features(image)
    assert values["zero_fraction"] == pytest.approx(100 * 100 / image.size)
    assert values["sky_noise"] == pytest.approx(NOISE, rel=0.03)


def test_masked_zeros_inside_live_sky_are_near_zero_but_not_sky():
    image = sky_image()
    rng = np.random.default_rng(25)
    masked = rng.random(SHAPE) < 0.1
    image[masked] = rng.uniform(-2.0, 2.0, np.count_nonzero(masked))  # masked zeros after dithering
    values = features(image)
    assert values["zero_fraction"] == pytest.approx(masked.mean(), rel=0.01)
    assert values["sky_median"] == pytest.approx(SKY, rel=0.01)
    assert values["sky_noise"] == pytest.approx(NOISE, rel=0.03)


def test_bright_halo_over_one_amplifier_does_not_make_the_other_dead():
    # Half A under a bright star's halo: a high level, and a MAD inflated by the halo's slope. The
    # near-zero window comes from the half whose sky stands clearest above 0 in noise units (B); taken
    # from the brightest half (A) it would reach past B's sky and call B dead.
    image = sky_image()
    x, _ = _grid()
    left = x < 0
    image[left] += (8.0 * SKY * -x[left] / (SHAPE[1] / 2)).astype(np.float32)  # up to 9 x sky at the edge
    values = features(image)
    assert values["zero_fraction"] == 0.0
    assert values["sky_median"] > SKY


def test_amplifier_level_offset_in_noise_units():
    image = sky_image()
    image[:, SHAPE[1] // 2 :] += 5.0 * NOISE
    assert features(image)["amp_level_diff"] == pytest.approx(5.0, rel=0.1)


def test_amplifier_noise_ratio():
    image = sky_image()
    right = image[:, SHAPE[1] // 2 :]
    right[:] = SKY + 2.0 * (right - SKY)  # amplifier B twice as noisy
    assert features(image)["amp_noise_log_ratio"] == pytest.approx(math.log(2.0), rel=0.1)


def _saturated_starfield(level=30000.0) -> np.ndarray:
    image = sky_image(seed=6)
    for x, y in star_positions(count=20, seed=6):
        add_gaussian_star(image, x, y, 3e6, 4.0)  # peaks ~2e5: far above saturation
    return np.minimum(image, np.float32(level))


def test_saturated_fraction_from_argument_and_from_plateau_heuristic():
    image = _saturated_starfield()
    exact = np.count_nonzero(image >= 30000.0) / image.size
    assert exact > 0
    assert features(image, saturation=30000.0)["saturated_fraction"] == pytest.approx(exact)
    assert features(image)["saturated_fraction"] == pytest.approx(exact, rel=0.1)
    assert features(starfield())["saturated_fraction"] == 0.0  # bright unsaturated peaks are no plateau


def test_saturated_stars_are_not_psf_stars():
    image = _saturated_starfield()
    values = features(image, saturation=30000.0)
    assert values["psf_star_count"] == 0 and values["psf_found"] == 0


# ---------------------------------------------------------------------------- pattern noise


def _white_noise_pattern(samples: int) -> float:
    """Std of a median of ``samples`` unit-normal values, the unit of row/col_pattern_noise."""
    return math.sqrt(math.pi / 2.0) / math.sqrt(samples)


def test_row_noise_raises_row_pattern_only():
    clean = features(sky_image())
    assert clean["row_pattern_noise"] == pytest.approx(1.0, abs=0.25)
    assert clean["col_pattern_noise"] == pytest.approx(1.0, abs=0.25)

    image = sky_image()
    image += np.random.default_rng(7).normal(0, 0.3 * NOISE, (SHAPE[0], 1)).astype(np.float32)
    values = features(image)
    expected = math.hypot(0.3, _white_noise_pattern(SHAPE[1])) / _white_noise_pattern(SHAPE[1])
    assert values["row_pattern_noise"] == pytest.approx(expected, rel=0.2)
    assert values["col_pattern_noise"] < 1.3


def test_column_noise_raises_col_pattern_only():
    image = sky_image()
    image += np.random.default_rng(8).normal(0, 0.3 * NOISE, (1, SHAPE[1])).astype(np.float32)
    values = features(image)
    samples = math.ceil(SHAPE[0] / (SHAPE[0] // 512))
    expected = math.hypot(0.3, _white_noise_pattern(samples)) / _white_noise_pattern(samples)
    assert values["col_pattern_noise"] == pytest.approx(expected, rel=0.2)
    assert values["row_pattern_noise"] < 1.3


# ------------------------------------------------------------------------ background structure


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Column (x) and row (y) coordinates relative to the image centre."""
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32)
    return x - (SHAPE[1] - 1) / 2, y - (SHAPE[0] - 1) / 2


@pytest.mark.parametrize("axis", ["x", "y"])
def test_linear_gradient_amplitude(axis):
    x, y = _grid()
    across = x / (SHAPE[1] - 1) if axis == "x" else y / (SHAPE[0] - 1)
    image = sky_image() + (0.1 * SKY * across).astype(np.float32)  # 10% of sky edge to edge
    values = features(image)
    assert values["bkg_gradient"] == pytest.approx(0.1 * SKY / values["sky_median"], rel=0.1)
    assert values["bkg_curvature"] < 0.01
    flat = features(sky_image())
    assert flat["bkg_gradient"] < 0.003
    assert values["ring_power"] < 3 * flat["ring_power"] + 1e-4  # a gradient is not a ring


def test_quadratic_bowl_sets_curvature():
    x, y = _grid()
    bowl = 0.05 * SKY * ((x / (SHAPE[1] / 2)) ** 2 + (y / (SHAPE[0] / 2)) ** 2) / 2
    image = sky_image() + bowl.astype(np.float32)
    values = features(image)
    # Peak-to-peak of the bowl over the mesh centres, which stop half a cell short of the corners.
    assert 0.7 * 0.05 < values["bkg_curvature"] < 1.05 * 0.05
    assert values["bkg_gradient"] < 0.005
    assert features(sky_image())["bkg_curvature"] < 0.003


def test_patchy_background_raises_residual_rms():
    rng = np.random.default_rng(9)
    x, y = _grid()
    clouds = np.zeros(SHAPE, dtype=np.float32)
    for _ in range(12):
        cx, cy = rng.uniform(-SHAPE[1] / 2, SHAPE[1] / 2), rng.uniform(-SHAPE[0] / 2, SHAPE[0] / 2)
        clouds += 0.03 * SKY * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 60.0**2))
    values = features(sky_image() + clouds)
    flat = features(sky_image())
    assert values["bkg_residual_rms"] > 0.003
    assert values["bkg_residual_rms"] > 10 * flat["bkg_residual_rms"]


def test_ring_around_centre_raises_ring_power():
    x, y = _grid()
    ring = 0.03 * SKY * np.exp(-0.5 * ((np.hypot(x, y) - 300.0) / 30.0) ** 2)
    values = features(sky_image() + ring.astype(np.float32))
    flat = features(sky_image())
    assert values["ring_power"] > 0.003
    assert values["ring_power"] > 10 * flat["ring_power"]


# --------------------------------------------------------------------------------- sources


def test_source_count_and_density():
    image = starfield(count=80, seed=10)
    values = features(image)
    assert 76 <= values["source_count"] <= 84
    assert values["source_density"] == pytest.approx(values["source_count"] / (image.size / 1e6))
    assert features(sky_image())["source_count"] <= 3  # 5-sigma detections in pure noise are rare


def test_sep_pixel_stack_overflow_is_retried_not_fatal():
    image = starfield(count=80, seed=10)
    expected = features(image)["source_count"]
    saved = sep.get_extract_pixstack()
    sep.set_extract_pixstack(50)  # far too small for the stars' pixels above threshold: SEP raises
    try:
        assert features(image)["source_count"] == expected
        assert sep.get_extract_pixstack() >= 50 * 50  # raised for the retry
    finally:
        sep.set_extract_pixstack(saved)


def test_point_like_fraction_drops_with_extended_sources():
    stars_only = features(starfield(count=80, seed=11))
    assert stars_only["point_like_fraction"] > 0.9

    image = sky_image(seed=11)
    rng = np.random.default_rng(11)
    for k, (x, y) in enumerate(star_positions(count=80, seed=12)):
        extended = k % 2 == 1  # every other source a galaxy 3.5 times the PSF size
        add_gaussian_star(image, x, y, rng.uniform(1e5, 3e5), 14.0 if extended else 4.0)
    mixed = features(image)
    assert 0.35 < mixed["point_like_fraction"] < 0.65


# ------------------------------------------------------------------------------------- PSF


@pytest.mark.parametrize("fwhm", [3.0, 5.0, 8.0])
def test_gaussian_fwhm_is_recovered(fwhm):
    values = features(starfield(count=60, fwhm=fwhm, seed=13))
    assert values["psf_fwhm"] == pytest.approx(fwhm, rel=0.1)
    assert values["psf_star_count"] >= 20
    assert values["psf_ellipticity"] < 0.05
    assert values["psf_fwhm_scatter"] < 0.05
    assert values["psf_donutness"] < 0.1


@pytest.mark.parametrize("theta_deg", [30.0, 120.0])
def test_elongated_stars_give_ellipticity_and_angle(theta_deg):
    values = features(starfield(count=60, fwhm=5.0, seed=14, ellipticity=0.3, theta_deg=theta_deg))
    two_theta = math.radians(2 * theta_deg)
    assert values["psf_ellipticity"] == pytest.approx(0.3, abs=0.03)
    assert values["psf_e1"] == pytest.approx(0.3 * math.cos(two_theta), abs=0.03)
    assert values["psf_e2"] == pytest.approx(0.3 * math.sin(two_theta), abs=0.03)
    assert values["psf_fwhm"] == pytest.approx(5.0, rel=0.1)


def test_donut_stars_have_high_donutness():
    image = sky_image(seed=15)
    rng = np.random.default_rng(15)
    for x, y in star_positions(count=40, seed=15):
        add_donut(image, x, y, rng.uniform(1e5, 4e5))
    donuts = features(image)
    assert donuts["psf_star_count"] >= 10
    assert donuts["psf_donutness"] > 0.6
    assert features(starfield(seed=15))["psf_donutness"] < 0.1


def test_fwhm_scatter_rises_when_psf_varies_across_ccd():
    image = sky_image(seed=16)
    rng = np.random.default_rng(16)
    for x, y in star_positions(count=60, seed=16):
        add_gaussian_star(image, x, y, rng.uniform(1e5, 3e5), 3.0 if y < SHAPE[0] / 2 else 6.0)
    assert features(image)["psf_fwhm_scatter"] > 0.2
    assert features(starfield(seed=16))["psf_fwhm_scatter"] < 0.05


def test_crowded_field_blends_do_not_bias_psf():
    # 500 randomly placed stars in half a megapixel: many overlap into single (undeblended) detections,
    # bigger and brighter than any star. They must not pass for PSF stars.
    rng = np.random.default_rng(22)
    image = sky_image(seed=22)
    for x, y in zip(rng.uniform(15, SHAPE[1] - 15, 500), rng.uniform(15, SHAPE[0] - 15, 500), strict=True):
        add_gaussian_star(image, x, y, 10 ** rng.uniform(3.5, 5.5), 4.0)
    values = features(image)
    assert values["psf_fwhm"] == pytest.approx(4.0, rel=0.1)
    assert values["psf_fwhm_scatter"] < 0.02  # blends among the PSF stars would spread it to ~0.15
    assert values["point_like_fraction"] > 0.8


PSF_SHAPE_FEATURES = ("psf_fwhm", "psf_fwhm_scatter", "psf_ellipticity", "psf_e1", "psf_e2", "psf_donutness")


@pytest.mark.parametrize("shape", [SHAPE, (16, 16)], ids=["no-stars", "too-small"])
def test_no_stars_gives_psf_found_0_and_neutral_psf_values(shape):
    values = features(sky_image(shape, seed=17))
    neutral = {spec.name: spec.fallback for spec in QA_FEATURES}
    assert values["psf_found"] == 0.0 and values["psf_star_count"] == 0.0
    for name in PSF_SHAPE_FEATURES:
        assert values[name] == pytest.approx(neutral[name])
    # Typical good-CCD values, not zeros: the size and shape of an average star, e1/e2 centred on 0.
    assert neutral["psf_fwhm"] == pytest.approx(4.5)
    assert neutral["psf_ellipticity"] > 0 and neutral["psf_fwhm_scatter"] > 0
    assert neutral["psf_e1"] == neutral["psf_e2"] == neutral["psf_donutness"] == 0.0


def test_neutral_psf_values_sit_among_good_ccds_not_far_from_them():
    fallback = {spec.name: spec.fallback for spec in QA_FEATURES}
    neutral = np.array([fallback[name] for name in PSF_SHAPE_FEATURES])
    good = [features(starfield(count=60, fwhm=fwhm, seed=26)) for fwhm in (3.5, 4.5, 5.5)]
    measured = np.array([[values[name] for name in PSF_SHAPE_FEATURES] for values in good])
    # L1 distance of the neutral PSF block to the good CCDs is no larger than theirs to each other + 0.1.
    to_neutral = np.abs(measured - neutral).sum(axis=1).max()
    among_good = np.abs(measured[:, None] - measured[None]).sum(axis=2).max()
    assert to_neutral <= among_good + 0.1


def test_stars_give_psf_found_1():
    values = features(starfield(seed=17))
    assert values["psf_found"] == 1.0 and values["psf_star_count"] >= 20


# ----------------------------------------------------------------------------------- streaks


def test_satellite_streak_raises_streak_score():
    without = starfield(seed=18)
    with_trail = without.copy()
    x, y = _grid()
    # A 3-pixel-wide trail at 1.5 sigma per pixel, corner to corner at a slant: invisible per pixel.
    distance = np.abs(0.35 * x - y + 40.0) / math.hypot(0.35, 1.0)
    with_trail[distance < 1.5] += np.float32(1.5 * NOISE)
    assert features(without)["streak_score"] < 10
    assert features(with_trail)["streak_score"] > 30


# ---------------------------------------------------------------------------- small and odd images


@pytest.mark.parametrize("shape", [(41, 50), (64, 32), (16, 16), (3, 200), (200, 3), (1, 1)])
def test_small_cutouts_give_finite_vectors(shape):
    image = sky_image(shape, seed=19)
    if min(shape) >= 41:
        add_gaussian_star(image, shape[1] / 2, shape[0] / 2, 1e5, 4.0)
    vector = qa_features(image, exptime=30.0)
    assert vector.shape == (QA_DIM,) and np.isfinite(vector).all()
    values = dict(zip(QA_FEATURE_NAMES, vector.tolist(), strict=True))
    assert values["sky_median"] == pytest.approx(SKY, rel=0.1)


@pytest.mark.parametrize("fill", [0.0, 1234.5, np.nan], ids=["zeros", "constant", "all-nan"])
def test_degenerate_images_give_finite_vectors(fill):
    image = np.full(SHAPE, fill, dtype=np.float32)
    values = features(image)
    assert all(math.isfinite(v) for v in values.values())
    if np.isnan(fill):
        assert values["nan_fraction"] == 1.0
    if fill == 0.0:
        assert values["zero_fraction"] == 1.0


@pytest.mark.slow
def test_full_size_ccd_is_measured_well():
    # how fast: bench/qa_bench.py (~0.45 s per full CCD on one core); timings are not asserted in tests
    image = starfield(shape=(4094, 2046), count=300, fwhm=4.5, seed=20)
    values = features(image, exptime=90.0)
    assert values["psf_fwhm"] == pytest.approx(4.5, rel=0.1)
    assert 285 <= values["source_count"] <= 315
    assert values["sky_median"] == pytest.approx(SKY, rel=0.01)

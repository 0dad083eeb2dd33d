"""The survey simulator: CP-like files, reproducibility, truth lists, and that every bad category shows.

One module-scoped survey (33 small exposures, 6 CCDs, r band only so that depth statistics compare like
with like) serves most tests; each category test computes a simple image statistic and asserts that the
category's CCDs (or exposures, for categories of the whole exposure) are separated from the good ones.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections import Counter
from pathlib import Path

import fitsio
import numpy as np
import pytest
from scipy import ndimage

from ingest.simulate.artifacts import GhostScatter
from ingest.simulate.focal_plane import ccd_frames, distance_from
from ingest.simulate.survey import BAD_CATEGORIES, SimulationResult, simulate_survey
from vecstore.decam import ALL_CCDNAMES, CCDNUM_BY_NAME, N30_FAILURE_MJD, focal_plane_positions
from vecstore.errors import BadInputError

SHAPE = (512, 256)
# Three pairs of CCDs that touch along their short sides (N4|N5, N10|N11, N17|N18) in three rows.
CCDS = ("N4", "N5", "N10", "N11", "N17", "N18")
N_EXPOSURES = 33
SEED = 7


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> SimulationResult:
    out = tmp_path_factory.mktemp("survey")
    return simulate_survey(
        out, N_EXPOSURES, ccd_shape=SHAPE, bad_fraction=2 / 3, seed=SEED, ccdnames=CCDS, bands=("r",)
    )


@pytest.fixture(scope="module")
def images(survey) -> dict[tuple[int, str], np.ndarray]:
    """Every CCD's pixels as float64, keyed by (expnum, ccdname)."""
    pixels = {}
    for exposure in survey.exposures:
        with fitsio.FITS(str(exposure.path)) as fits:
            for name in exposure.ccdnames:
                pixels[(exposure.expnum, name)] = fits[name].read().astype(np.float64)
    return pixels


# ---------------------------------------------------------------------------------------------------------
# Image statistics. Each is deliberately simple: what an astronomer would compute to check by eye.


def pixel_noise(img: np.ndarray) -> float:
    """Per-pixel noise from neighbouring-pixel differences: blind to smooth backgrounds and row offsets."""
    diff = np.diff(img, axis=1).ravel()
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2)) or 1.0


def block_medians(img: np.ndarray, block: int, masked: np.ndarray | None = None) -> np.ndarray:
    """Median of each ``block`` x ``block`` square, ignoring ``masked`` pixels (NaN if all are masked)."""
    rows, cols = img.shape[0] // block, img.shape[1] // block
    x = img[: rows * block, : cols * block]
    if masked is not None:
        x = np.where(masked[: rows * block, : cols * block], np.nan, x)
    squares = x.reshape(rows, block, cols, block).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks covered by a bright source are all NaN
        return np.nanmedian(squares, axis=2)


def local_background(img: np.ndarray, block: int = 32) -> np.ndarray:
    coarse = ndimage.median_filter(block_medians(img, block), 3, mode="nearest")
    zoom = (img.shape[0] / coarse.shape[0], img.shape[1] / coarse.shape[1])
    return ndimage.zoom(coarse, zoom, order=1, mode="nearest", grid_mode=True)


def smoothed_snr(img: np.ndarray, sigma: float, width: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """(background-subtracted image, its Gaussian-smoothed signal-to-noise map)."""
    residual = img - local_background(img)
    smoothed_noise = sigma / (2 * np.sqrt(np.pi) * width)
    return residual, ndimage.gaussian_filter(residual, width) / smoothed_noise


def detections(img: np.ndarray, nsigma: float = 5.0, border: int = 10) -> int:
    """Local maxima above ``nsigma`` in the smoothed image, away from the edges."""
    _, snr = smoothed_snr(img, pixel_noise(img))
    peaks = (snr == ndimage.maximum_filter(snr, 5)) & (snr > nsigma)
    return int(peaks[border:-border, border:-border].sum())


def background_range(img: np.ndarray) -> float:
    """Max minus min of source-masked 32x32 block medians, in noise units: large-scale structure."""
    sigma = pixel_noise(img)
    _, snr = smoothed_snr(img, sigma)
    sources = ndimage.binary_dilation(snr > 3, iterations=3)
    medians = block_medians(img, 32, sources)
    return float((np.nanmax(medians) - np.nanmin(medians)) / sigma)


def lowpass_scatter(img: np.ndarray, width: float = 4.0) -> float:
    """Scatter of the image smoothed over ``width`` pixels (sources clipped), in noise units."""
    sigma = pixel_noise(img)
    clipped = np.clip(img - np.median(img), -5 * sigma, 5 * sigma)
    margin = int(2 * width)
    return float(np.std(ndimage.gaussian_filter(clipped, width)[margin:-margin, margin:-margin]) / sigma)


def row_median_scatter(img: np.ndarray) -> float:
    """Scatter of per-row medians within each amplifier, relative to what pixel noise alone gives."""
    sigma, half = pixel_noise(img), img.shape[1] // 2
    scatter = max(np.std(np.median(img[:, amp], axis=1)) for amp in (slice(0, half), slice(half, None)))
    return float(scatter / (1.2533 * sigma / np.sqrt(half)))


def hot_column_excess(img: np.ndarray) -> float:
    """Brightest column median above the typical column, in noise units."""
    column_medians = np.median(img, axis=0)
    return float((column_medians.max() - np.median(column_medians)) / pixel_noise(img))


def bright_sources(img: np.ndarray, min_snr: float, radius: int, smoothing: int = 1):
    """(row, col) of isolated, unsaturated sources, brightest first, with the background-subtracted image."""
    sigma = pixel_noise(img)
    residual, snr = smoothed_snr(img, sigma)
    if smoothing > 1:
        snr = ndimage.uniform_filter(residual, smoothing) / (sigma / smoothing)
    peaks = (snr == ndimage.maximum_filter(snr, 2 * radius + 1)) & (snr > min_snr)
    rows, cols = np.nonzero(peaks)
    keep = []
    for i in np.argsort(snr[rows, cols])[::-1]:
        r, c = rows[i], cols[i]
        inside = radius <= r < img.shape[0] - radius and radius <= c < img.shape[1] - radius
        if inside and img[r - radius : r + radius + 1, c - radius : c + radius + 1].max() < 30000:
            keep.append((r, c))
    return keep, residual


def half_max_diameters(img: np.ndarray, radius: int = 16) -> list[float]:
    """Diameter of the region above half the peak around each bright source: its FWHM for a star."""
    sources, residual = bright_sources(img, min_snr=30, radius=radius)
    diameters = []
    for r, c in sources:
        stamp = ndimage.gaussian_filter(
            residual[r - radius : r + radius + 1, c - radius : c + radius + 1], 1.0
        )
        regions, _ = ndimage.label(stamp > stamp[radius - 2 : radius + 3, radius - 2 : radius + 3].max() / 2)
        label = regions[radius, radius] or regions[radius - 2 : radius + 3, radius - 2 : radius + 3].max()
        diameters.append(2 * np.sqrt((regions == label).sum() / np.pi))
    return diameters


def central_dips(img: np.ndarray, radius: int = 20) -> list[float]:
    """Centre over brightest ring of each bright source's radial profile: 1 for a star, < 1 for a donut."""
    sources, residual = bright_sources(img, min_snr=8, radius=radius, smoothing=15)
    distance = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1])
    dips = []
    for r, c in sources:
        stamp = residual[r - radius : r + radius + 1, c - radius : c + radius + 1]
        profile = [stamp[(distance >= a) & (distance < a + 2)].mean() for a in range(0, radius - 2, 2)]
        dips.append(profile[0] / max(profile))
    return dips


def source_autocorrelation(img: np.ndarray, half: int = 32) -> np.ndarray:
    """Autocorrelation of the source pixels (noise zeroed) near zero lag: the mean source shape, squared."""
    sigma = pixel_noise(img)
    residual, snr = smoothed_snr(img, sigma)
    on_sources = ndimage.binary_dilation(snr > 4, iterations=2)
    x = np.where(on_sources, np.clip(residual, 0, 30 * sigma), 0.0)
    power = np.abs(np.fft.rfft2(x, s=(x.shape[0] + half, x.shape[1] + half))) ** 2
    acf = np.fft.fftshift(np.fft.irfft2(power, s=(x.shape[0] + half, x.shape[1] + half)))
    r, c = np.array(acf.shape) // 2
    return acf[r - half : r + half + 1, c - half : c + half + 1]


def ellipticity(acf: np.ndarray) -> float:
    """|e| from second moments of the part of the autocorrelation above 10% of its peak."""
    half = acf.shape[0] // 2
    weight = np.where(acf > 0.1 * acf[half, half], acf, 0.0)
    rows, cols = np.mgrid[-half : half + 1, -half : half + 1]
    i_rr, i_cc, i_rc = ((weight * m).sum() / weight.sum() for m in (rows**2, cols**2, rows * cols))
    return float(np.hypot(i_rr - i_cc, 2 * i_rc) / (i_rr + i_cc))


# ---------------------------------------------------------------------------------------------------------
# Grouping helpers


def ccd_stat(survey, images, label: str, stat) -> list[float]:
    """``stat`` of every CCD whose truth label is ``label`` (good CCDs of bad exposures count as good)."""
    return [
        stat(images[(e.expnum, name)])
        for e in survey.exposures
        for name in e.ccdnames
        if e.ccd_label(name) == label
    ]


def exposure_stat(survey, images, label: str, stat, *, streaks: bool = True) -> list[float]:
    """``stat`` of the pixels of whole exposures labelled ``label`` (all their CCDs together)."""
    exposures = [e for e in survey.exposures_in(label) if streaks or not e.satellite_streak]
    return [stat([images[(e.expnum, name)] for name in e.ccdnames]) for e in exposures]


def assert_above(bad: list[float], good: list[float], what: str) -> None:
    assert bad and good, f"nothing to compare for {what}"
    assert min(bad) > max(good), f"{what}: bad {sorted(bad)} vs good max {max(good)}"


def assert_below(bad: list[float], good: list[float], what: str) -> None:
    assert bad and good, f"nothing to compare for {what}"
    assert max(bad) < min(good), f"{what}: bad {sorted(bad)} vs good min {min(good)}"


# ---------------------------------------------------------------------------------------------------------
# Files


def test_every_category_appears_twice_and_the_rest_are_good(survey):
    labels = Counter(exposure.label for exposure in survey.exposures)
    assert labels == {**dict.fromkeys(BAD_CATEGORIES, 2), "good": 11}
    assert [e.expnum for e in survey.exposures] == list(range(900000, 900000 + N_EXPOSURES))
    for exposure in survey.exposures:
        assert exposure.path.exists()
        assert re.fullmatch(r"c4d_\d{6}_\d{6}_ooi_r_sim\.fits\.fz", exposure.path.name)
        assert (not exposure.category) == (exposure.affected_ccds == ())


def test_primary_header_is_like_the_community_pipeline(survey):
    exposure = survey.exposures[0]
    with fitsio.FITS(str(exposure.path)) as fits:
        header = fits[0].read_header()
    assert header["EXPNUM"] == exposure.expnum
    assert header["OBSTYPE"] == "object"
    assert header["FILTER"] == "r DECam SDSS c0002 6415.0 1480.0"
    assert header["BAND"] == "r"
    assert header["EXPTIME"] == exposure.exptime > 0
    assert header["MJD-OBS"] == pytest.approx(exposure.mjd_obs, abs=1e-7)
    assert 1.0 <= header["AIRMASS"] < 3.0
    assert header["PLVER"].startswith("V")
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", header["RA"])
    assert re.fullmatch(r"-?\d\d:\d\d:\d\d\.\d", header["DEC"])
    # File name, DATE-OBS and MJD-OBS tell the same time.
    date_obs = header["DATE-OBS"]
    assert exposure.path.name.startswith(f"c4d_{date_obs[2:4]}{date_obs[5:7]}{date_obs[8:10]}_")
    assert exposure.path.name[11:17] == date_obs[11:13] + date_obs[14:16] + date_obs[17:19]


def test_ccd_extensions_are_rice_compressed_images_with_cp_keywords(survey):
    exposure = survey.exposures[1]
    with fitsio.FITS(str(exposure.path)) as fits:
        primary = fits[0].read_header()
        assert [hdu.get_extname() for hdu in fits[1:]] == list(CCDS)
        for hdu in fits[1:]:
            header = hdu.read_header()
            name = hdu.get_extname()
            assert hdu.is_compressed()
            assert header["ZCMPTYPE"] == "RICE_1"
            assert header["CCDNUM"] == CCDNUM_BY_NAME[name]
            for key in ("EXPNUM", "FILTER", "BAND", "EXPTIME", "MJD-OBS", "AIRMASS", "PLVER"):
                assert header[key] == primary[key], key
            for key in ("SATURATA", "SATURATB", "GAINA", "GAINB"):
                assert header[key] > 0, key
            assert 0 <= header["CENRA1"] < 360 and -90 <= header["CENDEC1"] <= 90
            pixels = hdu.read()
            assert pixels.dtype == np.float32 and pixels.shape == SHAPE


def test_ccds_default_to_the_whole_camera_without_n30_after_it_failed(tmp_path):
    after = simulate_survey(tmp_path / "after", 1, ccd_shape=(32, 16), seed=1)
    before = simulate_survey(
        tmp_path / "before", 1, ccd_shape=(32, 16), seed=1, start_mjd=N30_FAILURE_MJD - 100
    )
    with fitsio.FITS(str(after.exposures[0].path)) as fits:
        names_after = [hdu.get_extname() for hdu in fits[1:]]
    with fitsio.FITS(str(before.exposures[0].path)) as fits:
        names_before = [hdu.get_extname() for hdu in fits[1:]]
    assert after.exposures[0].mjd_obs > N30_FAILURE_MJD
    assert sorted(names_after) == sorted(set(ALL_CCDNAMES) - {"N30"})
    assert sorted(names_before) == sorted(ALL_CCDNAMES)


def _all_pixels(result: SimulationResult) -> list[np.ndarray]:
    pixels = []
    for exposure in result.exposures:
        with fitsio.FITS(str(exposure.path)) as fits:
            pixels.extend(hdu.read() for hdu in fits[1:])
    return pixels


def test_same_seed_gives_identical_pixels_and_another_seed_does_not(tmp_path):
    options = dict(ccd_shape=(64, 32), bad_fraction=0.5, ccdnames=["N4", "S4"])
    first = _all_pixels(simulate_survey(tmp_path / "a", 4, seed=5, **options))
    again = _all_pixels(simulate_survey(tmp_path / "b", 4, seed=5, **options))
    other = _all_pixels(simulate_survey(tmp_path / "c", 4, seed=6, **options))
    assert len(first) == len(again) == len(other) == 8
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_progress_reports_each_exposure(tmp_path):
    calls = []
    simulate_survey(
        tmp_path, 3, ccd_shape=(32, 16), ccdnames=["N4"], progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_some_good_exposures_carry_a_satellite_streak_and_stay_good(tmp_path):
    result = simulate_survey(tmp_path, 80, ccd_shape=(32, 16), bad_fraction=0.0, ccdnames=["N4"], seed=2)
    streaked = [e for e in result.exposures if e.satellite_streak]
    assert 0.05 <= len(streaked) / 80 <= 0.3
    assert all(e.label == "good" for e in streaked)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(n_exposures=0), "n_exposures"),
        (dict(n_exposures=2.5), "n_exposures"),
        (dict(ccd_shape=(4094,)), "ccd_shape"),
        (dict(ccd_shape=(8, 8)), "ccd_shape"),
        (dict(ccd_shape=(64.5, 32)), "ccd_shape"),
        (dict(ccd_shape="big"), "ccd_shape"),
        (dict(bad_fraction=1.5), "bad_fraction"),
        (dict(seed=-1), "seed"),
        (dict(first_expnum=0), "first_expnum"),
        (dict(ccdnames=["N4", "X9"]), "X9"),
        (dict(ccdnames=["N4", "N4"]), "twice"),
        (dict(ccdnames=[]), "ccdnames"),
        (dict(ccdnames=["N30"]), "N30"),
        (dict(bands=("q",)), "bands"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(tmp_path, arguments, message):
    call = dict(n_exposures=1, ccd_shape=(32, 16), ccdnames=["N4"]) | arguments
    with pytest.raises(BadInputError, match=message):
        simulate_survey(tmp_path, **call)
    assert not list(tmp_path.glob("*.fz"))


# ---------------------------------------------------------------------------------------------------------
# Every category separates from the good CCDs


def test_saturated_ccds_have_sky_near_saturation(survey, images):
    def sky_over_saturation(img):
        return float(np.median(img) / 38000.0)  # the lowest saturation level any amplifier has

    assert_above(
        ccd_stat(survey, images, "Saturated", sky_over_saturation),
        ccd_stat(survey, images, "good", sky_over_saturation),
        "sky / saturation",
    )
    assert min(ccd_stat(survey, images, "Saturated", sky_over_saturation)) > 0.4


def test_saturated_exposures_show_the_flat_field_pattern(survey, images):
    assert_above(
        ccd_stat(survey, images, "Saturated", background_range),
        ccd_stat(survey, images, "good", background_range),
        "background range",
    )


def _detections_per_ccd(ccds):
    return float(np.mean([detections(img) for img in ccds]))


def _sky_over_noise(ccds):
    return float(np.mean([np.median(img) / pixel_noise(img) for img in ccds]))


def test_clouds_dim_the_sources_and_brighten_the_sky(survey, images):
    assert_below(
        exposure_stat(survey, images, "Clouds_Transparency", _detections_per_ccd),
        exposure_stat(survey, images, "good", _detections_per_ccd),
        "detections per CCD",
    )
    assert_above(
        exposure_stat(survey, images, "Clouds_Transparency", _sky_over_noise),
        exposure_stat(survey, images, "good", _sky_over_noise),
        "sky / noise",
    )


def test_nonoptimal_exposures_have_little_signal(survey, images):
    assert_below(
        exposure_stat(survey, images, "Nonoptimal_Exposure", _sky_over_noise),
        exposure_stat(survey, images, "good", _sky_over_noise),
        "sky / noise",
    )
    for exposure in survey.exposures_in("Nonoptimal_Exposure"):
        assert 0 < exposure.expfactor < 1
        assert exposure.exptime == pytest.approx(exposure.params.planned_exptime * exposure.expfactor)


def _median_half_max_diameter(ccds):
    return float(np.median([d for img in ccds for d in half_max_diameters(img)]))


def test_psf_exposures_have_broad_sources(survey, images):
    # Peaks along a satellite streak measure as broad sources: streaked good exposures (the known
    # confuser) are left out of the reference.
    assert_above(
        exposure_stat(survey, images, "PSF", _median_half_max_diameter),
        exposure_stat(survey, images, "good", _median_half_max_diameter, streaks=False),
        "half-maximum diameter (px)",
    )


def _autocorrelation_ellipticity(ccds):
    return ellipticity(sum(source_autocorrelation(img) for img in ccds))


def test_telescope_moving_elongates_the_sources(survey, images):
    # A satellite streak elongates the autocorrelation too: it is the known confuser, so streaked good
    # exposures are left out of the reference.
    assert_above(
        exposure_stat(survey, images, "Telescope_Moving", _autocorrelation_ellipticity),
        exposure_stat(survey, images, "good", _autocorrelation_ellipticity, streaks=False),
        "autocorrelation ellipticity",
    )


def _median_central_dip(ccds):
    return float(np.median([d for img in ccds for d in central_dips(img)]))


def test_out_of_focus_stars_are_donuts(survey, images):
    assert_below(
        exposure_stat(survey, images, "Out_of_Focus", _median_central_dip),
        exposure_stat(survey, images, "good", _median_central_dip),
        "centre / ring brightness",
    )


def test_ghost_scatter_ccds_have_background_structure(survey, images):
    assert_above(
        ccd_stat(survey, images, "Ghost_Scatter", background_range),
        ccd_stat(survey, images, "good", background_range),
        "background range",
    )


def test_nobjects_ccds_have_many_more_detections(survey, images):
    assert_above(
        ccd_stat(survey, images, "NObjects", detections),
        ccd_stat(survey, images, "good", detections),
        "detections",
    )


def test_bad_ccds_are_empty_dead_or_hot(survey, images):
    def defect_score(img):
        # a CCD without light has a median level within a few noise sigma of zero; a good one sits on the sky
        median = float(np.median(img))
        noise = 1.4826 * float(np.median(np.abs(img - median)))
        no_light = 100.0 if abs(median) < 3 * max(noise, 1e-6) else 0.0
        return max(100 * float(np.mean(img == 0)), hot_column_excess(img), no_light)

    assert_above(
        ccd_stat(survey, images, "Bad_CCD", defect_score),
        ccd_stat(survey, images, "good", defect_score),
        "defects",
    )
    assert max(ccd_stat(survey, images, "good", defect_score)) < 5


def test_noise_ccds_have_row_noise(survey, images):
    assert_above(
        ccd_stat(survey, images, "Noise", row_median_scatter),
        ccd_stat(survey, images, "good", row_median_scatter),
        "row-median scatter",
    )


def test_wonky_exposures_have_large_waves(survey, images):
    assert_above(
        ccd_stat(survey, images, "Wonky", lowpass_scatter),
        ccd_stat(survey, images, "good", lowpass_scatter),
        "smoothed-image scatter",
    )


# ---------------------------------------------------------------------------------------------------------
# Ghosts and scattered light are continuous over the focal plane and stay near their star


def _strip_medians(img: np.ndarray, first_row: int) -> np.ndarray:
    """Medians of 16x16 blocks in the 16 rows starting at ``first_row`` (negative counts from the end)."""
    rows = img[first_row : first_row + 16 if first_row + 16 != 0 else None]
    return block_medians(rows, 16).ravel()


def test_ghost_light_is_continuous_across_touching_ccds(survey, images):
    """Across a shared CCD edge the background changes only as much as its gradient on either side says.

    Strips 16 rows wide on each side of the edge: the step between the two innermost strips must match
    the mean of the steps within each CCD (the local gradient), where the ghost light is strong.
    """
    mismatches = []
    for exposure in survey.exposures_in("Ghost_Scatter"):
        sky = min(np.median(images[(exposure.expnum, name)]) for name in exposure.ccdnames)
        for left, right in (("N4", "N5"), ("N10", "N11"), ("N17", "N18")):
            a, b = images[(exposure.expnum, left)], images[(exposure.expnum, right)]
            sigma = pixel_noise(a)
            a_inner, a_edge = _strip_medians(a, -32), _strip_medians(a, -16)
            b_edge, b_inner = _strip_medians(b, 0), _strip_medians(b, 16)
            gradient = ((a_edge - a_inner) + (b_inner - b_edge)) / 2
            mismatch = np.abs((b_edge - a_edge) - gradient) / sigma
            strong = (a_edge - sky) / sigma > 3
            mismatches.extend(mismatch[strong])
    assert len(mismatches) >= 5, "too few edge blocks with ghost light in this survey"
    assert np.median(mismatches) < 0.5 and max(mismatches) < 2.0, sorted(mismatches)


def test_ghost_light_fades_to_nothing_away_from_the_star(survey):
    for exposure in survey.exposures_in("Ghost_Scatter"):
        params: GhostScatter = exposure.params
        light = params.light
        positions = np.array(list(focal_plane_positions().values()))
        fx, fy = positions[:, 0], positions[:, 1]
        far = (distance_from(fx, fy, light.star) > light.reach) & (
            np.abs(distance_from(fx, fy, light.ghost_center) - light.ghost_radius) > 8 * light.ghost_width
        )
        assert far.any()
        assert np.all(light.field(fx[far], fy[far]) < 1e-6 * light.ghost_amplitude)
        # The CCDs listed as affected are exactly those across which the light visibly varies.
        structured = tuple(
            frame.ccdname
            for frame in ccd_frames(exposure.ccdnames, SHAPE)
            if np.ptp(light.field(*frame.coarse_grid())) >= params.visibility_threshold
        )
        assert structured == exposure.affected_ccds != ()


# ---------------------------------------------------------------------------------------------------------
# Truth lists


def _bad_expid_entries(path: Path) -> dict[int, tuple[int, str]]:
    lines = path.read_text().splitlines()
    assert lines[:2] == ["#EXPID\tFlag\tcomments", "#Flags: 1=possibly saturated; 2=clouds; 3=other source"]
    entries = {}
    for line in lines[2:]:
        expnum, flag, comment = line.split(maxsplit=2)
        entries[int(expnum)] = (int(flag), comment)
    return entries


def test_bad_expid_list_names_the_decals_categories(survey):
    expected_comment = {
        "Saturated": (1, "twilight, possibly saturated"),
        "Clouds_Transparency": (2, "clouds"),
        "PSF": (3, "bad PSF"),
        "Out_of_Focus": (3, "out of focus"),
        "Telescope_Moving": (3, "telescope moving, trailed stars"),
    }
    entries = _bad_expid_entries(survey.bad_expid_path)
    expected = {}
    for exposure in survey.exposures:
        if exposure.category in expected_comment:
            expected[exposure.expnum] = expected_comment[exposure.category]
        elif exposure.category == "Nonoptimal_Exposure":
            expected[exposure.expnum] = (3, f"expfactor={exposure.expfactor:.3f}")
    assert entries == expected
    for expnum, (_, comment) in entries.items():
        if comment.startswith("expfactor="):
            assert 0 < float(comment.split("=")[1]) < 1, expnum


def test_delve_problem_list_holds_the_whole_exposure_reasons(survey):
    lines = (survey.delve_dir / "problem-sim.txt").read_text().splitlines()
    assert lines[0] == "#Nite           Exposure        Problem"
    rows = [re.split(r"\s{2,}", line) for line in lines[1:]]
    assert all(re.fullmatch(r"\d{8}", nite) for nite, _, _ in rows)
    expected = {
        (e.nite, str(e.expnum), e.category) for e in survey.exposures if e.category in ("NObjects", "Wonky")
    }
    assert set(map(tuple, rows)) == expected and len(rows) == len(expected)


def _delve_ccd_rows(path: Path) -> set[tuple[str, int, str, int]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "#date     expnum ccd id ccdnum"
    rows = set()
    for line in lines[1:]:
        date, expnum, ccd, name, ccdnum = line.split()
        assert ccd == "nan" and CCDNUM_BY_NAME[name] == int(ccdnum)
        rows.add((date, int(expnum), name, int(ccdnum)))
    return rows


def _expected_ccd_rows(survey, category: str) -> set[tuple[str, int, str, int]]:
    return {
        (e.nite, e.expnum, name, CCDNUM_BY_NAME[name])
        for e in survey.exposures_in(category)
        for name in e.affected_ccds
    }


def test_delve_ccd_lists_hold_exactly_the_bad_ccds(survey):
    delve = survey.delve_dir
    assert _delve_ccd_rows(delve / "ghost-scatter-sim.txt") == _expected_ccd_rows(survey, "Ghost_Scatter")
    assert _delve_ccd_rows(delve / "noise-sim.txt") == _expected_ccd_rows(survey, "Noise")
    bad_ccd_rows = set()
    for path in delve.glob("ccd*-sim.txt"):
        rows = _delve_ccd_rows(path)
        assert {ccdnum for *_, ccdnum in rows} == {int(path.name[3:-8])}
        bad_ccd_rows |= rows
    assert bad_ccd_rows == _expected_ccd_rows(survey, "Bad_CCD")
    assert sorted(survey.truth.delve_bad_ccd) == sorted(delve.glob("ccd*-sim.txt"))


def test_truth_csv_labels_every_ccd(survey):
    with survey.truth_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == N_EXPOSURES * len(CCDS)
    labels = {(int(row["expnum"]), row["ccdname"]): row["category"] for row in rows}
    for exposure in survey.exposures:
        for name in exposure.ccdnames:
            expected = exposure.category if name in exposure.affected_ccds else "good"
            assert labels[(exposure.expnum, name)] == expected
    ccd_level = {"Bad_CCD", "Noise", "Ghost_Scatter"}
    for exposure in survey.exposures:
        if exposure.category and exposure.category not in ccd_level:
            assert exposure.affected_ccds == CCDS


def test_vec_simulate_numbers_its_exposures_above_the_demo_stores(tmp_path):
    from typer.testing import CliRunner

    from vecstore.cli import app

    args = ["simulate", "-n", "2", "--ccd-shape", "64x32", "--ccds", "N4"]
    default = CliRunner().invoke(app, [*args[:1], str(tmp_path / "a"), *args[1:]])
    assert default.exit_code == 0, default.output
    assert "EXPNUM 950000-950001" in default.output  # the demo's are 900000 on
    given = CliRunner().invoke(app, [*args[:1], str(tmp_path / "b"), *args[1:], "--first-expnum", "1234"])
    assert given.exit_code == 0, given.output
    (first, _) = sorted((tmp_path / "b").glob("*.fits.fz"))
    assert "EXPNUM 1234-1235" in given.output and fitsio.read_header(str(first))["EXPNUM"] == 1234

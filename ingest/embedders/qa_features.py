"""Weight-free image-quality ("qa") features of one CCD: a fixed-length vector of named statistics.

Where a learned embedder (DINOv2) says what a CCD *looks like*, these numbers say *why* it is bad, in units
an astronomer recognises, and need no model weights. ``qa_features`` turns one 2-D CCD (rows x columns;
DECam science CCDs are 4094 x 2046) into ``QA_DIM`` float32 values, named and described in ``QA_FEATURES``.

Groups of features and the bad categories they speak to:

* **Sky and noise** (``sky_median``, ``sky_noise``, ``log_sky_rate``, ``log_exptime``,
  ``noise_to_poisson``): median and 1.4826 x MAD of the finite pixels of live amplifiers that are not
  near zero (a dead amplifier would halve the median and inflate the MAD); the sky rate and the exposure
  time need the EXPTIME header. Bright sky (twilight, moon, clouds lit by the moon) ->
  Clouds_Transparency, Nonoptimal_Exposure; a short exposure (underexposed) -> Nonoptimal_Exposure; noise
  well above the Poisson expectation of the sky -> Noise.
* **Bad pixels** (``nan_fraction``, ``zero_fraction``, ``saturated_fraction``) -> Bad_CCD, Saturated.
  "Zero" means near zero relative to the noise, not exactly 0: real CP files are fpacked, and the
  dithered quantisation restores a dead amplifier's zeros as small non-zero values.
* **Amplifiers** (``amp_level_diff``, ``amp_noise_log_ratio``): DECam CCDs are read by two amplifiers,
  A and B, each covering half of the columns. A dead or mis-calibrated amplifier -> Bad_CCD.
* **Pattern noise** (``row_pattern_noise``, ``col_pattern_noise``): scatter of row / column medians over
  the scatter white noise would give (so 1 means "no pattern") -> Noise, Bad_CCD.
* **Background structure** (``bkg_gradient``, ``bkg_curvature``, ``bkg_residual_rms``, ``ring_power``):
  measured on SEP's coarse background mesh, as fractions of the sky. Gradients and curvature ->
  Ghost_Scatter (scattered light), Clouds_Transparency; patchy residuals -> clouds, ghosts; rings centred
  on the CCD -> Ghost_Scatter (pupil ghosts).
* **Sources** (``source_count``, ``source_density``, ``point_like_fraction``): SEP detections at 5 sigma
  on the background-subtracted image -> NObjects, Clouds_Transparency (few sources), Out_of_Focus / PSF
  (sources no longer look like the PSF stars).
* **PSF** (``psf_found``, ``psf_star_count``, ``psf_fwhm``, ``psf_fwhm_scatter``, ``psf_ellipticity``,
  ``psf_e1``, ``psf_e2``, ``psf_donutness``): Gaussian-weighted second moments of up to 50 bright,
  unsaturated, isolated stars, corrected for the weight so a Gaussian star gives its true covariance ->
  PSF (bad seeing), Telescope_Moving and Wonky (elongated stars), Out_of_Focus (donuts: stars with a
  hole). ``psf_found`` says whether any star was measured at all.
* **Streaks** (``streak_score``): Hough transform of the pixels above 2.5 sigma (compact sources masked);
  the best line's excess over what randomly placed pixels would give, in sigma -> satellite trails,
  trailed stars (Telescope_Moving), bleed trails (Saturated). Row/column banding and strong background
  structure that the SEP mesh cannot follow are line-like too and raise it as well.

Conventions: ``x`` is the column index, ``y`` the row index; angles run from +x towards +y. Sizes are in
full-resolution pixels of the input, fluxes in its units (ADU or electrons, whatever the file holds).

Speed: the full-resolution image is touched only for pixel statistics, row/column medians and star stamps;
background, detection and streaks run on a 2x2-binned copy (the Hough transform on 4x4). A full DECam CCD
takes 0.3-0.4 s on one core (0.6 s for a CCD strewn with thousands of hot pixels).

Small images degrade gracefully: every value is always finite. A feature that cannot be measured (no
stars, an image too small for a background mesh or a Hough transform, no exposure time) takes the
``fallback`` of its ``FeatureSpec``, documented in its description. Most fallbacks are 0.0, which no real
CCD measures for sizes, counts or noise ratios. The PSF shape features instead fall back to neutral,
typical values of a good CCD (FWHM 4.5 px, ellipticity 0.05...), with ``psf_found`` = 0 saying so: a
FWHM of 0 would sit far from every real CCD and dominate an L1 distance, so a star-poor CCD would look
bad for want of stars. ``log_sky_rate`` keeps fallback 0; the missing exposure time tells it apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sep
from scipy.ndimage import median_filter
from scipy.spatial import cKDTree

from vecstore.errors import BadInputError


@dataclass(frozen=True)
class FeatureSpec:
    """One QA feature: its column name, unit, what it measures, and its value when it cannot be measured."""

    name: str
    unit: str
    description: str
    fallback: float = 0.0


QA_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "sky_median",
        "image units",
        "Median of the finite pixels of live amplifiers that are not near zero (see zero_fraction); "
        "bright sky (moon, twilight) or a dead CCD (0). Clouds_Transparency, Nonoptimal_Exposure.",
    ),
    FeatureSpec(
        "sky_noise",
        "image units",
        "1.4826 x MAD of the pixels sky_median uses, the pixel noise; a dead amplifier does not "
        "inflate it. Noise.",
    ),
    FeatureSpec(
        "log_sky_rate",
        "log10(image units / s)",
        "log10(sky_median / exptime); bright sky per second (moon, twilight, lit clouds). "
        "Fallback 0 without exptime or with sky <= 0. Clouds_Transparency, Nonoptimal_Exposure.",
    ),
    FeatureSpec(
        "log_exptime",
        "log10(s)",
        "log10(exptime): an underexposed frame (shutter open for a fraction of the planned time) is "
        "shallow in every band, while its sky per second looks normal. legacypipe's ccd_cuts cut "
        "exposures under 30 s for the same reason. Fallback 0 without exptime. Nonoptimal_Exposure.",
    ),
    FeatureSpec(
        "noise_to_poisson",
        "ratio",
        "sky_noise / sqrt(sky_median): about 1 (electrons) or 1/sqrt(gain) (ADU) when sky-limited, "
        "higher with read or pattern noise. Capped at 1000; fallback 0 when sky <= 0. Noise.",
    ),
    FeatureSpec(
        "nan_fraction",
        "fraction",
        "Fraction of non-finite (NaN or inf) pixels. Bad_CCD.",
    ),
    FeatureSpec(
        "zero_fraction",
        "fraction",
        "Fraction of pixels near 0 (masked, dead amplifier, missing data): |x| <= min(5 sigma, sky / 2) "
        "of the amplifier with the highest sky / sigma, which catches zeros that fpack's dithered "
        "quantisation restored as small values; exactly 0 when that amplifier is itself within 5 sigma "
        "of 0 (sky-subtracted data). A dead amplifier of a 2-amp CCD gives 0.5. Bad_CCD.",
    ),
    FeatureSpec(
        "saturated_fraction",
        "fraction",
        "Fraction of pixels at or above saturation (the argument, else a plateau of >= 10 pixels within "
        "0.1% of the maximum, far above sky, sets it at 95% of the way from sky to that maximum). Saturated.",
    ),
    FeatureSpec(
        "amp_level_diff",
        "noise units",
        "|median(amp A) - median(amp B)| / larger half noise; A = left half of the columns. Dead or "
        "mis-calibrated amplifier. Fallback 0 for images narrower than 2 columns. Bad_CCD.",
    ),
    FeatureSpec(
        "amp_noise_log_ratio",
        "ln ratio",
        "|ln(noise A / noise B)| (softened by 0.1% of the larger); a dead half gives ~6.9. Bad_CCD, Noise.",
    ),
    FeatureSpec(
        "row_pattern_noise",
        "x white-noise value",
        "Robust scatter of detrended row medians over the scatter white noise would give: 1 = no pattern, "
        ">> 1 = horizontal banding. Fallback 0 with < 9 rows or zero noise. Noise, Bad_CCD.",
    ),
    FeatureSpec(
        "col_pattern_noise",
        "x white-noise value",
        "As row_pattern_noise for column medians (vertical stripes, bad columns). Noise, Bad_CCD.",
    ),
    FeatureSpec(
        "bkg_gradient",
        "fraction of sky",
        "Peak-to-peak across the CCD of a plane fitted to the background mesh, over max(|sky|, noise). "
        "Scattered light, moon, clouds. Fallback 0 when the mesh has < 3 x 3 cells. Ghost_Scatter.",
    ),
    FeatureSpec(
        "bkg_curvature",
        "fraction of sky",
        "Peak-to-peak over the mesh of the quadratic terms of a quadratic fit to the background mesh. "
        "Scattered-light bowls and arcs. Ghost_Scatter, Clouds_Transparency.",
    ),
    FeatureSpec(
        "bkg_residual_rms",
        "fraction of sky",
        "RMS of the background mesh after the quadratic fit: patchy clouds, ghosts, "
        "amplifier steps. Clouds_Transparency, Ghost_Scatter.",
    ),
    FeatureSpec(
        "ring_power",
        "fraction of sky",
        "RMS of the azimuthal-average profile (about the CCD centre) of the plane-subtracted mesh after "
        "a quadratic-in-radius fit: rings and annuli. Fallback 0 with < 5 radial bins. Ghost_Scatter.",
    ),
    FeatureSpec(
        "source_count",
        "count",
        "SEP detections at 5 sigma (minarea 5 binned pixels, no deblending). NObjects, Clouds_Transparency.",
    ),
    FeatureSpec(
        "source_density",
        "per megapixel",
        "source_count per million input pixels, comparable across cutout sizes. NObjects.",
    ),
    FeatureSpec(
        "point_like_fraction",
        "fraction",
        "Fraction of sources with S/N >= 10 (up to 500, spread over flux) whose moment size is within 30% "
        "of the PSF stars'. Low when detections are galaxies, ghost fragments, cosmic rays or blends. "
        "Fallback 0 without measurable sources. PSF, NObjects.",
    ),
    FeatureSpec(
        "psf_found",
        "0 or 1",
        "1 when at least one PSF star was measured; 0 when none was found (no stars, all saturated, an "
        "image too small), and then psf_fwhm ... psf_donutness hold neutral typical values, not "
        "measurements. PSF, Clouds_Transparency.",
    ),
    FeatureSpec(
        "psf_star_count",
        "count",
        "Bright (S/N >= 30), unsaturated, isolated stars measured for the psf_* features (at most 50).",
    ),
    FeatureSpec(
        "psf_fwhm",
        "pixels",
        "Median FWHM = 2.3548 (det C)^(1/4) of the stars' weight-corrected moment covariance C "
        "(pixel-convolved). Neutral 4.5 (1.2 arcsec, typical DECam seeing) without stars. PSF, "
        "Out_of_Focus.",
        fallback=4.5,
    ),
    FeatureSpec(
        "psf_fwhm_scatter",
        "fraction",
        "Interquartile range / 1.349 / median of the stars' FWHM: PSF varying across the CCD. Needs >= 3 "
        "stars, else neutral 0.03 (typical of a good CCD). Wonky, PSF.",
        fallback=0.03,
    ),
    FeatureSpec(
        "psf_ellipticity",
        "1 - b/a",
        "Median 1 - minor/major axis of the stars (noise alone gives ~0.02-0.05). Neutral 0.05 "
        "without stars. Telescope_Moving, Wonky.",
        fallback=0.05,
    ),
    FeatureSpec(
        "psf_e1",
        "ellipticity",
        "Median ellipticity x cos(2 theta), theta = major-axis angle from +x (columns) to +y (rows). "
        "Neutral 0 (the centre of its symmetric distribution) without stars. Telescope_Moving, Wonky.",
    ),
    FeatureSpec(
        "psf_e2",
        "ellipticity",
        "Median ellipticity x sin(2 theta). Neutral 0 without stars. Telescope_Moving, Wonky.",
    ),
    FeatureSpec(
        "psf_donutness",
        "0..1",
        "Median of 1 - (mean within 1.5 px of the centroid) / (brightest annulus mean): 0 for "
        "centrally peaked stars, near 1 for out-of-focus donuts. Neutral 0 (what focused stars give) "
        "without stars. Out_of_Focus.",
    ),
    FeatureSpec(
        "streak_score",
        "sigma",
        "Largest Hough-line excess of > 2.5 sigma pixels over random placement (compact sources "
        "masked); noise gives ~4-6, a trail tens to hundreds; banding also raises it. Fallback 0 below 16 "
        "binned pixels a side. Telescope_Moving, satellite trails, Saturated (bleed trails).",
    ),
)

QA_FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in QA_FEATURES)
QA_DIM: int = len(QA_FEATURES)

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAD_TO_SIGMA = 1.4826
_IQR_TO_SIGMA = 1.349
_GAUSS_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Standard deviation of the median of n normal samples is this factor times sigma / sqrt(n).
_MEDIAN_STD_FACTOR = math.sqrt(math.pi / 2.0)

# Pixel statistics use a strided subsample: 1e6 pixels pin the median and MAD to ~0.1%.
_STATS_MAX_PIXELS = 1_000_000
# Row/column medians over ~512 samples each: enough to see pattern noise at a few % of the pixel noise.
_PATTERN_SAMPLES = 512
_PATTERN_DETREND = 65
# Binning for background/detection (2x2) once both sides are at least this long.
_BIN_MIN_SIDE = 256
# Below this many (binned) pixels a side there is no background mesh, detection or Hough transform.
_SCENE_MIN_SIDE = 16
_DETECT_SIGMA = 5.0
_DETECT_MINAREA = 5
_MEASURE_MIN_SNR = 10.0
_MEASURE_MAX_SOURCES = 500
_PSF_MIN_SNR = 30.0
_PSF_MAX_STARS = 50
_POINT_LIKE_TOLERANCE = 1.3
_STREAK_SIGMA = 2.5
_STREAK_ANGLES = 180
_STREAK_MIN_CHORD = 16.0
_STREAK_MAX_POINTS = 40_000
# SEP objects rounder than this axis ratio are masked before the Hough transform; trails are longer.
_COMPACT_MAX_AXIS_RATIO = 3.0
_NOISE_TO_POISSON_CAP = 1000.0
# Pixels within this many sigma of 0 (capped at half the sky) are dead, masked or missing: see
# _near_zero_limit for why that survives fpack's dithered quantisation.
_NEAR_ZERO_NOISE_MULTIPLE = 5.0


def qa_features(
    image: np.ndarray, exptime: float | None = None, saturation: float | None = None
) -> np.ndarray:
    """The ``QA_DIM`` quality features of one CCD, in the order of ``QA_FEATURE_NAMES`` (float32, finite).

    ``image`` is 2-D (rows x columns) of any real dtype and byte order; NaN/inf pixels are allowed and
    counted. ``exptime`` (seconds, > 0) enables ``log_sky_rate``; ``saturation`` (image units, e.g. the
    SATURATE header) replaces the plateau heuristic. Raises ``BadInputError`` for arrays that are not 2-D,
    empty, or not real numbers, and for a non-positive or non-finite ``exptime`` / non-finite ``saturation``.
    0.3-0.4 s for a full 4094 x 2046 DECam CCD on one core.
    """
    pixels = _validated_image(image)
    exptime = _validated_exptime(exptime)
    saturation = _validated_saturation(saturation)

    finite = np.isfinite(pixels)
    all_finite = bool(finite.all())
    stats = _pixel_stats(pixels)
    sky, noise = stats.sky, stats.noise
    clean = pixels if all_finite else np.where(finite, pixels, np.float32(sky))
    saturated = _saturated_mask(clean, sky, noise, saturation)
    bad = saturated if all_finite else (saturated | ~finite)

    values: dict[str, float] = {}
    values.update(_sky_features(sky, noise, exptime))
    values.update(_pixel_fractions(finite, stats.near_zero, saturated))
    values.update(_amplifier_features(stats.amplifiers))
    values.update(_pattern_features(clean, noise))
    scene = _scene(clean)
    if scene is not None:
        sky_scale = max(abs(sky), noise, 1e-30)
        values.update(_background_features(scene, pixels.shape, sky_scale))
        values.update(_source_features(scene, clean, bad))
        values.update(_streak_features(scene))
    return _as_vector(values)


def qa_features_batch(
    images: Sequence[np.ndarray],
    exptime: float | Sequence[float | None] | None = None,
    saturation: float | Sequence[float | None] | None = None,
) -> np.ndarray:
    """``qa_features`` of each image stacked as (n, QA_DIM) float32.

    ``exptime`` and ``saturation`` are either one value for every image or one value (or None) per image.
    """
    images = list(images)
    exptimes = _per_image("exptime", exptime, len(images))
    saturations = _per_image("saturation", saturation, len(images))
    out = np.empty((len(images), QA_DIM), dtype=np.float32)
    for row, (image, image_exptime, image_saturation) in enumerate(
        zip(images, exptimes, saturations, strict=True)
    ):
        out[row] = qa_features(image, exptime=image_exptime, saturation=image_saturation)
    return out


# ---------------------------------------------------------------------------------------------- input


def _validated_image(image: np.ndarray) -> np.ndarray:
    """The image as native-endian C-contiguous float32 (what SEP needs), or BadInputError."""
    array = np.asarray(image)
    if array.ndim != 2:
        raise BadInputError(
            f"qa_features needs one 2-D CCD image (rows x columns); got an array of shape {array.shape}"
        )
    if array.size == 0:
        raise BadInputError(f"qa_features got an empty image of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise BadInputError(
            f"qa_features needs real-valued pixels; got dtype {array.dtype} for an image of shape "
            f"{array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _validated_exptime(exptime: float | None) -> float | None:
    if exptime is None:
        return None
    value = float(exptime)
    if not (math.isfinite(value) and value > 0):
        raise BadInputError(
            f"exptime must be a positive number of seconds or None, got {exptime!r} "
            "(pass None for frames without a meaningful exposure time)"
        )
    return value


def _validated_saturation(saturation: float | None) -> float | None:
    if saturation is None:
        return None
    value = float(saturation)
    if not math.isfinite(value):
        raise BadInputError(f"saturation must be a finite level in image units or None, got {saturation!r}")
    return value


def _per_image(name: str, value: object, count: int) -> list:
    """Broadcast one value to ``count`` images, or check a per-image sequence has ``count`` entries."""
    if value is None or np.isscalar(value):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise BadInputError(f"{name} has {len(values)} entries for {count} images; give one per image")
    return values


def _as_vector(values: dict[str, float]) -> np.ndarray:
    """Order measured values by QA_FEATURE_NAMES, fill the rest with fallbacks, and force finiteness."""
    unknown = set(values) - set(QA_FEATURE_NAMES)
    if unknown:
        raise RuntimeError(f"qa computed features missing from QA_FEATURES: {sorted(unknown)}")
    vector = np.array([values.get(spec.name, spec.fallback) for spec in QA_FEATURES], dtype=np.float64)
    # Last line of defence only: every feature guards its own denominators.
    vector = np.nan_to_num(vector, nan=0.0, posinf=_FLOAT32_MAX, neginf=-_FLOAT32_MAX)
    return np.clip(vector, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)


# ------------------------------------------------------------------------------- pixel statistics


def _finite_sample(array: np.ndarray, max_pixels: int = _STATS_MAX_PIXELS) -> np.ndarray:
    """Finite values of a regular strided subsample of at most about ``max_pixels`` pixels."""
    stride = max(1, math.ceil(math.sqrt(array.size / max_pixels)))
    sample = array[::stride, ::stride].ravel()
    return sample[np.isfinite(sample)]


def _location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 x MAD (the sigma of a normal distribution); (0, 0) for no values."""
    if values.size == 0:
        return 0.0, 0.0
    median = float(np.median(values))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


@dataclass(frozen=True)
class _Amplifier:
    """A finite subsample of the pixels one amplifier reads, and their median and noise."""

    sample: np.ndarray
    level: float
    noise: float


@dataclass(frozen=True)
class _PixelStats:
    """Sky, noise and the near-zero pixels of a CCD, measured from its live amplifiers."""

    sky: float
    noise: float
    near_zero: np.ndarray  # full-size mask: dead, masked or missing pixels (|x| <= near_zero_limit)
    amplifiers: tuple[_Amplifier, ...]


def _amplifiers(pixels: np.ndarray) -> tuple[_Amplifier, ...]:
    """Amplifier A (left half of the columns) and B (right half); one for images under 2 columns wide."""
    width = pixels.shape[1]
    half = width // 2
    spans = (slice(0, half), slice(half, width)) if half >= 1 else (slice(0, width),)
    amplifiers = []
    for columns in spans:
        sample = _finite_sample(pixels[:, columns], _STATS_MAX_PIXELS // len(spans))
        amplifiers.append(_Amplifier(sample, *_location_scale(sample)))
    return tuple(amplifiers)


def _near_zero_limit(amplifiers: Sequence[_Amplifier]) -> float:
    """Largest |pixel| that counts as "near zero" (dead, masked, missing), judged by the clearest amp.

    CP ooi images are not sky-subtracted: their sky is ~100 ADU (g, dark time) to a few thousand (z),
    with 5-100 ADU of noise, so every live pixel sits many sigma above 0. A dead amplifier reads 0, but
    fpack's default quantisation (SUBTRACTIVE_DITHER_1, q = 4) restores a 0 as a dithered value within
    half a quantisation step, i.e. within ~1/8 of the tile noise. Anything within 5 sigma of 0 is thus
    dead; capping the window at half the sky keeps it below the live pixels even for faint sky.
    The reference is the amplifier whose level stands furthest above 0 in its own noise units, not the
    brightest: a half filled by a bright star's halo has a high level but an inflated noise.
    When even that amplifier is within 5 sigma of 0 (sky-subtracted data, an all-dead CCD), values
    cannot tell dead from live and only exact zeros count, as they always do.
    """
    clearest = max(amplifiers, key=lambda amp: abs(amp.level) / max(amp.noise, 1e-30))
    if abs(clearest.level) <= _NEAR_ZERO_NOISE_MULTIPLE * clearest.noise:
        return 0.0
    return min(_NEAR_ZERO_NOISE_MULTIPLE * clearest.noise, abs(clearest.level) / 2.0)


def _is_dead(amplifier: _Amplifier, limit: float) -> bool:
    """More than half of the amplifier's pixels near zero, or none finite."""
    near_zero = np.count_nonzero(np.abs(amplifier.sample) <= limit)
    return amplifier.sample.size == 0 or near_zero > amplifier.sample.size / 2


def _pixel_stats(pixels: np.ndarray) -> _PixelStats:
    """Sky and noise from the live amplifiers' pixels that are not near zero.

    An amplifier is dead when more than half of its pixels are near zero; its pixels would otherwise
    drag the median towards 0 and inflate the MAD to about half the sky. A CCD with no live amplifier
    is measured on all its pixels, and one that is (almost) all near zero is described by its zeros.
    """
    amplifiers = _amplifiers(pixels)
    limit = _near_zero_limit(amplifiers)
    live = [amp.sample for amp in amplifiers if not _is_dead(amp, limit)]
    sample = np.concatenate(live or [amp.sample for amp in amplifiers])
    away_from_zero = sample[np.abs(sample) > limit]
    sky, noise = _location_scale(away_from_zero if away_from_zero.size >= 10 else sample)
    near_zero = np.abs(pixels) <= np.float32(limit)  # NaN compares False: it counts in nan_fraction
    return _PixelStats(sky, noise, near_zero, amplifiers)


def _saturated_mask(clean: np.ndarray, sky: float, noise: float, saturation: float | None) -> np.ndarray:
    """Pixels at or above saturation: the given level, else a plateau at the top of the histogram.

    Saturated pixels are clipped to (nearly) one value, so >= 10 pixels within 0.1% of the maximum, far
    above the sky, mark a saturation plateau; a bright but unsaturated star peaks in one or two pixels.
    The threshold is then 95% of the way from sky to that maximum, which also catches flat-fielded
    saturated pixels that scatter a little below the clip.
    """
    if saturation is not None:
        return clean >= np.float32(saturation)
    top = float(clean.max())
    if noise > 0 and top > sky + 50.0 * noise:
        plateau = int(np.count_nonzero(clean >= np.float32(top - 1e-3 * abs(top))))
        if plateau >= 10:
            return clean >= np.float32(sky + 0.95 * (top - sky))
    return np.zeros(clean.shape, dtype=bool)


def _sky_features(sky: float, noise: float, exptime: float | None) -> dict[str, float]:
    values = {"sky_median": sky, "sky_noise": noise}
    if sky > 0:
        values["noise_to_poisson"] = min(noise / math.sqrt(sky), _NOISE_TO_POISSON_CAP)
        if exptime is not None:
            values["log_sky_rate"] = math.log10(sky / exptime)
    if exptime is not None:
        values["log_exptime"] = math.log10(exptime)
    return values


def _pixel_fractions(finite: np.ndarray, near_zero: np.ndarray, saturated: np.ndarray) -> dict[str, float]:
    total = float(finite.size)
    return {
        "nan_fraction": (finite.size - np.count_nonzero(finite)) / total,
        "zero_fraction": np.count_nonzero(near_zero) / total,
        "saturated_fraction": np.count_nonzero(saturated) / total,
    }


def _amplifier_features(amplifiers: Sequence[_Amplifier]) -> dict[str, float]:
    """Level and noise differences between the column halves read by amplifiers A (left) and B (right)."""
    if len(amplifiers) != 2:
        return {}
    (level_a, noise_a), (level_b, noise_b) = ((amp.level, amp.noise) for amp in amplifiers)
    larger, smaller = max(noise_a, noise_b), min(noise_a, noise_b)
    # Noiseless halves (synthetic or fully masked) still need a finite level difference.
    level_scale = max(larger, 1e-6 * max(abs(level_a), abs(level_b)), 1e-30)
    values = {"amp_level_diff": abs(level_a - level_b) / level_scale}
    if larger > 0:
        softening = 1e-3 * larger  # a dead half (noise 0) gives ln(1001), not infinity
        values["amp_noise_log_ratio"] = math.log((larger + softening) / (smaller + softening))
    return values


def _pattern_features(clean: np.ndarray, noise: float) -> dict[str, float]:
    """Row and column pattern noise relative to what white pixel noise gives the medians."""
    if noise <= 0:
        return {}
    rows, cols = clean.shape
    values = {}
    # Each row's median over ~512 regularly spaced columns, and each column's over ~512 rows.
    row_sample = clean[:, :: max(1, cols // _PATTERN_SAMPLES)]
    row_pattern = _line_pattern(np.median(row_sample, axis=1), row_sample.shape[1], noise)
    if row_pattern is not None:
        values["row_pattern_noise"] = row_pattern
    col_sample = clean[:: max(1, rows // _PATTERN_SAMPLES), :]
    col_pattern = _line_pattern(np.median(col_sample, axis=0), col_sample.shape[0], noise)
    if col_pattern is not None:
        values["col_pattern_noise"] = col_pattern
    return values


def _line_pattern(medians: np.ndarray, samples_per_line: int, noise: float) -> float | None:
    """Robust scatter of line medians, after removing large-scale trends, in white-noise units.

    A running median over 65 lines removes gradients and amplifier steps but keeps line-to-line noise.
    """
    if medians.size < 9:
        return None
    largest_odd = medians.size if medians.size % 2 else medians.size - 1
    detrended = medians - median_filter(medians, size=min(_PATTERN_DETREND, largest_odd), mode="nearest")
    _, spread = _location_scale(detrended)
    return spread / (_MEDIAN_STD_FACTOR * noise / math.sqrt(samples_per_line))


# ------------------------------------------------------------------ background and source extraction


@dataclass(frozen=True)
class _Catalog:
    """SEP detections in full-resolution pixel coordinates; sizes in full-resolution pixels."""

    x: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    flux: np.ndarray
    snr: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)


@dataclass(frozen=True)
class _Scene:
    """The binned, background-subtracted view of a CCD shared by background, source and streak features."""

    factor: int  # binning factor of everything below relative to the input
    subtracted: np.ndarray  # binned image minus SEP background
    background: np.ndarray  # SEP background map (binned)
    box: int  # SEP mesh cell side, binned pixels
    catalog: _Catalog
    compact: np.ndarray  # binned pixels belonging to compact (round-ish) sources


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means over factor x factor pixels (trailing partial blocks dropped), C-contiguous float32."""
    if factor == 1:
        return np.ascontiguousarray(image, dtype=np.float32)
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    total = np.zeros((rows, cols), dtype=np.float32)
    for dy in range(factor):
        for dx in range(factor):
            total += image[dy : rows * factor : factor, dx : cols * factor : factor]
    total /= factor * factor
    return total


def _any_in_blocks(mask: np.ndarray, factor: int) -> np.ndarray:
    """Block-wise OR of a boolean mask (the binning of ``_bin`` for masks)."""
    if factor == 1:
        return mask
    rows, cols = mask.shape[0] // factor, mask.shape[1] // factor
    out = np.zeros((rows, cols), dtype=bool)
    for dy in range(factor):
        for dx in range(factor):
            out |= mask[dy : rows * factor : factor, dx : cols * factor : factor]
    return out


def _scene(clean: np.ndarray) -> _Scene | None:
    """Bin, model the background with SEP, and detect sources; None when the image is too small."""
    factor = 2 if min(clean.shape) >= _BIN_MIN_SIDE else 1
    binned = _bin(clean, factor)
    if min(binned.shape) < _SCENE_MIN_SIDE:
        return None
    # About 16 mesh cells across the short side: fine enough for rings, coarse enough to ignore stars.
    box = int(np.clip(min(binned.shape) // 16, 8, 32))
    background = sep.Background(binned, bw=box, bh=box, fw=3, fh=3)
    back = background.back()
    subtracted = binned - back
    rms = float(background.globalrms)
    objects, segmap = _extract(subtracted, rms)
    catalog = _catalog(objects, factor, rms)
    compact_ids = np.zeros(len(objects) + 1, dtype=bool)
    if len(objects):
        compact_ids[1:] = objects["a"] < _COMPACT_MAX_AXIS_RATIO * np.maximum(objects["b"], 1e-3)
    compact = compact_ids[segmap] if segmap is not None else np.zeros(binned.shape, dtype=bool)
    return _Scene(factor, subtracted, back, box, catalog, compact)


def _extract(subtracted: np.ndarray, rms: float) -> tuple[np.ndarray, np.ndarray | None]:
    """SEP detections and segmentation map; no detections when the image has no noise to scale by.

    Deblending (and the cleaning that goes with it) is off so an out-of-focus donut stays one object and
    fields full of hot pixels or structure stay fast; blends are handled in PSF star selection.
    SEP refuses CCDs that are mostly "object" (its active-pixel stack overflows). Those are retried with
    the stack raised to the image size (not done up front: SEP touches the whole stack, ~45 bytes a pixel)
    and then at a 3x higher threshold; failing both, the CCD is reported as having no detections rather
    than stopping an ingest.
    """
    empty = np.zeros(0, dtype=[("a", "f8"), ("b", "f8")]), None
    if not rms > 0:
        return empty
    for attempt, threshold in enumerate((_DETECT_SIGMA, _DETECT_SIGMA, 3 * _DETECT_SIGMA)):
        if attempt > 0 and sep.get_extract_pixstack() < subtracted.size:
            sep.set_extract_pixstack(subtracted.size)
        try:
            return sep.extract(
                subtracted,
                threshold,
                err=rms,
                minarea=_DETECT_MINAREA,
                deblend_nthresh=1,
                deblend_cont=1.0,
                clean=False,
                segmentation_map=True,
            )
        except Exception:  # SEP raises bare Exception for its internal buffer overflows
            continue
    return empty


def _catalog(objects: np.ndarray, factor: int, rms: float) -> _Catalog:
    if len(objects) == 0:
        empty = np.zeros(0)
        return _Catalog(empty, empty, empty, empty, empty, empty)
    # Centre of binned pixel i is at full-resolution coordinate i * factor + (factor - 1) / 2.
    offset = (factor - 1) / 2.0
    npix = np.maximum(objects["npix"].astype(np.float64), 1.0)
    return _Catalog(
        x=objects["x"] * factor + offset,
        y=objects["y"] * factor + offset,
        a=objects["a"] * factor,
        b=objects["b"] * factor,
        flux=objects["flux"].astype(np.float64),
        snr=objects["flux"] / (rms * np.sqrt(npix)),
    )


# ------------------------------------------------------------------------------ background structure


def _background_features(scene: _Scene, shape: tuple[int, int], sky_scale: float) -> dict[str, float]:
    """Gradient, curvature, residual and ring power of SEP's background mesh, as fractions of the sky."""
    mesh, x, y = _mesh_samples(scene)
    if mesh.shape[0] < 3 or mesh.shape[1] < 3:
        return {}
    mesh, x, y = mesh.ravel(), x.ravel(), y.ravel()
    rows, cols = shape
    # Coordinates about the CCD centre, so the quadratic terms describe shape, not position.
    u, v = x - (cols - 1) / 2.0, y - (rows - 1) / 2.0
    linear_design = np.stack([np.ones_like(u), u, v], axis=1)
    quadratic_terms = np.stack([u * u, u * v, v * v], axis=1)
    quadratic_design = np.concatenate([linear_design, quadratic_terms], axis=1)
    plane = _least_squares(linear_design, mesh)
    quadratic = _least_squares(quadratic_design, mesh)
    values = {
        "bkg_gradient": (abs(plane[1]) * (cols - 1) + abs(plane[2]) * (rows - 1)) / sky_scale,
        "bkg_curvature": float(np.ptp(quadratic_terms @ quadratic[3:])) / sky_scale,
        "bkg_residual_rms": float(np.sqrt(np.mean((mesh - quadratic_design @ quadratic) ** 2))) / sky_scale,
    }
    ring = _ring_power(mesh - linear_design @ plane, np.hypot(u, v), scene.box * scene.factor)
    if ring is not None:
        values["ring_power"] = ring / sky_scale
    return values


def _mesh_samples(scene: _Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background at the centres of complete mesh cells, with their full-resolution x, y coordinates."""
    box = scene.box
    n_rows, n_cols = (side // box for side in scene.background.shape)
    centres_y = np.arange(n_rows) * box + box // 2
    centres_x = np.arange(n_cols) * box + box // 2
    mesh = scene.background[np.ix_(centres_y, centres_x)].astype(np.float64)
    offset = (scene.factor - 1) / 2.0
    x, y = np.meshgrid(centres_x * scene.factor + offset, centres_y * scene.factor + offset)
    return mesh, x, y


def _least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(design, target, rcond=None)[0]


def _ring_power(residual: np.ndarray, radius: np.ndarray, bin_width: float) -> float | None:
    """RMS of the azimuthally averaged residual after removing a smooth quadratic trend in radius.

    A ghost ring or annulus is a bump in the radial profile; a gradient averages out over azimuth and
    vignetting-like falloff is absorbed by the quadratic, so neither registers.
    """
    bins = (radius / bin_width).astype(np.int64)
    counts = np.bincount(bins)
    sums = np.bincount(bins, weights=residual)
    radii = np.flatnonzero(counts >= 3)
    radii = radii[radii >= 1]  # the central bin holds too few cells to average azimuthally
    if radii.size < 5:
        return None
    profile = sums[radii] / counts[radii]
    weights = counts[radii].astype(np.float64)
    design = np.stack([np.ones(radii.size), radii, radii.astype(np.float64) ** 2], axis=1)
    root_weights = np.sqrt(weights)
    trend = _least_squares(design * root_weights[:, None], profile * root_weights)
    bumps = profile - design @ trend
    return float(np.sqrt(np.sum(weights * bumps**2) / np.sum(weights)))


# ---------------------------------------------------------------------------------- sources and PSF


@dataclass(frozen=True)
class _Shapes:
    """Weight-corrected second moments of star stamps (full-resolution pixels)."""

    valid: np.ndarray
    cxx: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray
    centre_x: np.ndarray  # centroid offset from the stamp centre
    centre_y: np.ndarray

    @property
    def size(self) -> np.ndarray:
        """Geometric-mean Gaussian sigma, (det C)^(1/4)."""
        return np.maximum(self.cxx * self.cyy - self.cxy**2, 0.0) ** 0.25


def _source_features(scene: _Scene, clean: np.ndarray, bad: np.ndarray) -> dict[str, float]:
    catalog = scene.catalog
    megapixels = clean.size / 1e6
    values = {"source_count": float(len(catalog)), "source_density": len(catalog) / megapixels}
    measurable = np.flatnonzero(catalog.snr >= _MEASURE_MIN_SNR)
    if measurable.size == 0:
        return values
    measurable = _spread_over_flux(measurable[np.argsort(-catalog.flux[measurable])], _MEASURE_MAX_SOURCES)
    radius = _stamp_radius(catalog, measurable)
    inside = _stamp_inside(catalog, measurable, radius, clean.shape)
    measurable = measurable[inside]
    if measurable.size == 0:
        return values
    stamps, bad_stamps = _stamps(clean, bad, scene, catalog, measurable, radius)
    shapes = _measure_shapes(stamps, radius)
    stars = _psf_star_selection(catalog, measurable, shapes, bad_stamps, radius)
    if shapes.valid.any():
        values["point_like_fraction"] = _point_like_fraction(shapes, stars)
    values["psf_star_count"] = float(stars.size)
    values["psf_found"] = float(stars.size > 0)
    if stars.size:
        values.update(_psf_statistics(shapes, stamps, stars))
    return values


def _point_like_fraction(shapes: _Shapes, stars: np.ndarray) -> float:
    """Fraction of measured sources within 30% of the PSF stars' size (of all sources' if no stars)."""
    sizes = shapes.size[shapes.valid]
    reference = float(np.median(shapes.size[stars] if stars.size else sizes))
    close = np.abs(np.log(np.maximum(sizes, 1e-6) / reference)) < math.log(_POINT_LIKE_TOLERANCE)
    return float(np.mean(close))


def _spread_over_flux(by_flux: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the flux-sorted sources, evenly spaced in rank and still sorted.

    A sample from the whole flux range rather than the brightest: with deblending off, the brightest
    objects of a crowded field are disproportionately blends of two stars.
    """
    if by_flux.size <= limit:
        return by_flux
    return by_flux[np.unique(np.linspace(0, by_flux.size - 1, limit).round().astype(np.int64))]


def _stamp_radius(catalog: _Catalog, measurable: np.ndarray) -> int:
    """Half-size of the star stamps: five times the typical SEP sigma of bright sources, 6..32 pixels."""
    bright = measurable[catalog.snr[measurable] >= _PSF_MIN_SNR]
    chosen = bright if bright.size else measurable
    sigma = float(np.median(np.sqrt(catalog.a[chosen] * catalog.b[chosen])))
    return int(np.clip(math.ceil(5.0 * sigma), 6, 32))


def _stamp_inside(catalog: _Catalog, index: np.ndarray, radius: int, shape: tuple[int, int]) -> np.ndarray:
    col = np.rint(catalog.x[index]).astype(np.int64)
    row = np.rint(catalog.y[index]).astype(np.int64)
    return (row >= radius) & (row < shape[0] - radius) & (col >= radius) & (col < shape[1] - radius)


def _stamps(
    clean: np.ndarray, bad: np.ndarray, scene: _Scene, catalog: _Catalog, index: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution stamps around sources, minus the local SEP background; and which hold bad pixels."""
    col = np.rint(catalog.x[index]).astype(np.int64)
    row = np.rint(catalog.y[index]).astype(np.int64)
    offsets = np.arange(-radius, radius + 1)
    rows = row[:, None, None] + offsets[None, :, None]
    cols = col[:, None, None] + offsets[None, None, :]
    binned_row = np.clip(row // scene.factor, 0, scene.background.shape[0] - 1)
    binned_col = np.clip(col // scene.factor, 0, scene.background.shape[1] - 1)
    local_background = scene.background[binned_row, binned_col].astype(np.float64)
    stamps = clean[rows, cols].astype(np.float64) - local_background[:, None, None]
    return stamps, bad[rows, cols].any(axis=(1, 2))


def _measure_shapes(stamps: np.ndarray, radius: int) -> _Shapes:
    """Centroids and covariances from Gaussian-weighted moments, corrected for the weight.

    For a Gaussian star of covariance C, moments under a circular Gaussian weight of variance s^2 are
    M = (C^-1 + I/s^2)^-1, so C = (M^-1 - I/s^2)^-1 exactly. The weight (twice the star's sigma, from a
    first pass) keeps the noise of the wings out without biasing the size of non-Gaussian stars much.
    """
    count = stamps.shape[0]
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    weight_sigma = np.full(count, radius / 2.5)
    for _ in range(2):
        centre_x, centre_y, mxx, myy, mxy, ok = _weighted_moments(stamps, grid, weight_sigma, radius)
        cxx, cyy, cxy, corrected = _remove_weight(mxx, myy, mxy, weight_sigma)
        valid = ok & corrected
        size = np.where(valid, np.maximum(cxx * cyy - cxy**2, 1e-12) ** 0.25, radius / 5.0)
        valid &= size < radius / 2.0
        weight_sigma = np.clip(2.0 * size, 1.0, radius / 2.5)
    return _Shapes(valid, cxx, cyy, cxy, centre_x, centre_y)


def _weighted_moments(
    stamps: np.ndarray, grid: np.ndarray, weight_sigma: np.ndarray, radius: int
) -> tuple[np.ndarray, ...]:
    """Iterated weighted centroid, then weighted second moments about it."""
    count = stamps.shape[0]
    x = grid[None, None, :]
    y = grid[:, None][None, :, :]
    centre_x = np.zeros(count)
    centre_y = np.zeros(count)
    inverse_var = 1.0 / (2.0 * weight_sigma[:, None, None] ** 2)
    for _ in range(3):
        dx = x - centre_x[:, None, None]
        dy = y - centre_y[:, None, None]
        weighted = stamps * np.exp(-(dx * dx + dy * dy) * inverse_var)
        total = weighted.sum(axis=(1, 2))
        ok = total > 0
        safe_total = np.where(ok, total, 1.0)
        new_x = centre_x + (weighted * dx).sum(axis=(1, 2)) / safe_total
        new_y = centre_y + (weighted * dy).sum(axis=(1, 2)) / safe_total
        # A centroid running off the stamp means a blend or noise; keep the stamp centre instead.
        ok &= (np.abs(new_x) < radius / 2.0) & (np.abs(new_y) < radius / 2.0)
        centre_x = np.where(ok, new_x, 0.0)
        centre_y = np.where(ok, new_y, 0.0)
    dx = x - centre_x[:, None, None]
    dy = y - centre_y[:, None, None]
    weighted = stamps * np.exp(-(dx * dx + dy * dy) * inverse_var)
    total = weighted.sum(axis=(1, 2))
    ok &= total > 0
    safe_total = np.where(ok, total, 1.0)
    mxx = (weighted * dx * dx).sum(axis=(1, 2)) / safe_total
    myy = (weighted * dy * dy).sum(axis=(1, 2)) / safe_total
    mxy = (weighted * dx * dy).sum(axis=(1, 2)) / safe_total
    return centre_x, centre_y, mxx, myy, mxy, ok


def _remove_weight(
    mxx: np.ndarray, myy: np.ndarray, mxy: np.ndarray, weight_sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """C = (M^-1 - I/s^2)^-1 for 2x2 symmetric matrices; invalid where M is not narrower than the weight."""
    det_m = mxx * myy - mxy**2
    valid = (det_m > 0) & (mxx > 0) & (myy > 0)
    det_m = np.where(valid, det_m, 1.0)
    inverse_var = 1.0 / weight_sigma**2
    # Inverse of M, minus the weight's precision on the diagonal.
    pxx = myy / det_m - inverse_var
    pyy = mxx / det_m - inverse_var
    pxy = -mxy / det_m
    det_p = pxx * pyy - pxy**2
    valid &= (det_p > 0) & (pxx > 0) & (pyy > 0)
    det_p = np.where(valid, det_p, 1.0)
    return pyy / det_p, pxx / det_p, -pxy / det_p, valid


def _psf_star_selection(
    catalog: _Catalog, measurable: np.ndarray, shapes: _Shapes, bad_stamps: np.ndarray, radius: int
) -> np.ndarray:
    """Positions (into ``measurable``) of up to 50 bright, clean, isolated, well-measured stars.

    Candidates whose size is an outlier of the candidate population are dropped before taking the
    brightest: blends of two stars (one detection without deblending) are bigger and brighter than stars.
    """
    candidates = shapes.valid & ~bad_stamps & (catalog.snr[measurable] >= _PSF_MIN_SNR)
    if len(catalog) > 1:
        tree = cKDTree(np.stack([catalog.x, catalog.y], axis=1))
        distances, _ = tree.query(np.stack([catalog.x[measurable], catalog.y[measurable]], axis=1), k=2)
        candidates &= distances[:, 1] >= 2.0 * radius
    chosen = np.flatnonzero(candidates)  # ``measurable`` is sorted by flux, brightest first
    chosen = chosen[_typical_size(shapes.size[chosen])]
    return chosen[:_PSF_MAX_STARS]


def _typical_size(sizes: np.ndarray) -> np.ndarray:
    """Which sizes lie within 3 sigma of the median, sigma from the interquartile range (>= 2% of median).

    The IQR keeps a PSF that genuinely differs across the CCD (two populations both inside the quartiles)
    while rejecting a minority (< 25%) of blends, galaxies or cosmic rays.
    """
    if sizes.size < 4:
        return np.ones(sizes.size, dtype=bool)
    median = float(np.median(sizes))
    lower, upper = np.percentile(sizes, [25.0, 75.0])
    spread = max((upper - lower) / _IQR_TO_SIGMA, 0.02 * median)
    return np.abs(sizes - median) <= 3.0 * spread


def _psf_statistics(shapes: _Shapes, stamps: np.ndarray, stars: np.ndarray) -> dict[str, float]:
    cxx, cyy, cxy = shapes.cxx[stars], shapes.cyy[stars], shapes.cxy[stars]
    fwhm = _GAUSS_FWHM_PER_SIGMA * shapes.size[stars]
    half_trace = (cxx + cyy) / 2.0
    half_split = np.hypot((cxx - cyy) / 2.0, cxy)
    major = np.sqrt(half_trace + half_split)
    minor = np.sqrt(np.maximum(half_trace - half_split, 0.0))
    ellipticity = 1.0 - minor / major
    # cos(2 theta), sin(2 theta) of the major axis straight from the covariance, no angle wrapping.
    safe_split = np.where(half_split > 0, half_split, 1.0)
    cos2 = np.where(half_split > 0, (cxx - cyy) / 2.0 / safe_split, 1.0)
    sin2 = np.where(half_split > 0, cxy / safe_split, 0.0)
    median_fwhm = float(np.median(fwhm))
    values = {
        "psf_fwhm": median_fwhm,
        "psf_ellipticity": float(np.median(ellipticity)),
        "psf_e1": float(np.median(ellipticity * cos2)),
        "psf_e2": float(np.median(ellipticity * sin2)),
        "psf_donutness": float(
            np.median(_donutness(stamps[stars], shapes.centre_x[stars], shapes.centre_y[stars]))
        ),
    }
    if stars.size >= 3:
        # Interquartile range, not MAD: MAD is 0 when the stars split into two near-equal groups (e.g. a
        # sharp and a blurred half of the CCD), while the IQR still ignores up to 25% outliers (galaxies).
        lower, upper = np.percentile(fwhm, [25.0, 75.0])
        values["psf_fwhm_scatter"] = (upper - lower) / _IQR_TO_SIGMA / median_fwhm
    return values


def _donutness(stamps: np.ndarray, centre_x: np.ndarray, centre_y: np.ndarray) -> np.ndarray:
    """1 - (mean within 1.5 px of the centroid) / (brightest 1-px annulus), clipped to 0..1.

    A focused star peaks at its centre (0); a defocused donut has a hole there (towards 1).
    """
    count, side, _ = stamps.shape
    radius = side // 2
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    distance = np.hypot(
        grid[None, None, :] - centre_x[:, None, None], grid[None, :, None] - centre_y[:, None, None]
    )
    annulus = np.maximum(np.floor(distance - 0.5), 0).astype(np.int64)  # 0 = the central 1.5 px disk
    n_annuli = radius
    inside = annulus < n_annuli
    flat_index = (np.arange(count)[:, None, None] * n_annuli + annulus)[inside]
    sums = np.bincount(flat_index, weights=stamps[inside], minlength=count * n_annuli)
    pixels = np.bincount(flat_index, minlength=count * n_annuli)
    profile = (sums / np.maximum(pixels, 1)).reshape(count, n_annuli)
    brightest = profile.max(axis=1)
    ratio = np.where(brightest > 0, profile[:, 0] / np.where(brightest > 0, brightest, 1.0), 1.0)
    return np.clip(1.0 - ratio, 0.0, 1.0)


# ------------------------------------------------------------------------------------------ streaks


def _streak_features(scene: _Scene) -> dict[str, float]:
    """Hough-transform line score of bright pixels on a 4x4-binned (for full CCDs) image."""
    factor = 2 if min(scene.subtracted.shape) >= _BIN_MIN_SIDE else 1
    image = _bin(scene.subtracted, factor)
    masked = _any_in_blocks(scene.compact, factor)
    if min(image.shape) < _SCENE_MIN_SIDE:
        return {}
    level, sigma = _location_scale(_finite_sample(image))
    if sigma <= 0:
        return {}
    hits = (image > level + _STREAK_SIGMA * sigma) & ~masked
    usable = image.size - int(np.count_nonzero(masked))
    ys, xs = np.nonzero(hits)
    if xs.size < 2 or usable <= 0:
        return {"streak_score": 0.0}
    # Deterministic thinning keeps the transform cheap on images full of structure; p follows it.
    step = max(1, math.ceil(xs.size / _STREAK_MAX_POINTS))
    xs, ys = xs[::step], ys[::step]
    hit_probability = xs.size / usable
    return {"streak_score": _hough_line_excess(xs, ys, image.shape, hit_probability)}


def _hough_line_excess(
    xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int], hit_probability: float
) -> float:
    """Max over lines of (hits - expected) / sqrt(expected + 1), lines 2 pixels wide and >= 16 long.

    Expected hits on a line = hit probability x the line's area inside the image (chord x width), so a
    line through a short corner and one along the diagonal are judged alike.
    """
    rows, cols = shape
    width = 2.0
    thetas = np.arange(_STREAK_ANGLES) * (np.pi / _STREAK_ANGLES)
    cos, sin = np.cos(thetas).astype(np.float32), np.sin(thetas).astype(np.float32)
    rho_max = math.hypot(rows, cols) / 2.0 + width
    n_rho = int(math.ceil(2.0 * rho_max / width)) + 1
    x = (xs - (cols - 1) / 2.0).astype(np.float32)
    y = (ys - (rows - 1) / 2.0).astype(np.float32)
    accumulator = np.zeros(_STREAK_ANGLES * n_rho, dtype=np.int64)
    theta_offset = (np.arange(_STREAK_ANGLES, dtype=np.int64) * n_rho)[None, :]
    for start in range(0, x.size, 8192):  # chunks bound the (points x angles) temporary
        rho = x[start : start + 8192, None] * cos[None, :] + y[start : start + 8192, None] * sin[None, :]
        rho_index = ((rho + rho_max) / width).astype(np.int64)
        accumulator += np.bincount((rho_index + theta_offset).ravel(), minlength=_STREAK_ANGLES * n_rho)
    accumulator = accumulator.reshape(_STREAK_ANGLES, n_rho)
    rho_centres = -rho_max + (np.arange(n_rho) + 0.5) * width
    chord = _chord_lengths(thetas[:, None], rho_centres[None, :], cols, rows)
    expected = hit_probability * chord * width
    excess = (accumulator - expected) / np.sqrt(expected + 1.0)
    long_enough = chord >= _STREAK_MIN_CHORD
    return float(excess[long_enough].max()) if long_enough.any() else 0.0


def _chord_lengths(theta: np.ndarray, rho: np.ndarray, width: float, height: float) -> np.ndarray:
    """Length inside the centred width x height rectangle of the line x cos(theta) + y sin(theta) = rho."""
    cos, sin = np.cos(theta), np.sin(theta)
    # Points on the line: (rho cos - t sin, rho sin + t cos); intersect the t-ranges allowed by x and y.
    low_x, high_x = _parameter_range(rho * cos, -sin, width / 2.0)
    low_y, high_y = _parameter_range(rho * sin, cos, height / 2.0)
    return np.maximum(np.minimum(high_x, high_y) - np.maximum(low_x, low_y), 0.0)


def _parameter_range(start: np.ndarray, slope: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Range of t with |start + slope t| <= half (all t if slope is 0 and start fits, none if not)."""
    start, slope = np.broadcast_arrays(start, slope)
    moving = np.abs(slope) > 1e-12
    safe_slope = np.where(moving, slope, 1.0)
    t1, t2 = (-half - start) / safe_slope, (half - start) / safe_slope
    fits = np.abs(start) <= half
    low = np.where(moving, np.minimum(t1, t2), np.where(fits, -np.inf, np.inf))
    high = np.where(moving, np.maximum(t1, t2), np.where(fits, np.inf, -np.inf))
    return low, high

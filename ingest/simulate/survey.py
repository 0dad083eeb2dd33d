"""Simulate a DECam survey with known bad exposures, for tests, benchmarks and demos without real data.

:func:`simulate_survey` writes one Community Pipeline-like ``ooi`` file per exposure (Rice-compressed
multi-extension FITS, one HDU per CCD, sky kept) and the truth lists in the formats of the real label
sources (legacypipe ``decam-bad_expid``, DELVE problem and per-CCD lists, plus a per-CCD ``truth.csv``).

Bad exposures carry one of the paper's eleven categories (see :mod:`ingest.simulate.artifacts`), drawn
with physical knobs; about 15% of good exposures carry a satellite streak, a known confuser that is
labelled good. The same seed gives bitwise-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ingest.simulate.artifacts import (
    BAD_CATEGORIES,
    CATEGORY_BY_NAME,
    CATEGORY_TYPES,
    DrawContext,
    NonoptimalExposure,
    draw_satellite_streak,
)
from ingest.simulate.conditions import BANDS, amplifier_properties, draw_good_conditions
from ingest.simulate.exposure import ExposureRecipe, render_ccd
from ingest.simulate.fits import CcdHdu, ExposureMetadata, ccd_header, primary_header, write_exposure_file
from ingest.simulate.focal_plane import CcdFrame, ccd_frames
from ingest.simulate.stars import PSF
from ingest.simulate.truth import GOOD, TruthPaths, write_truth_lists
from vecstore.decam import ALL_CCDNAMES, CCD_SHAPE, CCDNUM_BY_NAME, N30_FAILURE_MJD
from vecstore.errors import BadInputError

__all__ = [
    "BAD_CATEGORIES",
    "CATEGORY_BY_NAME",
    "DEFAULT_START_MJD",
    "GOOD",
    "SATELLITE_STREAK_FRACTION",
    "SimulatedExposure",
    "SimulationResult",
    "simulate_survey",
]

# 2017-09-04T00:00 UTC, the start of a CTIO night; after N30 died and after S30 was recovered.
DEFAULT_START_MJD = 58000.0
SATELLITE_STREAK_FRACTION = 0.15
_CP_VERSIONS = ("V4.10", "V5.5LS")
# Readout and slew between exposures, and the length of a night from its first exposure.
_OVERHEAD_SECONDS = 30.0
_NIGHT_HOURS = 9.5
_MIN_CCD_SIDE = 16
_MAX_CCD_SIDE = 8192
_MAX_EXPNUM = 2**31 - 1


@dataclass(frozen=True)
class SimulatedExposure:
    """One simulated exposure and what is wrong with it.

    ``category`` is None for a good exposure (see :attr:`label`); ``affected_ccds`` lists the CCDs that
    carry the problem (every CCD for exposure-level categories, none for good exposures). ``params`` is the
    category's parameter dataclass, with every physical knob that was drawn.
    """

    expnum: int
    path: Path
    band: str
    category: str | None
    affected_ccds: tuple[str, ...]
    ccdnames: tuple[str, ...]
    mjd_obs: float
    nite: str
    exptime: float
    satellite_streak: bool
    params: object | None

    @property
    def label(self) -> str:
        return self.category or GOOD

    @property
    def expfactor(self) -> float | None:
        """Delivered fraction of the planned exposure for Nonoptimal_Exposure, else None."""
        return self.params.expfactor if isinstance(self.params, NonoptimalExposure) else None

    def ccd_label(self, ccdname: str) -> str:
        """Truth category of one CCD: the exposure's category if the CCD is affected, else ``"good"``."""
        return self.category if ccdname in self.affected_ccds and self.category else GOOD


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_survey` wrote."""

    out_dir: Path
    exposures: tuple[SimulatedExposure, ...]
    truth: TruthPaths
    seed: int
    ccd_shape: tuple[int, int]

    @property
    def truth_csv(self) -> Path:
        return self.truth.truth_csv

    def describe(self) -> str:
        bad = sum(1 for e in self.exposures if e.category)
        expnums = [e.expnum for e in self.exposures]
        numbers = f", EXPNUM {min(expnums)}-{max(expnums)}" if expnums else ""
        return (
            f"{len(self.exposures)} exposures{numbers} ({bad} bad) in {self.out_dir}; "
            f"truth: {self.truth.bad_expid}, "
            f"{self.truth.delve_dir}, {self.truth.truth_csv}"
        )

    @property
    def bad_expid_path(self) -> Path:
        return self.truth.bad_expid

    @property
    def delve_dir(self) -> Path:
        return self.truth.delve_dir

    def exposures_in(self, label: str) -> tuple[SimulatedExposure, ...]:
        """Exposures whose label (a category name or ``"good"``) is ``label``."""
        return tuple(exposure for exposure in self.exposures if exposure.label == label)


def simulate_survey(
    out_dir: str | Path,
    n_exposures: int,
    *,
    ccd_shape: tuple[int, int] = CCD_SHAPE,
    bad_fraction: float = 0.4,
    seed: int = 0,
    first_expnum: int = 900000,
    ccdnames: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    bands: Sequence[str] = ("g", "r", "i", "z"),
    start_mjd: float = DEFAULT_START_MJD,
) -> SimulationResult:
    """Write ``n_exposures`` simulated DECam CP ooi files and their truth lists into ``out_dir``.

    ``round(bad_fraction * n_exposures)`` exposures are bad; their categories cycle through all eleven in
    a seeded order, so every category appears once there are at least eleven bad exposures. ``ccdnames``
    None means every CCD alive at the exposure's date (N30 is absent after ``N30_FAILURE_MJD``). Exposures
    follow each other through the night from ``start_mjd``. ``progress(done, total)`` is called after each
    exposure. Raises :class:`BadInputError` for unusable arguments.
    """
    shape = _checked_shape(ccd_shape)
    _check_arguments(n_exposures, bad_fraction, seed, first_expnum, start_mjd)
    bands = _checked_bands(bands)
    requested = _checked_ccdnames(ccdnames, start_mjd)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    settings = _SurveySettings(out, shape, seed, bands)
    categories = _assign_categories(np.random.default_rng([seed, 0]), n_exposures, bad_fraction)
    clock = _SurveyClock(start_mjd)
    exposures = []
    for index, category in enumerate(categories):
        names = _ccds_alive(requested, clock.mjd)
        exposures.append(_simulate_exposure(settings, index, first_expnum + index, category, names, clock))
        if progress is not None:
            progress(index + 1, n_exposures)
    truth = write_truth_lists(out, exposures)
    return SimulationResult(out, tuple(exposures), truth, seed, shape)


@dataclass(frozen=True)
class _SurveySettings:
    out_dir: Path
    shape: tuple[int, int]
    seed: int
    bands: tuple[str, ...]


@dataclass(frozen=True)
class _ExposurePlan:
    """What was drawn for one exposure before any pixel is rendered."""

    recipe: ExposureRecipe
    meta: ExposureMetadata
    params: object | None
    affected_ccds: tuple[str, ...]
    satellite_streak: bool


def _simulate_exposure(
    settings: _SurveySettings,
    index: int,
    expnum: int,
    category: str | None,
    ccdnames: tuple[str, ...],
    clock: _SurveyClock,
) -> SimulatedExposure:
    frames = ccd_frames(ccdnames, settings.shape)
    plan = _plan_exposure(
        np.random.default_rng([settings.seed, 1, index]), settings, expnum, category, frames, clock
    )
    clock.advance(plan.meta.exptime)
    path = settings.out_dir / plan.meta.filename
    hdus = (_ccd_hdu(plan, frame, settings.seed, index) for frame in frames)
    write_exposure_file(path, primary_header(plan.meta, len(frames)), hdus)
    return SimulatedExposure(
        expnum=expnum,
        path=path,
        band=plan.meta.band,
        category=category,
        affected_ccds=plan.affected_ccds,
        ccdnames=ccdnames,
        mjd_obs=plan.meta.mjd_obs,
        nite=plan.meta.nite,
        exptime=plan.meta.exptime,
        satellite_streak=plan.satellite_streak,
        params=plan.params,
    )


def _plan_exposure(
    rng: np.random.Generator,
    settings: _SurveySettings,
    expnum: int,
    category: str | None,
    frames: tuple[CcdFrame, ...],
    clock: _SurveyClock,
) -> _ExposurePlan:
    """Good conditions and pointing first, then the category's knobs (or, for a good one, maybe a streak)."""
    conditions = draw_good_conditions(rng, settings.bands)
    ra, dec = float(rng.uniform(0.0, 360.0)), float(np.degrees(np.arcsin(rng.uniform(-0.34, 0.53))))
    plver = _CP_VERSIONS[int(rng.integers(len(_CP_VERSIONS)))]
    context = DrawContext(conditions, frames)
    recipe = ExposureRecipe(conditions, PSF(conditions.seeing_fwhm_pixels))
    params, affected, streak = None, (), False
    if category is not None:
        params = CATEGORY_BY_NAME[category].draw(rng, context)
        recipe = params.apply(recipe)
        affected = params.affected_ccds(frames)
    elif rng.random() < SATELLITE_STREAK_FRACTION:
        recipe = replace(recipe, effects=(*recipe.effects, draw_satellite_streak(rng, context)))
        streak = True
    meta = ExposureMetadata(
        expnum=expnum,
        mjd_obs=clock.mjd,
        band=conditions.band,
        exptime=recipe.conditions.exptime,
        airmass=conditions.airmass,
        ra=ra,
        dec=dec,
        plver=plver,
    )
    return _ExposurePlan(recipe, meta, params, affected, streak)


def _ccd_hdu(plan: _ExposurePlan, frame: CcdFrame, seed: int, index: int) -> CcdHdu:
    # Seeded by CCD number, not position in the list, so a CCD's pixels do not depend on which others exist.
    rng = np.random.default_rng([seed, 2, index, frame.ccdnum])
    image = render_ccd(plan.recipe, frame, rng)
    dither_seed = int(rng.integers(1, 10001))
    header = ccd_header(plan.meta, frame, amplifier_properties(frame.ccdnum))
    return CcdHdu(frame.ccdname, header, image, dither_seed)


class _SurveyClock:
    """Start time of the next exposure: back to back through a night, then on to the next evening."""

    def __init__(self, start_mjd: float):
        self._night_start = start_mjd
        self.mjd = start_mjd

    def advance(self, exptime: float) -> None:
        self.mjd += (exptime + _OVERHEAD_SECONDS) / 86400.0
        if self.mjd - self._night_start > _NIGHT_HOURS / 24.0:
            self._night_start += 1.0
            self.mjd = self._night_start


def _assign_categories(rng: np.random.Generator, n_exposures: int, bad_fraction: float) -> list[str | None]:
    """Balanced categories (cycling in a shuffled order) at shuffled positions; None marks a good exposure."""
    n_bad = round(bad_fraction * n_exposures)
    order = rng.permutation(len(CATEGORY_TYPES))
    bad = [CATEGORY_TYPES[order[i % len(order)]].category for i in range(n_bad)]
    categories: list[str | None] = [None] * n_exposures
    for position, category in zip(rng.permutation(n_exposures)[:n_bad], bad, strict=True):
        categories[int(position)] = category
    return categories


def _ccds_alive(requested: tuple[str, ...], mjd: float) -> tuple[str, ...]:
    """The requested CCDs minus N30 once it had failed."""
    if mjd > N30_FAILURE_MJD:
        alive = tuple(name for name in requested if name != "N30")
        if not alive:
            raise BadInputError(f"only N30 was requested but it had failed by MJD {mjd:.1f}")
        return alive
    return requested


def _checked_shape(ccd_shape) -> tuple[int, int]:
    try:
        rows, cols = (int(side) for side in ccd_shape)
        if any(int(side) != side for side in ccd_shape):
            raise ValueError
    except (TypeError, ValueError):
        raise BadInputError(f"ccd_shape must be two integers (rows, cols), got {ccd_shape!r}") from None
    if not (_MIN_CCD_SIDE <= rows <= _MAX_CCD_SIDE and _MIN_CCD_SIDE <= cols <= _MAX_CCD_SIDE):
        raise BadInputError(
            f"ccd_shape {ccd_shape!r} out of range: each side must be {_MIN_CCD_SIDE}..{_MAX_CCD_SIDE} "
            f"pixels (a real DECam CCD is {CCD_SHAPE})"
        )
    return rows, cols


def _check_arguments(n_exposures, bad_fraction, seed, first_expnum, start_mjd) -> None:
    if not _is_integer(n_exposures) or n_exposures < 1:
        raise BadInputError(f"n_exposures must be an integer >= 1, got {n_exposures!r}")
    if not _is_number(bad_fraction) or not 0 <= bad_fraction <= 1:
        raise BadInputError(f"bad_fraction must be a number in [0, 1], got {bad_fraction!r}")
    if not _is_integer(seed) or seed < 0:
        raise BadInputError(f"seed must be a non-negative integer, got {seed!r}")
    if not _is_integer(first_expnum) or first_expnum < 1 or first_expnum + n_exposures - 1 > _MAX_EXPNUM:
        raise BadInputError(
            f"first_expnum must be an integer >= 1 leaving room for {n_exposures} exposures below "
            f"{_MAX_EXPNUM + 1}, got {first_expnum!r}"
        )
    if not _is_number(start_mjd) or not math.isfinite(start_mjd):
        raise BadInputError(f"start_mjd must be a finite number, got {start_mjd!r}")


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _checked_bands(bands: Sequence[str]) -> tuple[str, ...]:
    chosen = (bands,) if isinstance(bands, str) else tuple(bands)
    unknown = [band for band in chosen if band not in BANDS]
    if not chosen or unknown:
        raise BadInputError(f"bands must be a non-empty selection of {BANDS}, got {bands!r}")
    return chosen


def _checked_ccdnames(ccdnames: Sequence[str] | None, start_mjd: float) -> tuple[str, ...]:
    if ccdnames is None:
        return ALL_CCDNAMES
    if isinstance(ccdnames, str):
        raise BadInputError(f"ccdnames must be a list of CCD names, not the string {ccdnames!r}")
    names = tuple(str(name).strip().upper() for name in ccdnames)
    unknown = [name for name in names if name not in CCDNUM_BY_NAME]
    if not names or unknown:
        raise BadInputError(
            f"ccdnames must be DECam CCD names (N1..N31, S1..S31); unknown: {unknown or 'none given'}"
        )
    if len(set(names)) != len(names):
        raise BadInputError(f"ccdnames lists a CCD twice: {list(ccdnames)}")
    if "N30" in names and start_mjd > N30_FAILURE_MJD:
        raise BadInputError(
            f"N30 failed at MJD {N30_FAILURE_MJD:.0f} (2012-11-30), before start_mjd {start_mjd}; "
            "drop it from ccdnames or start the survey earlier"
        )
    return names

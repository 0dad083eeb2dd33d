"""Stars and galaxies of a simulated CCD, and how the telescope spreads their light (the PSF).

Sources are rendered by evaluating their profile on a small postage stamp around each one, in batches of
equal stamp size, and adding the stamps into the image; the cost grows with the number of sources, not with
the number of pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import erf

from ingest.simulate.conditions import ObservingConditions
from vecstore.decam import CCD_SHAPE

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# Stamps are rounded up to one of these half-widths so sources can be evaluated in batches.
_STAMP_HALF_WIDTHS = (4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 160)
# Cap on pixels evaluated at once, so memory stays small however many sources share a stamp size.
_MAX_BATCH_PIXELS = 2_000_000
FULL_CCD_PIXELS = CCD_SHAPE[0] * CCD_SHAPE[1]


@dataclass(frozen=True)
class PSF:
    """The image of a point source.

    The core is an elliptical Moffat profile in focus, or a uniform annulus (the defocused pupil with its
    central obscuration) when ``donut_radius`` > 0. Telescope motion during the exposure smears the core
    along a line (``trail_length``) and/or splits it into several images (``images``: row offset, column
    offset and relative weight of each).
    """

    fwhm: float
    beta: float = 3.5
    axis_ratio: float = 1.0
    angle: float = 0.0
    donut_radius: float = 0.0
    donut_inner_fraction: float = 0.5
    trail_length: float = 0.0
    trail_angle: float = 0.0
    images: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 1.0),)

    @property
    def sigma(self) -> float:
        return self.fwhm / FWHM_PER_SIGMA

    @property
    def moffat_alpha(self) -> float:
        return self.fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    @property
    def motion_extent(self) -> float:
        """How far (pixels) light can land from the source position because of motion or doubling."""
        offsets = max(np.hypot(dr, dc) for dr, dc, _ in self.images)
        return self.trail_length / 2.0 + offsets


@dataclass(frozen=True)
class SourceCatalog:
    """Sources on one CCD: pixel position, total flux (ADU), size (pixels, 0 = point source) and shape."""

    row: np.ndarray
    col: np.ndarray
    flux: np.ndarray
    size: np.ndarray
    axis_ratio: np.ndarray
    angle: np.ndarray

    def __len__(self) -> int:
        return len(self.flux)

    def subset(self, index: np.ndarray) -> SourceCatalog:
        return SourceCatalog(*(getattr(self, name)[index] for name in _CATALOG_FIELDS))

    def with_flux(self, flux: np.ndarray) -> SourceCatalog:
        return replace(self, flux=np.asarray(flux, dtype=float))

    def concat(self, other: SourceCatalog) -> SourceCatalog:
        return SourceCatalog(
            *(np.concatenate([getattr(self, name), getattr(other, name)]) for name in _CATALOG_FIELDS)
        )


_CATALOG_FIELDS = ("row", "col", "flux", "size", "axis_ratio", "angle")


def power_law_magnitudes(rng: np.random.Generator, n: int, bright: float, faint: float, slope: float):
    """Magnitudes with counts rising as 10**(slope * m) between ``bright`` and ``faint``."""
    low, high = 10 ** (slope * bright), 10 ** (slope * faint)
    return np.log10(low + rng.random(n) * (high - low)) / slope


def draw_sky_sources(
    rng: np.random.Generator, shape: tuple[int, int], conditions: ObservingConditions
) -> SourceCatalog:
    """Stars and galaxies in the patch of sky one CCD sees; densities are per full-size DECam CCD."""
    area = shape[0] * shape[1] / FULL_CCD_PIXELS
    n_stars = rng.poisson(conditions.star_density * area)
    n_galaxies = rng.poisson(conditions.galaxy_density * area)
    star_mags = power_law_magnitudes(rng, n_stars, 14.5, 25.0, 0.18)
    galaxy_mags = power_law_magnitudes(rng, n_galaxies, 17.0, 25.5, 0.35)
    # Fainter galaxies are smaller: about 3 pixels scale length at mag 20, lognormal scatter.
    galaxy_size = 3.0 * 10 ** (-0.12 * (galaxy_mags - 20.0)) * rng.lognormal(0.0, 0.3, n_galaxies)
    n = n_stars + n_galaxies
    return SourceCatalog(
        row=rng.uniform(-0.5, shape[0] - 0.5, n),
        col=rng.uniform(-0.5, shape[1] - 0.5, n),
        flux=conditions.flux_adu(np.concatenate([star_mags, galaxy_mags])),
        size=np.concatenate([np.zeros(n_stars), galaxy_size]),
        axis_ratio=np.concatenate([np.ones(n_stars), rng.uniform(0.25, 1.0, n_galaxies)]),
        angle=rng.uniform(0.0, np.pi, n),
    )


def render_sources(
    shape: tuple[int, int], catalog: SourceCatalog, psf: PSF, noise_floor: float
) -> np.ndarray:
    """Noise-free image (float64, ADU) of the catalog seen through ``psf``.

    ``noise_floor`` (ADU) sets how far out each stamp must reach: the profile is followed until it drops
    well below the pixel noise.
    """
    image = np.zeros(shape)
    if len(catalog) == 0:
        return image
    half_widths = _stamp_half_widths(catalog, psf, noise_floor)
    is_point = catalog.size == 0
    for point_kind in (True, False):
        for half in np.unique(half_widths):
            members = np.flatnonzero((half_widths == half) & (is_point == point_kind))
            batch_size = max(1, _MAX_BATCH_PIXELS // (2 * int(half) + 1) ** 2)
            for start in range(0, len(members), batch_size):
                batch = catalog.subset(members[start : start + batch_size])
                _add_stamps(image, batch, psf, int(half), point_kind)
    return image


def _stamp_half_widths(catalog: SourceCatalog, psf: PSF, noise_floor: float) -> np.ndarray:
    """Half-width of each source's stamp: where a Moffat-like wing falls to a fraction of the noise."""
    alpha = np.sqrt(psf.moffat_alpha**2 / psf.axis_ratio + 4.0 * catalog.size**2 / catalog.axis_ratio)
    beta = np.where(catalog.size > 0, 2.0, psf.beta)  # galaxies have heavier wings than the PSF
    peak = catalog.flux * (beta - 1.0) / (np.pi * alpha**2)
    ratio = np.maximum(peak / (0.1 * max(noise_floor, 1e-3)), 1.0)
    reach = alpha * np.sqrt(np.maximum(ratio ** (1.0 / beta) - 1.0, 0.0))
    reach = np.maximum(reach, 2.0 * alpha)
    if psf.donut_radius > 0:
        reach = np.maximum(reach, psf.donut_radius + 3.0 * psf.sigma + 2.0 * catalog.size)
    reach = reach + psf.motion_extent
    ladder = np.asarray(_STAMP_HALF_WIDTHS)
    return ladder[np.minimum(np.searchsorted(ladder, np.ceil(reach)), len(ladder) - 1)]


def _add_stamps(image: np.ndarray, batch: SourceCatalog, psf: PSF, half: int, point_kind: bool) -> None:
    rows, cols = image.shape
    offsets = np.arange(-half, half + 1)
    pixel_rows = np.floor(batch.row + 0.5).astype(np.int64)[:, None] + offsets
    pixel_cols = np.floor(batch.col + 0.5).astype(np.int64)[:, None] + offsets
    d_row = (pixel_rows - batch.row[:, None])[:, :, None]
    d_col = (pixel_cols - batch.col[:, None])[:, None, :]
    stamps = np.zeros((len(batch), 2 * half + 1, 2 * half + 1))
    for image_row, image_col, weight in psf.images:
        stamps += weight * _core_profile(d_row - image_row, d_col - image_col, batch, psf, point_kind)
    total = stamps.sum(axis=(1, 2))
    stamps *= (batch.flux / np.where(total > 0, total, 1.0))[:, None, None]
    inside = ((pixel_rows >= 0) & (pixel_rows < rows))[:, :, None] & (
        (pixel_cols >= 0) & (pixel_cols < cols)
    )[:, None, :]
    flat_index = pixel_rows[:, :, None] * cols + pixel_cols[:, None, :]
    np.add.at(image.reshape(-1), flat_index[inside], stamps[inside])


def _core_profile(d_row, d_col, batch: SourceCatalog, psf: PSF, point_kind: bool) -> np.ndarray:
    """Unnormalised surface brightness of each source at pixel offsets ``(d_row, d_col)``."""
    if psf.donut_radius > 0:
        return _donut(d_row, d_col, batch, psf)
    if point_kind and psf.trail_length == 0:
        inverse = _inverse_covariance(psf.moffat_alpha, psf.axis_ratio, psf.angle)
        return (1.0 + _quadratic_form(inverse, d_row, d_col)) ** -psf.beta
    # Extended sources: a galaxy convolved with the PSF has (about) the sum of the two covariances.
    covariance = _covariance(psf.sigma, psf.axis_ratio, psf.angle)
    if not point_kind:
        galaxy = _covariance(batch.size, batch.axis_ratio, batch.angle)
        covariance = tuple(p + g for p, g in zip(covariance, galaxy, strict=True))
    covariance = tuple(np.broadcast_to(c, (len(batch),))[:, None, None] for c in covariance)
    inverse = _invert(covariance)
    if psf.trail_length > 0:
        return _trailed_gaussian(inverse, d_row, d_col, psf.trail_length, psf.trail_angle)
    # A softened exponential: Gaussian-like core from the seeing, exponential wings from the galaxy.
    return np.exp(-(np.sqrt(1.0 + _quadratic_form(inverse, d_row, d_col)) - 1.0))


def _donut(d_row, d_col, batch: SourceCatalog, psf: PSF) -> np.ndarray:
    """A defocused image: a ring between the obscuration and the pupil edge, blurred by seeing and size."""
    radius = np.hypot(d_row, d_col)
    blur = np.sqrt(psf.sigma**2 + batch.size**2)[:, None, None]
    inner = psf.donut_radius * psf.donut_inner_fraction
    rising = 0.5 * (1.0 + np.tanh((radius - inner) / blur))
    falling = 0.5 * (1.0 + np.tanh((psf.donut_radius - radius) / blur))
    return rising * falling


def _trailed_gaussian(inverse, d_row, d_col, length: float, angle: float) -> np.ndarray:
    """A Gaussian (inverse covariance ``inverse``) smeared uniformly along a segment: closed form with erf."""
    p_rr, p_rc, p_cc = inverse
    u_row, u_col = np.cos(angle), np.sin(angle)
    along = p_rr * u_row**2 + 2 * p_rc * u_row * u_col + p_cc * u_col**2
    projection = (p_rr * u_row + p_rc * u_col) * d_row + (p_rc * u_row + p_cc * u_col) * d_col
    centre = projection / along
    across = _quadratic_form(inverse, d_row, d_col) - projection * centre
    scale = np.sqrt(along / 2.0)
    return np.exp(-0.5 * np.maximum(across, 0.0)) * (
        erf(scale * (length / 2.0 - centre)) + erf(scale * (length / 2.0 + centre))
    )


def _covariance(sigma, axis_ratio, angle):
    """(rr, rc, cc) covariance of an elliptical profile: ``sigma`` is the geometric-mean width."""
    major2 = sigma**2 / axis_ratio
    minor2 = sigma**2 * axis_ratio
    cos, sin = np.cos(angle), np.sin(angle)
    c_rr = major2 * cos**2 + minor2 * sin**2
    c_cc = major2 * sin**2 + minor2 * cos**2
    return c_rr, (major2 - minor2) * cos * sin, c_cc


def _invert(covariance):
    c_rr, c_rc, c_cc = covariance
    det = c_rr * c_cc - c_rc**2
    return c_cc / det, -c_rc / det, c_rr / det


def _inverse_covariance(sigma, axis_ratio, angle):
    return _invert(_covariance(sigma, axis_ratio, angle))


def _quadratic_form(inverse, d_row, d_col):
    p_rr, p_rc, p_cc = inverse
    return p_rr * d_row**2 + 2 * p_rc * d_row * d_col + p_cc * d_col**2

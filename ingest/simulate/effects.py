"""Pixel-level effects that turn a clean simulated CCD into one with a known problem.

An effect hooks into one or more stages of :func:`ingest.simulate.exposure.render_ccd`:

* ``sky_factor``: multiplies the sky level (flat-field rings, light scattered by clouds);
* ``source_transmission``: multiplies source fluxes at their focal-plane positions (cloud extinction);
* ``extra_sources``: adds sources that are not on the sky (spurious detections);
* ``add_light``: adds noise-free light before photon noise (ghosts, scattered light, waves, satellites);
* ``add_readout``: changes the image after noise, as the electronics would (row noise, dead amplifiers).

Every hook defaults to "no change" (``None`` / no-op), so an effect implements only the stages it touches.
Light amplitudes are in ADU, already scaled to the exposure's sky noise when the effect was built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulate.conditions import AmplifierProperties, ObservingConditions
from ingest.simulate.focal_plane import (
    FOCAL_PLANE_RADIUS,
    CcdFrame,
    FourierField,
    distance_from,
    distance_to_line,
    smooth_on_ccd,
    soft_ring,
    taper,
)
from ingest.simulate.stars import FULL_CCD_PIXELS, PSF, SourceCatalog


class Effect:
    """Base of all effects; see the module docstring for the stages."""

    def sky_factor(self, frame: CcdFrame, fx: np.ndarray, fy: np.ndarray) -> np.ndarray | None:
        return None

    def source_transmission(self, frame: CcdFrame, fx: np.ndarray, fy: np.ndarray) -> np.ndarray | None:
        return None

    def extra_sources(
        self, frame: CcdFrame, rng: np.random.Generator, conditions: ObservingConditions, psf: PSF
    ) -> SourceCatalog | None:
        return None

    def add_light(self, frame: CcdFrame, light: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> None:
        return None

    def add_readout(
        self, frame: CcdFrame, image: np.ndarray, amps: AmplifierProperties, rng: np.random.Generator
    ) -> None:
        return None


@dataclass(frozen=True)
class TwilightFlatPattern(Effect):
    """A bright twilight sky shows the residual instrument response: concentric rings plus a gradient."""

    ring_amplitude: float
    ring_wavelength: float
    ring_phase: float
    radial_amplitude: float
    gradient_amplitude: float
    gradient_angle: float

    def sky_factor(self, frame, fx, fy):
        return smooth_on_ccd(self.response, frame)

    def response(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Relative sky level at focal-plane positions."""
        radius = distance_from(fx, fy, (0.0, 0.0))
        gradient = (fx * np.cos(self.gradient_angle) + fy * np.sin(self.gradient_angle)) / FOCAL_PLANE_RADIUS
        return (
            1.0
            + self.ring_amplitude * np.cos(2 * np.pi * radius / self.ring_wavelength + self.ring_phase)
            + self.radial_amplitude * (radius / FOCAL_PLANE_RADIUS) ** 2
            + self.gradient_amplitude * gradient
        )


@dataclass(frozen=True)
class CloudCover(Effect):
    """Patchy cloud: sources dimmed by a smooth opacity map, sky brightened where the cloud is thick."""

    opacity: float
    patchiness: float
    pattern: FourierField
    scattered_sky: float

    def transmission(self, fx, fy) -> np.ndarray:
        return np.clip(1.0 - self.opacity - self.patchiness * self.pattern(fx, fy), 0.03, 1.0)

    def sky_factor(self, frame, fx, fy):
        return smooth_on_ccd(lambda x, y: 1.0 + self.scattered_sky * (1.0 - self.transmission(x, y)), frame)

    def source_transmission(self, frame, fx, fy):
        return self.transmission(fx, fy)


@dataclass(frozen=True)
class GhostAndScatter(Effect):
    """Light from a bright star: a pupil-ghost donut and a scattered-light halo.

    Added to every CCD it reaches, so the pattern is continuous across CCD boundaries; CCDs beyond the
    halo's reach and away from the ring get nothing measurable and are skipped.
    """

    star: tuple[float, float]
    ghost_center: tuple[float, float]
    ghost_radius: float
    ghost_width: float
    ghost_amplitude: float
    scatter_amplitude: float
    scatter_scale: float
    reach: float

    def field(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Added light (ADU) at focal-plane positions; continuous across CCD boundaries.

        The ghost ring is compact by itself; the scattered light's long Lorentzian wings are tapered to
        zero at ``reach`` so that CCDs far from the star receive none.
        """
        ghost = self.ghost_amplitude * soft_ring(
            distance_from(fx, fy, self.ghost_center), self.ghost_radius, self.ghost_width
        )
        distance = distance_from(fx, fy, self.star)
        scatter = self.scatter_amplitude / (1.0 + (distance / self.scatter_scale) ** 2)
        return ghost + scatter * taper(distance, self.reach)

    def add_light(self, frame, light, fx, fy):
        if self.field(*frame.coarse_grid()).max() > 1e-3 * self.ghost_amplitude:
            light += smooth_on_ccd(self.field, frame)


@dataclass(frozen=True)
class SpuriousDetections(Effect):
    """Many faint compact blobs and a mottled background: what makes a detector find too many objects."""

    density: float  # per full-size CCD
    peak_snr: tuple[float, float]
    noise_sigma: float
    mottle: FourierField
    mottle_amplitude: float

    def extra_sources(self, frame, rng, conditions, psf):
        rows, cols = frame.shape
        n = rng.poisson(self.density * rows * cols / FULL_CCD_PIXELS)
        # Flux giving the requested peak signal-to-noise for a compact blob the size of the PSF.
        flux = rng.uniform(*self.peak_snr, n) * self.noise_sigma * 2 * np.pi * psf.sigma**2
        return SourceCatalog(
            row=rng.uniform(-0.5, rows - 0.5, n),
            col=rng.uniform(-0.5, cols - 0.5, n),
            flux=flux,
            size=np.zeros(n),
            axis_ratio=np.ones(n),
            angle=np.zeros(n),
        )

    def add_light(self, frame, light, fx, fy):
        light += self.mottle_amplitude * smooth_on_ccd(self.mottle, frame)


@dataclass(frozen=True)
class WavePattern(Effect):
    """Large, slightly bent stripes across the whole focal plane, unlike any known artifact."""

    amplitude: float
    wavelength: float
    angle: float
    phase: float
    curvature: float

    def add_light(self, frame, light, fx, fy):
        light += smooth_on_ccd(self.field, frame)

    def field(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        along = fx * np.cos(self.angle) + fy * np.sin(self.angle)
        across = -fx * np.sin(self.angle) + fy * np.cos(self.angle)
        return self.amplitude * np.sin(
            2 * np.pi * (along + self.curvature * across**2) / self.wavelength + self.phase
        )


@dataclass(frozen=True)
class SatelliteStreak(Effect):
    """A satellite crossing the field: a straight line continuous over every CCD it crosses."""

    point: tuple[float, float]
    angle: float
    width_pixels: float
    brightness: float

    def add_light(self, frame, light, fx, fy):
        if not self._crosses(frame):
            return
        distance = distance_to_line(fx, fy, self.point, self.angle) * frame.pixels_per_unit
        light += self.brightness * np.exp(-0.5 * (distance / self.width_pixels) ** 2)

    def _crosses(self, frame: CcdFrame) -> bool:
        """Cheap test on the CCD corners so that CCDs far from the line cost nothing."""
        fx, fy = frame.focal_plane_axes()
        corners_x = np.array([fx[0, 0], fx[0, 0], fx[-1, 0], fx[-1, 0]])
        corners_y = np.array([fy[0, 0], fy[0, -1], fy[0, 0], fy[0, -1]])
        signed = -(corners_x - self.point[0]) * np.sin(self.angle) + (corners_y - self.point[1]) * np.cos(
            self.angle
        )
        margin = 6 * self.width_pixels / frame.pixels_per_unit
        return bool(signed.min() < margin and signed.max() > -margin)


@dataclass(frozen=True)
class CcdDefect:
    """What is wrong with one bad CCD.

    ``kind`` is ``"no_data"`` (no light: read noise only), ``"dead_amp"`` (half the CCD, one amplifier,
    reads zero) or ``"hot"`` (hot columns, a glowing spot and saturated hot pixels).
    """

    ccdname: str
    kind: str
    dead_amp: str = "A"
    hot_columns: tuple[tuple[float, float, float], ...] = ()  # (column fraction, start-row fraction, ADU)
    glow: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # row frac, col frac, radius frac, ADU
    hot_pixel_fraction: float = 0.0


@dataclass(frozen=True)
class DetectorDefects(Effect):
    """Bad CCDs: missing data, a dead amplifier or hot spots."""

    defects: tuple[CcdDefect, ...]

    def add_readout(self, frame, image, amps, rng):
        for defect in self.defects:
            if defect.ccdname == frame.ccdname:
                _apply_defect(defect, image, amps, rng)


def _apply_defect(defect: CcdDefect, image: np.ndarray, amps: AmplifierProperties, rng) -> None:
    rows, cols = image.shape
    if defect.kind == "no_data":
        # No light reached the CCD (a shutter or readout failure): after the CP's bias subtraction only read
        # noise is left. Not exact zeros, which the reader refuses as a corrupt CCD rather than a bad one.
        image[:] = rng.normal(0.0, max(amps.read_noise), image.shape)
    elif defect.kind == "dead_amp":
        half = cols // 2
        image[:, slice(0, half) if defect.dead_amp == "A" else slice(half, cols)] = 0.0
    elif defect.kind == "hot":
        for col_fraction, start_fraction, level in defect.hot_columns:
            # Charge from a hot pixel trails towards the readout at row 0.
            image[: max(1, int(start_fraction * rows)), int(col_fraction * (cols - 1))] += level
        row_frac, col_frac, radius_frac, level = defect.glow
        row_axis = (np.arange(rows)[:, None] - row_frac * rows) / (radius_frac * cols)
        col_axis = (np.arange(cols)[None, :] - col_frac * cols) / (radius_frac * cols)
        image += level * np.exp(-0.5 * (row_axis**2 + col_axis**2))
        hot = rng.random(image.shape) < defect.hot_pixel_fraction
        image[hot] = max(amps.saturation)
    else:
        raise ValueError(f"unknown CCD defect kind {defect.kind!r}")


@dataclass(frozen=True)
class PatternNoise(Effect):
    """Electronic pickup on one backplane: per-row offsets and a coherent wave along the readout sequence."""

    ccdnames: tuple[str, ...]
    row_offset_sigma: float
    wave_amplitude: float
    wave_period: float
    wave_phase: float

    def add_readout(self, frame, image, amps, rng):
        if frame.ccdname not in self.ccdnames:
            return
        rows, cols = image.shape
        half = cols // 2
        for amp_columns in (slice(0, half), slice(half, cols)):
            width = amp_columns.stop - amp_columns.start
            image[:, amp_columns] += rng.normal(0.0, self.row_offset_sigma, (rows, 1)).astype(image.dtype)
            # Pixels are read one after another along each row, so a fixed-frequency pickup draws slanted
            # stripes whose slope depends on how the period divides the row length.
            readout_order = np.arange(rows)[:, None] * width + np.arange(width)[None, :]
            image[:, amp_columns] += self.wave_amplitude * np.sin(
                2 * np.pi * readout_order / self.wave_period + self.wave_phase
            ).astype(image.dtype)

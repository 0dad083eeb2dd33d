"""Where simulated pixels sit on the DECam focal plane, and smooth light fields defined over it.

Artifacts that cross CCD boundaries (ghosts, scattered light, clouds, flat-field rings, satellite streaks)
are written as functions of focal-plane coordinates, so that adjacent CCDs see one continuous pattern.
Focal-plane units follow :func:`vecstore.decam.focal_plane_positions`: one unit is a CCD's short side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecstore.decam import ccdnum_for, focal_plane_positions

# The farthest CCD corner is about 7 units from the optical axis; used to normalise radial patterns.
FOCAL_PLANE_RADIUS = 7.0


@dataclass(frozen=True)
class CcdFrame:
    """One CCD of the simulated camera: its name, number, centre on the focal plane and pixel shape.

    Image rows run along the CCD's long side, which lies along focal-plane x; columns run along y.
    One focal-plane unit spans ``shape[1]`` pixels in both directions, so distances are isotropic.
    """

    ccdname: str
    ccdnum: int
    center: tuple[float, float]
    shape: tuple[int, int]

    @property
    def pixels_per_unit(self) -> float:
        return float(self.shape[1])

    def focal_plane_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane x of every row as a ``(rows, 1)`` column and y of every column as a ``(1, cols)`` row.

        Broadcasting the pair gives the coordinates of every pixel without building two full images.
        """
        rows, cols = self.shape
        fx = self.center[0] + (np.arange(rows) + 0.5 - rows / 2) / self.pixels_per_unit
        fy = self.center[1] + (np.arange(cols) + 0.5 - cols / 2) / self.pixels_per_unit
        return fx[:, None], fy[None, :]

    def to_focal_plane(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane coordinates of (possibly fractional) pixel positions."""
        rows, cols = self.shape
        fx = self.center[0] + (np.asarray(row) + 0.5 - rows / 2) / self.pixels_per_unit
        fy = self.center[1] + (np.asarray(col) + 0.5 - cols / 2) / self.pixels_per_unit
        return fx, fy

    def coarse_grid(self, steps: tuple[int, int] = (65, 33)) -> tuple[np.ndarray, np.ndarray]:
        """A grid of focal-plane points covering the CCD (about 1/32 unit apart), for cheap max checks."""
        fx_axis, fy_axis = self.focal_plane_axes()
        fx = np.linspace(fx_axis[0, 0], fx_axis[-1, 0], steps[0])[:, None]
        fy = np.linspace(fy_axis[0, 0], fy_axis[0, -1], steps[1])[None, :]
        return fx, fy


def ccd_frames(ccdnames: tuple[str, ...], shape: tuple[int, int]) -> tuple[CcdFrame, ...]:
    """Frames of the named CCDs, in the order given."""
    positions = focal_plane_positions()
    return tuple(CcdFrame(name, ccdnum_for(name), positions[name], shape) for name in ccdnames)


@dataclass(frozen=True)
class FourierField:
    """A smooth random field: a sum of plane waves, scaled to roughly unit standard deviation.

    Each wave is separable in (x, y), so evaluating on a CCD costs two outer products per wave
    instead of a transcendental function per pixel.
    """

    kx: np.ndarray
    ky: np.ndarray
    phase: np.ndarray
    amplitude: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float, n_waves: int = 8) -> FourierField:
        """Random field whose features are about ``scale`` focal-plane units across."""
        wavenumber = 2 * np.pi / scale * rng.uniform(0.5, 1.5, n_waves)
        direction = rng.uniform(0, 2 * np.pi, n_waves)
        amplitude = rng.normal(size=n_waves)
        amplitude *= np.sqrt(2.0 / np.sum(amplitude**2))  # each cos wave has variance a**2 / 2
        return cls(
            kx=wavenumber * np.cos(direction),
            ky=wavenumber * np.sin(direction),
            phase=rng.uniform(0, 2 * np.pi, n_waves),
            amplitude=amplitude,
        )

    def __call__(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(np.shape(fx), np.shape(fy)))
        for kx, ky, phase, amplitude in zip(self.kx, self.ky, self.phase, self.amplitude, strict=True):
            a = kx * np.asarray(fx)
            b = ky * np.asarray(fy) + phase
            total += amplitude * (np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b))
        return total


def distance_from(fx: np.ndarray, fy: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    """Focal-plane distance of every point from ``point``."""
    return np.hypot(fx - point[0], fy - point[1])


def soft_ring(distance: np.ndarray, radius: float, width: float) -> np.ndarray:
    """A ring of unit height: Gaussian in distance around ``radius``."""
    return np.exp(-0.5 * ((distance - radius) / width) ** 2)


def taper(distance: np.ndarray, outer: float) -> np.ndarray:
    """Smoothly 1 at distance 0 falling to exactly 0 at ``outer`` and beyond, so far CCDs stay clean."""
    x = np.clip(distance / outer, 0.0, 1.0)
    return (1 - x**2) ** 2


def distance_to_line(fx: np.ndarray, fy: np.ndarray, point: tuple[float, float], angle: float) -> np.ndarray:
    """Perpendicular focal-plane distance to the infinite line through ``point`` at ``angle`` (radians)."""
    return np.abs(-(fx - point[0]) * np.sin(angle) + (fy - point[1]) * np.cos(angle))


def smooth_on_ccd(field, frame: CcdFrame) -> np.ndarray:
    """A smooth focal-plane field on every pixel of ``frame``, by bilinear interpolation from a coarse grid.

    Fields varying over tens of pixels or more (rings, clouds, waves, scattered light) need not be
    evaluated per pixel; sampling every few pixels keeps the error far below the noise and makes a full
    CCD cost a couple of array operations. ``field(fx, fy)`` is evaluated on the grid only.
    """
    rows, cols = frame.shape
    # About 64 samples per focal-plane unit, never coarser than every 8 pixels.
    step = int(max(1, min(8, frame.pixels_per_unit // 64)))
    row_knots = np.unique(np.r_[np.arange(0, rows, step), rows - 1])
    col_knots = np.unique(np.r_[np.arange(0, cols, step), cols - 1])
    fx, fy = frame.to_focal_plane(row_knots[:, None], col_knots[None, :])
    coarse = np.broadcast_to(field(fx, fy), (len(row_knots), len(col_knots)))
    # Columns first on the few knot rows; then whole rows, which numpy copies fast, fill the image.
    col_index, col_weight = _linear_weights(col_knots, cols)
    knot_rows = coarse[:, col_index] * (1 - col_weight) + coarse[:, col_index + 1] * col_weight
    row_index, row_weight = _linear_weights(row_knots, rows)
    image = knot_rows[row_index] * (1 - row_weight)[:, None]
    image += knot_rows[row_index + 1] * row_weight[:, None]
    return image


def _linear_weights(knots: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel 0..size-1: index of the knot at or before it and its weight towards the next."""
    if len(knots) == 1:
        return np.zeros(size, dtype=np.int64), np.zeros(size)
    pixels = np.arange(size)
    index = np.clip(np.searchsorted(knots, pixels, side="right") - 1, 0, len(knots) - 2)
    weight = (pixels - knots[index]) / (knots[index + 1] - knots[index])
    return index, weight

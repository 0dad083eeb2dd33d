"""Observing conditions of a simulated DECam exposure: band, exposure time, sky, seeing, detector gains.

Numbers are typical of DECam at CTIO and the Community Pipeline (CP) ``ooi`` products, which are in ADU and
keep the sky level. They aim at plausible images, not at photometric calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARCSEC_PER_PIXEL = 0.263
PIXEL_AREA_ARCSEC2 = ARCSEC_PER_PIXEL**2
READ_NOISE_ELECTRONS = 7.0

# CP FILTER strings: band, instrument, filter family, filter id, central wavelength and width in Angstrom.
FILTER_NAMES = {
    "g": "g DECam SDSS c0001 4720.0 1520.0",
    "r": "r DECam SDSS c0002 6415.0 1480.0",
    "i": "i DECam SDSS c0003 7835.0 1470.0",
    "z": "z DECam SDSS c0004 9260.0 1520.0",
    "Y": "Y DECam c0005 10095.0 1130.0",
}
# Magnitude giving 1 ADU/s at airmass 1.
ZEROPOINT_ADU = {"g": 25.0, "r": 25.25, "i": 25.1, "z": 24.85, "Y": 23.9}
# Dark-sky surface brightness, mag/arcsec^2.
DARK_SKY_MAG = {"g": 22.05, "r": 21.1, "i": 20.1, "z": 18.9, "Y": 18.0}
# Atmospheric extinction, mag per airmass.
EXTINCTION = {"g": 0.17, "r": 0.10, "i": 0.07, "z": 0.06, "Y": 0.06}
# Survey exposure times (s): longer in the bands with bright sky so that depths are comparable.
EXPTIME_RANGE = {
    "g": (80.0, 140.0),
    "r": (60.0, 100.0),
    "i": (60.0, 110.0),
    "z": (100.0, 180.0),
    "Y": (50.0, 90.0),
}
BANDS = tuple(FILTER_NAMES)


@dataclass(frozen=True)
class ObservingConditions:
    """What the sky and telescope delivered for one exposure (before any CCD-level defect)."""

    band: str
    exptime: float
    airmass: float
    seeing_fwhm_arcsec: float
    sky_mag: float
    star_density: float
    galaxy_density: float

    @property
    def seeing_fwhm_pixels(self) -> float:
        return self.seeing_fwhm_arcsec / ARCSEC_PER_PIXEL

    @property
    def sky_adu(self) -> float:
        """Sky level per pixel in ADU for the whole exposure."""
        rate = 10 ** (-0.4 * (self.sky_mag - ZEROPOINT_ADU[self.band])) * PIXEL_AREA_ARCSEC2
        return rate * self.exptime

    def flux_adu(self, magnitude: np.ndarray) -> np.ndarray:
        """Total ADU collected from sources of the given magnitudes, after atmospheric extinction."""
        zeropoint = ZEROPOINT_ADU[self.band] - EXTINCTION[self.band] * (self.airmass - 1)
        return 10 ** (-0.4 * (np.asarray(magnitude) - zeropoint)) * self.exptime

    def sky_sigma_adu(self, gain: float = 4.2) -> float:
        """Per-pixel noise of blank sky, in ADU, for a typical amplifier gain."""
        return float(np.sqrt(self.sky_adu / gain + (READ_NOISE_ELECTRONS / gain) ** 2))


def draw_good_conditions(rng: np.random.Generator, bands: tuple[str, ...]) -> ObservingConditions:
    """Conditions of an ordinary survey exposure: dark-ish sky, 0.8-1.5 arcsec seeing, modest airmass."""
    band = bands[int(rng.integers(len(bands)))]
    low, high = EXPTIME_RANGE[band]
    return ObservingConditions(
        band=band,
        exptime=float(np.round(rng.uniform(low, high))),
        airmass=float(rng.uniform(1.0, 1.5)),
        seeing_fwhm_arcsec=float(rng.uniform(0.8, 1.5)),
        sky_mag=float(DARK_SKY_MAG[band] + rng.uniform(-0.3, 0.2)),
        # Star counts change with Galactic latitude; galaxy counts only with cosmic variance.
        star_density=float(np.exp(rng.uniform(np.log(250.0), np.log(800.0)))),
        galaxy_density=float(rng.uniform(2600.0, 3400.0)),
    )


@dataclass(frozen=True)
class AmplifierProperties:
    """Gain (e-/ADU), read noise (ADU) and saturation level (ADU) of a CCD's two amplifiers A and B."""

    gain: tuple[float, float]
    read_noise: tuple[float, float]
    saturation: tuple[float, float]


def amplifier_properties(ccdnum: int) -> AmplifierProperties:
    """Fixed per CCD like real hardware: the same CCD has the same gains in every exposure and survey."""
    rng = np.random.default_rng([ccdnum, 4094])
    gain = rng.uniform(3.8, 4.6, 2)
    return AmplifierProperties(
        gain=(float(np.round(gain[0], 4)), float(np.round(gain[1], 4))),
        read_noise=tuple(float(np.round(READ_NOISE_ELECTRONS * rng.uniform(0.85, 1.1) / g, 4)) for g in gain),
        saturation=tuple(float(np.round(s)) for s in rng.uniform(38000.0, 46000.0, 2)),
    )

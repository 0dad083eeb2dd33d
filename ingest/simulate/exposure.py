"""Render the pixels of one CCD of a simulated exposure from its recipe.

Order of the stages follows the physics: sky and sources form the light reaching the detector, photon and
read noise are added by detection, electronic defects by readout, and the ADC saturates last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.simulate.conditions import AmplifierProperties, ObservingConditions, amplifier_properties
from ingest.simulate.effects import Effect
from ingest.simulate.focal_plane import CcdFrame
from ingest.simulate.stars import PSF, draw_sky_sources, render_sources


@dataclass(frozen=True)
class ExposureRecipe:
    """Everything needed to render any CCD of one exposure."""

    conditions: ObservingConditions
    psf: PSF
    effects: tuple[Effect, ...] = ()


def render_ccd(recipe: ExposureRecipe, frame: CcdFrame, rng: np.random.Generator) -> np.ndarray:
    """The CCD's image in ADU (float32, shape ``frame.shape``), sky level included as in CP ooi files."""
    amps = amplifier_properties(frame.ccdnum)
    fx, fy = frame.focal_plane_axes()
    light = _sky(recipe, frame, fx, fy)
    light += _sources(recipe, frame, rng)
    for effect in recipe.effects:
        effect.add_light(frame, light, fx, fy)
    image = add_detector_noise(light, amps, rng)
    for effect in recipe.effects:
        effect.add_readout(frame, image, amps, rng)
    return saturate(image, amps)


def _sky(recipe: ExposureRecipe, frame: CcdFrame, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    sky = np.full(frame.shape, recipe.conditions.sky_adu)
    for effect in recipe.effects:
        factor = effect.sky_factor(frame, fx, fy)
        if factor is not None:
            sky *= factor
    return sky


def _sources(recipe: ExposureRecipe, frame: CcdFrame, rng: np.random.Generator) -> np.ndarray:
    catalog = draw_sky_sources(rng, frame.shape, recipe.conditions)
    for effect in recipe.effects:
        transmission = effect.source_transmission(frame, *frame.to_focal_plane(catalog.row, catalog.col))
        if transmission is not None:
            catalog = catalog.with_flux(catalog.flux * transmission)
    for effect in recipe.effects:
        extra = effect.extra_sources(frame, rng, recipe.conditions, recipe.psf)
        if extra is not None:
            catalog = catalog.concat(extra)
    return render_sources(frame.shape, catalog, recipe.psf, recipe.conditions.sky_sigma_adu())


def _amp_columns(amps_values: tuple[float, float], cols: int) -> np.ndarray:
    """A ``(1, cols)`` row holding amplifier A's value on the left half and B's on the right."""
    half = cols // 2
    return np.where(np.arange(cols) < half, amps_values[0], amps_values[1])[None, :]


def add_detector_noise(light: np.ndarray, amps: AmplifierProperties, rng: np.random.Generator) -> np.ndarray:
    """Photon noise (Gaussian limit of Poisson, in electrons) and read noise, returned in ADU as float32.

    The Gaussian limit is accurate for the hundreds of electrons of sky per pixel and several times faster.
    """
    cols = light.shape[1]
    inverse_gain = (1.0 / _amp_columns(amps.gain, cols)).astype(np.float32)
    read_variance = (_amp_columns(amps.read_noise, cols) ** 2).astype(np.float32)
    image = light.astype(np.float32)
    # In-place float32 arithmetic: this is the only full-image work every CCD pays for.
    sigma = np.maximum(image, 0.0)
    sigma *= inverse_gain
    sigma += read_variance
    np.sqrt(sigma, out=sigma)
    noise = rng.standard_normal(light.shape, dtype=np.float32)
    noise *= sigma
    image += noise
    return image


def saturate(image: np.ndarray, amps: AmplifierProperties) -> np.ndarray:
    """Clip at each amplifier's saturation level, as the CP leaves saturated pixels."""
    return np.minimum(image, _amp_columns(amps.saturation, image.shape[1]).astype(np.float32))

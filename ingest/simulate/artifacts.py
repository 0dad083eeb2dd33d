"""The eleven bad-exposure categories of the paper (Section 2.6), as physical knobs drawn per exposure.

Each category is a frozen dataclass of parameters with

* ``draw(rng, context)``: parameters for one exposure, from the exposure's good conditions and CCDs;
* ``apply(recipe)``: the recipe with the category's conditions, PSF and pixel effects;
* ``affected_ccds(frames)``: the CCDs that carry the problem (all of them for exposure-level categories).

Amplitudes of added light are drawn in units of the exposure's sky noise so that every problem is
visible whatever the band and exposure time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ingest.simulate.conditions import (
    ARCSEC_PER_PIXEL,
    PIXEL_AREA_ARCSEC2,
    ZEROPOINT_ADU,
    ObservingConditions,
)
from ingest.simulate.effects import (
    CcdDefect,
    CloudCover,
    DetectorDefects,
    GhostAndScatter,
    PatternNoise,
    SatelliteStreak,
    SpuriousDetections,
    TwilightFlatPattern,
    WavePattern,
)
from ingest.simulate.exposure import ExposureRecipe
from ingest.simulate.focal_plane import CcdFrame, FourierField

# A typical saturation level (ADU); each amplifier's own level is a little different.
_TYPICAL_SATURATION = 42000.0
# A CCD counts as Ghost_Scatter when the added light varies by at least this many sky sigmas across it:
# an inspector sees structure, not a uniform offset.
_GHOST_VISIBLE_SIGMA = 2.0


@dataclass(frozen=True)
class DrawContext:
    """What a category may look at when drawing its parameters."""

    conditions: ObservingConditions
    frames: tuple[CcdFrame, ...]

    @property
    def sky_sigma(self) -> float:
        return self.conditions.sky_sigma_adu()


def _all_ccds(frames: tuple[CcdFrame, ...]) -> tuple[str, ...]:
    return tuple(frame.ccdname for frame in frames)


class _ExposureLevel:
    """Mixin for categories that affect every CCD of the exposure."""

    def affected_ccds(self, frames: tuple[CcdFrame, ...]) -> tuple[str, ...]:
        return _all_ccds(frames)


@dataclass(frozen=True)
class Saturated(_ExposureLevel):
    """Twilight: sky close to saturation, showing the flat-field's rings and a sky gradient."""

    category: ClassVar[str] = "Saturated"
    sky_fraction_of_saturation: float
    flat_pattern: TwilightFlatPattern

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> Saturated:
        return cls(
            sky_fraction_of_saturation=float(rng.uniform(0.5, 0.8)),
            flat_pattern=TwilightFlatPattern(
                ring_amplitude=float(rng.uniform(0.01, 0.04)),
                ring_wavelength=float(rng.uniform(1.5, 4.0)),
                ring_phase=float(rng.uniform(0, 2 * np.pi)),
                radial_amplitude=float(rng.uniform(-0.06, 0.06)),
                gradient_amplitude=float(rng.uniform(0.0, 0.05)),
                gradient_angle=float(rng.uniform(0, 2 * np.pi)),
            ),
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        conditions = recipe.conditions
        sky_rate = self.sky_fraction_of_saturation * _TYPICAL_SATURATION / conditions.exptime
        sky_mag = ZEROPOINT_ADU[conditions.band] - 2.5 * np.log10(sky_rate / PIXEL_AREA_ARCSEC2)
        return replace(
            recipe,
            conditions=replace(conditions, sky_mag=float(sky_mag)),
            effects=(*recipe.effects, self.flat_pattern),
        )


@dataclass(frozen=True)
class CloudsTransparency(_ExposureLevel):
    """Clouds: 1-2 magnitudes of patchy extinction and moonlight scattered into a brighter sky."""

    category: ClassVar[str] = "Clouds_Transparency"
    clouds: CloudCover

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> CloudsTransparency:
        return cls(
            CloudCover(
                opacity=float(rng.uniform(0.6, 0.85)),
                patchiness=float(rng.uniform(0.03, 0.08)),
                pattern=FourierField.draw(rng, scale=float(rng.uniform(1.5, 5.0))),
                scattered_sky=float(rng.uniform(0.5, 1.5)),
            )
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.clouds))


@dataclass(frozen=True)
class BadPSF(_ExposureLevel):
    """A broad, elongated PSF (bad seeing, wind shake or an optics problem)."""

    category: ClassVar[str] = "PSF"
    fwhm_arcsec: float
    axis_ratio: float
    angle: float

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> BadPSF:
        return cls(
            fwhm_arcsec=float(rng.uniform(2.1, 3.2)),
            axis_ratio=float(rng.uniform(0.55, 0.95)),
            angle=float(rng.uniform(0, np.pi)),
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        psf = replace(
            recipe.psf, fwhm=self.fwhm_arcsec / ARCSEC_PER_PIXEL, axis_ratio=self.axis_ratio, angle=self.angle
        )
        conditions = replace(recipe.conditions, seeing_fwhm_arcsec=self.fwhm_arcsec)
        return replace(recipe, psf=psf, conditions=conditions)


@dataclass(frozen=True)
class NonoptimalExposure(_ExposureLevel):
    """Underexposed: the shutter was open for a fraction ``expfactor`` of the planned time."""

    category: ClassVar[str] = "Nonoptimal_Exposure"
    planned_exptime: float
    exptime: float

    @property
    def expfactor(self) -> float:
        return self.exptime / self.planned_exptime

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> NonoptimalExposure:
        planned = context.conditions.exptime
        exptime = max(1.0, round(planned * float(rng.uniform(0.04, 0.3)), 1))
        return cls(planned_exptime=planned, exptime=exptime)

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, conditions=replace(recipe.conditions, exptime=self.exptime))


@dataclass(frozen=True)
class GhostScatter:
    """A bright star near the CCDs: pupil-ghost donut and scattered light over neighbouring CCDs."""

    category: ClassVar[str] = "Ghost_Scatter"
    light: GhostAndScatter
    visibility_threshold: float  # ADU of variation across a CCD from which it counts as affected
    visibility_threshold: float  # ADU of variation across a CCD from which the CCD counts as affected
    visible_on: tuple[str, ...]

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> GhostScatter:
        anchor = context.frames[int(rng.integers(len(context.frames)))]
        # The star sits on, or just off, a CCD that is present so at least that CCD shows the halo.
        star = (anchor.center[0] + rng.uniform(-1.3, 1.3), anchor.center[1] + rng.uniform(-0.7, 0.7))
        # The reflection ghost lands displaced from the star towards the optical axis.
        inward = np.arctan2(-star[1], -star[0]) if np.hypot(*star) > 0 else rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(0.3, 0.8)
        sigma = context.sky_sigma
        light = GhostAndScatter(
            star=star,
            ghost_center=(star[0] + shift * np.cos(inward), star[1] + shift * np.sin(inward)),
            ghost_radius=float(rng.uniform(0.6, 1.4)),
            ghost_width=float(rng.uniform(0.08, 0.2)),
            ghost_amplitude=float(rng.uniform(3.0, 8.0) * sigma),
            scatter_amplitude=float(rng.uniform(10.0, 30.0) * sigma),
            scatter_scale=float(rng.uniform(0.25, 0.6)),
            reach=float(rng.uniform(2.2, 3.2)),
        )
        # The halo is >= 10 sigma at the star, which is on the anchor CCD or within 0.4 units of it, so the
        # anchor always varies by more than the threshold and at least one CCD is affected.
        threshold = _GHOST_VISIBLE_SIGMA * sigma
        visible = tuple(
            f.ccdname for f in context.frames if np.ptp(light.field(*f.coarse_grid())) >= threshold
        )
        return cls(light, threshold, visible)

    def affected_ccds(self, frames: tuple[CcdFrame, ...]) -> tuple[str, ...]:
        return self.visible_on

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.light))


@dataclass(frozen=True)
class NObjects(_ExposureLevel):
    """Too many detections: a swarm of faint spurious blobs over a mottled, hard-to-model sky."""

    category: ClassVar[str] = "NObjects"
    spurious: SpuriousDetections

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> NObjects:
        sigma = context.sky_sigma
        return cls(
            SpuriousDetections(
                # 5-15 times the detections of a normal CCD (about 2000).
                density=float(rng.uniform(10000.0, 30000.0)),
                peak_snr=(3.0, 8.0),
                noise_sigma=sigma,
                # Many waves, so the mottling looks like random blotches rather than a lattice.
                mottle=FourierField.draw(rng, scale=float(rng.uniform(0.08, 0.25)), n_waves=24),
                mottle_amplitude=float(rng.uniform(0.5, 1.5) * sigma),
            )
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.spurious))


@dataclass(frozen=True)
class BadCCD:
    """One to three CCDs with no data, a dead amplifier or hot spots."""

    category: ClassVar[str] = "Bad_CCD"
    defects: DetectorDefects

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> BadCCD:
        names = _all_ccds(context.frames)
        count = int(rng.integers(1, min(3, len(names)) + 1))
        chosen = sorted(rng.choice(len(names), size=count, replace=False))
        return cls(DetectorDefects(tuple(_draw_defect(rng, names[i], context.sky_sigma) for i in chosen)))

    def affected_ccds(self, frames: tuple[CcdFrame, ...]) -> tuple[str, ...]:
        return tuple(defect.ccdname for defect in self.defects.defects)

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.defects))


def _draw_defect(rng: np.random.Generator, ccdname: str, sigma: float) -> CcdDefect:
    kind = ("no_data", "dead_amp", "hot")[int(rng.integers(3))]
    if kind == "no_data":
        return CcdDefect(ccdname, kind)
    if kind == "dead_amp":
        return CcdDefect(ccdname, kind, dead_amp="AB"[int(rng.integers(2))])
    n_columns = int(rng.integers(2, 7))
    return CcdDefect(
        ccdname,
        kind,
        hot_columns=tuple(
            (float(rng.random()), float(rng.uniform(0.6, 1.0)), float(rng.uniform(30, 300) * sigma))
            for _ in range(n_columns)
        ),
        glow=(
            float(rng.random()),
            float(rng.random()),
            float(rng.uniform(0.03, 0.15)),
            float(rng.uniform(20, 200) * sigma),
        ),
        hot_pixel_fraction=float(rng.uniform(1e-4, 2e-3)),
    )


@dataclass(frozen=True)
class Noise:
    """Electronic pattern noise on the CCDs of one backplane."""

    category: ClassVar[str] = "Noise"
    pattern: PatternNoise

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> Noise:
        # A backplane serves neighbouring CCD numbers; take a run of consecutive CCDNUMs that are present.
        by_number = sorted(context.frames, key=lambda frame: frame.ccdnum)
        size = int(rng.integers(1, min(6, len(by_number)) + 1))
        start = int(rng.integers(len(by_number) - size + 1))
        sigma = context.sky_sigma
        return cls(
            PatternNoise(
                ccdnames=tuple(frame.ccdname for frame in by_number[start : start + size]),
                row_offset_sigma=float(rng.uniform(0.6, 1.5) * sigma),
                wave_amplitude=float(rng.uniform(0.5, 2.0) * sigma),
                wave_period=float(rng.uniform(5.0, 40.0)),
                wave_phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )

    def affected_ccds(self, frames: tuple[CcdFrame, ...]) -> tuple[str, ...]:
        return self.pattern.ccdnames

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.pattern))


@dataclass(frozen=True)
class Wonky(_ExposureLevel):
    """Something odd: bent stripes a few sky sigmas deep sweeping across the focal plane."""

    category: ClassVar[str] = "Wonky"
    waves: WavePattern

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> Wonky:
        return cls(
            WavePattern(
                amplitude=float(rng.uniform(2.0, 5.0) * context.sky_sigma),
                wavelength=float(rng.uniform(0.3, 1.0)),
                angle=float(rng.uniform(0, np.pi)),
                phase=float(rng.uniform(0, 2 * np.pi)),
                curvature=float(rng.uniform(-0.1, 0.1)),
            )
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        return replace(recipe, effects=(*recipe.effects, self.waves))


@dataclass(frozen=True)
class TelescopeMoving(_ExposureLevel):
    """Tracking failure: stars trailed along a line, or doubled when the telescope jumped mid-exposure."""

    category: ClassVar[str] = "Telescope_Moving"
    mode: str  # "trail" or "double"
    distance_pixels: float
    angle: float
    second_image_weight: float

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> TelescopeMoving:
        mode = ("trail", "double")[int(rng.integers(2))]
        distance = rng.uniform(12.0, 40.0) if mode == "trail" else rng.uniform(8.0, 25.0)
        return cls(
            mode=mode,
            distance_pixels=float(distance),
            angle=float(rng.uniform(0, np.pi)),
            second_image_weight=float(rng.uniform(0.3, 0.8)),
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        if self.mode == "trail":
            psf = replace(recipe.psf, trail_length=self.distance_pixels, trail_angle=self.angle)
        else:
            jump = (
                float(self.distance_pixels * np.cos(self.angle)),
                float(self.distance_pixels * np.sin(self.angle)),
                self.second_image_weight,
            )
            psf = replace(recipe.psf, images=((0.0, 0.0, 1.0), jump))
        return replace(recipe, psf=psf)


@dataclass(frozen=True)
class OutOfFocus(_ExposureLevel):
    """Defocus: every source becomes a donut, the image of the pupil and its central obscuration."""

    category: ClassVar[str] = "Out_of_Focus"
    donut_radius_pixels: float
    inner_fraction: float

    @classmethod
    def draw(cls, rng: np.random.Generator, context: DrawContext) -> OutOfFocus:
        return cls(
            donut_radius_pixels=float(rng.uniform(9.0, 16.0)), inner_fraction=float(rng.uniform(0.45, 0.6))
        )

    def apply(self, recipe: ExposureRecipe) -> ExposureRecipe:
        psf = replace(
            recipe.psf, donut_radius=self.donut_radius_pixels, donut_inner_fraction=self.inner_fraction
        )
        return replace(recipe, psf=psf)


# In the order of the paper's Section 2.6.
CATEGORY_TYPES = (
    Saturated,
    CloudsTransparency,
    BadPSF,
    NonoptimalExposure,
    GhostScatter,
    NObjects,
    BadCCD,
    Noise,
    Wonky,
    TelescopeMoving,
    OutOfFocus,
)
BAD_CATEGORIES: tuple[str, ...] = tuple(kind.category for kind in CATEGORY_TYPES)
CATEGORY_BY_NAME = {kind.category: kind for kind in CATEGORY_TYPES}


def draw_satellite_streak(rng: np.random.Generator, context: DrawContext) -> SatelliteStreak:
    """A satellite trail through a random point near one of the CCDs, at a random angle."""
    anchor = context.frames[int(rng.integers(len(context.frames)))]
    return SatelliteStreak(
        point=(anchor.center[0] + rng.uniform(-1.0, 1.0), anchor.center[1] + rng.uniform(-0.5, 0.5)),
        angle=float(rng.uniform(0, np.pi)),
        width_pixels=float(context.conditions.seeing_fwhm_pixels / 2.355 * rng.uniform(1.0, 1.5)),
        brightness=float(rng.uniform(4.0, 20.0) * context.sky_sigma),
    )

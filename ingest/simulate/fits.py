"""Write simulated exposures as DECam Community Pipeline ``ooi`` files: a header-only primary HDU and one
Rice tile-compressed image extension per CCD (what ``fpack`` makes of the CP output).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np

from ingest.simulate.conditions import FILTER_NAMES, AmplifierProperties
from ingest.simulate.focal_plane import CcdFrame

_MJD_EPOCH = dt.datetime(1858, 11, 17)
# Degrees per focal-plane unit: the short side of a real CCD (2046 pixels of 0.263 arcsec).
_DEGREES_PER_UNIT = 2046 * 0.263 / 3600.0
# fpack's default quantisation: a quarter of the noise per level.
_QUANTIZE_LEVEL = 4.0


@dataclass(frozen=True)
class ExposureMetadata:
    """Header facts of one exposure that are not pixels."""

    expnum: int
    mjd_obs: float
    band: str
    exptime: float
    airmass: float
    ra: float
    dec: float
    plver: str

    @property
    def date_obs(self) -> dt.datetime:
        # Whole microseconds, so that DATE-OBS, TIME-OBS and the file name agree.
        return _MJD_EPOCH + dt.timedelta(microseconds=round(self.mjd_obs * 86_400_000_000))

    @property
    def nite(self) -> str:
        """Observing night as YYYYMMDD: the local (Chile) date on which the night began."""
        return (self.date_obs - dt.timedelta(hours=15)).strftime("%Y%m%d")

    @property
    def filename(self) -> str:
        return f"c4d_{self.date_obs.strftime('%y%m%d_%H%M%S')}_ooi_{self.band}_sim.fits.fz"


def sexagesimal(value: float, hours: bool) -> str:
    """``'HH:MM:SS.ss'`` for right ascension (degrees in, hours out) or ``'-DD:MM:SS.s'`` for declination."""
    decimals = 2 if hours else 1
    units = (value % 360.0) / 15.0 if hours else abs(value)
    # Round once, in the last printed digit, so that 59.999 s carries into the minutes.
    scale = 3600 * 10**decimals
    total = round(units * scale)
    if hours:
        total %= 24 * scale
    whole, fraction = divmod(total, 10**decimals)
    degrees, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    sign = "-" if (not hours and value < 0 and total > 0) else ""
    return f"{sign}{degrees:02d}:{minutes:02d}:{seconds:02d}.{fraction:0{decimals}d}"


def _card(name: str, value, comment: str = "") -> dict:
    return {"name": name, "value": value, "comment": comment}


def _shared_cards(meta: ExposureMetadata) -> list[dict]:
    return [
        _card("EXPNUM", meta.expnum, "DECam exposure number"),
        _card("FILTER", FILTER_NAMES[meta.band], "Filter"),
        _card("BAND", meta.band, "Band"),
        _card("EXPTIME", meta.exptime, "[s] Exposure time"),
        _card("MJD-OBS", round(meta.mjd_obs, 8), "MJD of observation start"),
        _card("DATE-OBS", meta.date_obs.isoformat(timespec="microseconds"), "UTC date of observation start"),
        _card("AIRMASS", round(meta.airmass, 3), "Airmass"),
        _card("PLVER", meta.plver, "Community Pipeline version"),
    ]


def primary_header(meta: ExposureMetadata, n_ccds: int) -> list[dict]:
    return [
        _card("OBSTYPE", "object", "Observation type"),
        _card("PROCTYPE", "InstCal", "Processing type"),
        _card("PRODTYPE", "image", "Product type"),
        _card("TELESCOP", "CTIO 4.0-m telescope", "Telescope"),
        _card("INSTRUME", "DECam", "Instrument"),
        _card("OBSERVAT", "CTIO", "Observatory"),
        *_shared_cards(meta),
        _card("TIME-OBS", meta.date_obs.strftime("%H:%M:%S.%f"), "UTC time of observation start"),
        _card("RA", sexagesimal(meta.ra, hours=True), "[h] Telescope RA"),
        _card("DEC", sexagesimal(meta.dec, hours=False), "[deg] Telescope Dec"),
        _card("NEXTEND", n_ccds, "Number of CCD extensions"),
        _card("ORIGIN", "vec ingest.simulate.survey", "Simulated survey, not real data"),
    ]


def ccd_header(meta: ExposureMetadata, frame: CcdFrame, amps: AmplifierProperties) -> list[dict]:
    """Header of one CCD extension; CENRA1/CENDEC1 place the CCD on the sky from its focal-plane centre."""
    cos_dec = max(np.cos(np.radians(meta.dec)), 1e-6)
    cenra = (meta.ra + frame.center[0] * _DEGREES_PER_UNIT / cos_dec) % 360.0
    cendec = meta.dec + frame.center[1] * _DEGREES_PER_UNIT
    return [
        _card("CCDNUM", frame.ccdnum, "CCD number"),
        _card("DETPOS", frame.ccdname, "Detector position"),
        *_shared_cards(meta),
        _card("CENRA1", round(float(cenra), 6), "[deg] RA of CCD centre"),
        _card("CENDEC1", round(float(cendec), 6), "[deg] Dec of CCD centre"),
        _card("BUNIT", "adu", "Pixel units"),
        _card("GAINA", amps.gain[0], "[e-/adu] Gain of amplifier A"),
        _card("GAINB", amps.gain[1], "[e-/adu] Gain of amplifier B"),
        _card("RDNOISEA", amps.read_noise[0], "[adu] Read noise of amplifier A"),
        _card("RDNOISEB", amps.read_noise[1], "[adu] Read noise of amplifier B"),
        _card("SATURATA", amps.saturation[0], "[adu] Saturation of amplifier A"),
        _card("SATURATB", amps.saturation[1], "[adu] Saturation of amplifier B"),
    ]


@dataclass(frozen=True)
class CcdHdu:
    extname: str
    header: list[dict]
    image: np.ndarray
    dither_seed: int


def write_exposure_file(path: Path, primary: list[dict], hdus: Iterable[CcdHdu]) -> None:
    """Write the file CCD by CCD (so only one image is in memory) and move it into place when complete.

    SUBTRACTIVE_DITHER_2 keeps exact zeros (dead CCDs) exact; a fixed dither seed makes the lossy
    quantisation, and hence the pixels, reproducible.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with fitsio.FITS(str(partial), "rw", clobber=True) as fits:
            fits.write(None, header=primary)
            for hdu in hdus:
                fits.write(
                    hdu.image,
                    extname=hdu.extname,
                    header=hdu.header,
                    compress="rice",
                    qlevel=_QUANTIZE_LEVEL,
                    qmethod=fitsio.SUBTRACTIVE_DITHER_2,
                    dither_seed=hdu.dither_seed,
                )
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()

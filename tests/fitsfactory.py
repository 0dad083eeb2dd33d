"""Small DECam Community Pipeline look-alike files for tests (``from tests.fitsfactory import ...``).

``write_cp_exposure`` writes a multi-extension file laid out like a CP ``ooi`` image: an empty primary HDU
with the exposure keywords, then one image HDU per CCD (EXTNAME, CCDNAME, CCDNUM), Rice tile-compressed
like the ``.fits.fz`` files by default. The other helpers write the broken files that ingest must refuse
with a clear message, legacypipe-style survey-ccds tables, and ``call_without_root`` to test unreadable
files when the tests run as root.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pytest

from vecstore.decam import CCDNUM_BY_NAME, ccdnum_for

# FILTER keyword of CP headers, by band; other bands get "<band> DECam".
DECAM_FILTER_KEYWORDS = {
    "g": "g DECam SDSS c0001 4720.0 1520.0",
    "r": "r DECam SDSS c0002 6415.0 1480.0",
    "i": "i DECam SDSS c0003 7835.0 1470.0",
    "z": "z DECam SDSS c0004 9260.0 1520.0",
    "Y": "Y DECam c0005 10095.0 1130.0",
    "VR": "VR DECam c0007 6300.0 2600.0",
}


def cp_primary_header(
    expnum: int,
    *,
    band: str = "r",
    exptime: float = 90.0,
    mjd_obs: float = 58000.25,
    airmass: float = 1.2,
    plver: str = "V4.8.2a",
    ra: str = "12:28:09.23",
    dec: str = "-25:33:43.8",
) -> dict[str, Any]:
    """Exposure keywords of a CP primary header (RA in sexagesimal hours, DEC in sexagesimal degrees)."""
    return {
        "EXPNUM": int(expnum),
        "OBSTYPE": "object",
        "PROCTYPE": "InstCal",
        "PRODTYPE": "image",
        "FILTER": DECAM_FILTER_KEYWORDS.get(band, f"{band} DECam"),
        "BAND": band,
        "EXPTIME": float(exptime),
        "MJD-OBS": float(mjd_obs),
        "AIRMASS": float(airmass),
        "PLVER": plver,
        "RA": ra,
        "DEC": dec,
    }


def _apply_overrides(header: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overrides replace or add keywords; an override of None removes the keyword."""
    merged = dict(header)
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def sky_pixels(
    shape: Sequence[int], *, sky: float = 1000.0, noise: float = 10.0, seed: Any = 0
) -> np.ndarray:
    """A float32 sky image: constant level plus Gaussian noise (``noise=0`` gives a constant, which
    compresses fast — use it for full-size CCDs)."""
    if noise == 0:
        return np.full(shape, sky, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return (sky + noise * rng.standard_normal(shape)).astype(np.float32)


def write_cp_exposure(
    path: str | os.PathLike,
    expnum: int,
    ccdnames: Iterable[str] = ("N4", "S4"),
    shape: Sequence[int] = (64, 32),
    *,
    compress: str | None = "rice",
    seed: int = 0,
    header_overrides: Mapping[str, Any] | None = None,
    ccd_header_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    pixels: Mapping[str, np.ndarray] | None = None,
    band: str = "r",
    exptime: float = 90.0,
    mjd_obs: float = 58000.25,
    airmass: float = 1.2,
    plver: str = "V4.8.2a",
    ra: str = "12:28:09.23",
    dec: str = "-25:33:43.8",
    sky: float = 1000.0,
    noise: float = 10.0,
) -> Path:
    """Write a CP-like exposure: empty primary with exposure keywords, one image HDU per CCD name.

    - ``compress``: "rice" (like ``.fits.fz``), another fitsio compression name, or None for plain FITS.
    - ``header_overrides`` / ``ccd_header_overrides[ccdname]``: keywords to change; None removes one
      (``{"EXPNUM": None}``; ``{"EXTNAME": None}`` writes the CCD HDU without a name).
    - ``pixels[ccdname]``: the exact array for that CCD (any dtype or number of axes); other CCDs get
      :func:`sky_pixels` seeded by (seed, expnum, CCD position), offset by CCDNUM so CCDs differ.
      Arrays with +-inf need ``compress=None`` (they are patched in byte for byte, see
      :func:`overwrite_pixels`).
    """
    path = Path(path)
    primary = _apply_overrides(
        cp_primary_header(
            expnum, band=band, exptime=exptime, mjd_obs=mjd_obs, airmass=airmass, plver=plver, ra=ra, dec=dec
        ),
        header_overrides,
    )
    infinite_pixels: dict[int, np.ndarray] = {}
    with fitsio.FITS(os.fspath(path), "rw", clobber=True) as fits:
        fits.write(None, header=primary)
        for position, ccdname in enumerate(ccdnames):
            ccdnum = CCDNUM_BY_NAME.get(ccdname.upper())
            header = {"EXTNAME": ccdname, "CCDNAME": ccdname, "DETPOS": ccdname}
            if ccdnum is not None:
                header["CCDNUM"] = ccdnum
            header = _apply_overrides(header, (ccd_header_overrides or {}).get(ccdname))
            extname = header.pop("EXTNAME", None)
            if pixels is not None and ccdname in pixels:
                data = np.asarray(pixels[ccdname])
            else:
                data = sky_pixels(
                    shape, sky=sky + (ccdnum or 0), noise=noise, seed=[seed, int(expnum), position]
                )
            fits.write(data, extname=extname, header=header, compress=compress)
            if data.dtype.kind == "f" and np.isinf(data).any():
                infinite_pixels[fits[-1].get_extnum()] = data
    for hdu_index, data in infinite_pixels.items():
        if compress is not None:
            raise ValueError("inf pixels survive only in uncompressed HDUs; use compress=None")
        overwrite_pixels(path, hdu_index, data)
    return path


def overwrite_pixels(path: str | os.PathLike, hdu: int, data: np.ndarray) -> None:
    """Write ``data`` byte for byte over the pixels of an uncompressed image HDU of the same shape and type.

    Needed for +-inf: cfitsio turns inf into NaN when it writes, but real files written by other tools can
    hold inf, and cfitsio reads them back as inf.
    """
    with fitsio.FITS(os.fspath(path)) as fits:
        start = fits[hdu].get_offsets()["data_start"]
    big_endian = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">"))
    with open(path, "r+b") as stream:
        stream.seek(start)
        stream.write(big_endian.tobytes())


def write_zero_byte(path: str | os.PathLike) -> Path:
    """An empty file (a failed copy)."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_not_fits(path: str | os.PathLike, text: str = "<html>404 Not Found</html>\n") -> Path:
    """A file with a FITS name whose content is something else (an HTML error page saved by a download)."""
    path = Path(path)
    path.write_text(text * 40)
    return path


def write_truncated(
    source: str | os.PathLike, destination: str | os.PathLike, *, keep_fraction: float = 0.6
) -> Path:
    """A copy of ``source`` cut to about ``keep_fraction`` of its size (an interrupted transfer).

    The cut never falls on a 2880-byte FITS block boundary, as a real interrupted copy almost never does.
    """
    data = Path(source).read_bytes()
    keep = int(len(data) * keep_fraction)
    keep -= 1 if keep % 2880 == 0 else 0
    destination = Path(destination)
    destination.write_bytes(data[:keep])
    return destination


def _column(values: list[Any]) -> np.ndarray:
    """A table column with a FITS-friendly dtype: unicode strings, int64 or float64."""
    if all(isinstance(value, str) for value in values):
        return np.array(values, dtype=f"U{max(1, *(len(value) for value in values))}")
    array = np.array(values)
    return array.astype(np.int64) if array.dtype.kind in "iub" else array.astype(np.float64)


def write_survey_ccds_table(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """A legacypipe-style survey-ccds FITS table (``.fits`` or ``.fits.gz``) from row dicts.

    Column names and order come from the first row (keep legacypipe's lower-case names, e.g.
    ``image_filename``, ``image_hdu``, ``expnum``, ``ccdname``, ``filter``, ``ccd_cuts``).
    """
    if not rows:
        raise ValueError("a survey-ccds table needs at least one row")
    names = list(rows[0])
    columns = {name: _column([row[name] for row in rows]) for name in names}
    table = np.zeros(len(rows), dtype=[(name, column.dtype) for name, column in columns.items()])
    for name, column in columns.items():
        table[name] = column
    path = Path(path)
    fitsio.write(os.fspath(path), table, clobber=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# Unreadable files when the tests run as root
#
# root reads a file whatever its mode, so ``chmod 000`` alone does not make a file unreadable. These helpers
# run the code under test in a forked child that has dropped to the unprivileged "nobody" user, where the
# kernel enforces permissions again; the forked child already has every module imported.

NOBODY_UID = NOBODY_GID = 65534


@contextmanager
def world_readable_tempdir() -> Iterator[Path]:
    """A temporary directory that an unprivileged user can enter (pytest's tmp_path is root-only, 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="vec-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def call_without_root(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, run as user "nobody" in a forked child when we are root, else directly.

    The result (or the exception raised) travels back pickled, so it must be picklable. If the child
    cannot drop privileges, the calling test is skipped: nothing could make a file unreadable to root.
    """
    if os.geteuid() != 0:
        return function(*args)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_fd)
        try:
            os.setgroups([])
            os.setgid(NOBODY_GID)
            os.setuid(NOBODY_UID)
        except OSError as error:  # e.g. a container without CAP_SETUID: nothing can enforce permissions
            payload = (None, f"cannot drop root privileges to test file permissions: {error}")
        else:
            try:
                payload = (True, function(*args))
            except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
                payload = (False, error)
        try:
            data = pickle.dumps(payload)
        except Exception as error:  # noqa: BLE001 - an unpicklable result is reported, not lost
            data = pickle.dumps((False, RuntimeError(f"unpicklable result from child: {error!r}")))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the unprivileged child process died without a result")
    ok, value = pickle.loads(data)
    if ok is None:
        pytest.skip(value)
    if not ok:
        raise value
    return value


def build_mixed_directory(root: Path) -> tuple[set[int], dict[str, str]]:
    """Good exposures and one of each kind of bad file; returns good ccd_ids and {bad file: reason words}."""
    good_ids = set()
    for expnum, names, compress, name in [
        (610001, ["N4", "S4"], "rice", "c4d_1_ooi_r_v1.fits.fz"),
        (610002, ["N1", "N2", "N3"], None, "c4d_2_ooi_g_v1.fits"),
        (610003, ["S31"], "rice", "sub.fits/c4d_3_ooi_z_v1.fits.fz"),  # a directory with a FITS name
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_cp_exposure(root / name, expnum, names, compress=compress)
        good_ids |= {expnum * 100 + ccdnum_for(ccd) for ccd in names}
    write_cp_exposure(root / "c4d_1_oow_r_v1.fits.fz", 610001, ["N4"])  # skipped, not a failure
    write_survey_ccds_table(root / "survey-ccds.fits", [{"image_filename": "x.fits", "image_hdu": 1}])

    bad = {}
    bad[write_zero_byte(root / "zero.fits.fz").name] = "empty file (0 bytes)"
    whole = write_cp_exposure(root / "whole.tmp", 610009, ["N1", "N2", "N3"], shape=(256, 128))
    bad[write_truncated(whole, root / "truncated.fits.fz", keep_fraction=0.8).name] = "truncated"
    whole.unlink()
    bad[write_not_fits(root / "html.fits.fz").name] = "not a FITS file"
    write_cp_exposure(root / "noexpnum.fits.fz", 1, ["N4"], header_overrides={"EXPNUM": None})
    bad["noexpnum.fits.fz"] = "no EXPNUM"
    nan, zero = np.full((64, 32), np.nan, np.float32), np.zeros((64, 32), np.float32)
    write_cp_exposure(root / "nan.fits.fz", 610004, ["N4"], pixels={"N4": nan})
    bad["nan.fits.fz"] = "pixels are NaN"
    write_cp_exposure(root / "zero-pixels.fits.fz", 610005, ["N4"], pixels={"N4": zero})
    bad["zero-pixels.fits.fz"] = "all pixels are 0"
    inf = np.full((64, 32), np.inf, np.float32)
    inf[0] = 1.0
    write_cp_exposure(root / "inf.fits", 610006, ["N4"], compress=None, pixels={"N4": inf})
    bad["inf.fits"] = "of pixels are NaN or inf"
    write_cp_exposure(
        root / "cube.fits", 610007, ["N4"], compress=None, pixels={"N4": np.ones((2, 8, 8), "f4")}
    )
    bad["cube.fits"] = "3-D image"
    write_cp_exposure(
        root / "odd.fits.fz", 610008, ["XX9"], ccd_header_overrides={"XX9": {"CCDNAME": None, "DETPOS": None}}
    )
    bad["odd.fits.fz"] = "not a DECam CCD name"
    shutil.copy(root / "c4d_1_ooi_r_v1.fits.fz", root / "c4d_1_ooi_r_v2.fits.fz")
    bad["c4d_1_ooi_r_v2.fits.fz"] = "listed twice"
    locked = write_cp_exposure(root / "locked.fits.fz", 610010, ["N4"])
    locked.chmod(0)
    bad["locked.fits.fz"] = "permission denied"
    return good_ids, bad

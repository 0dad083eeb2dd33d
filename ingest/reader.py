"""Read one CCD of a DECam Community Pipeline (CP) file: its pixels and the metadata the catalog stores.

A CP ``ooi`` exposure is a multi-extension FITS file: an empty primary HDU holding the exposure keywords
(EXPNUM, FILTER/BAND, EXPTIME, MJD-OBS, AIRMASS, PLVER, RA/DEC) and one image HDU per CCD (EXTNAME = the
CCD name, CCDNUM, CENRA1/CENDEC1...), Rice tile-compressed in the ``.fits.fz`` files. legacypipe cutouts
have the same layout with a single small CCD HDU.

Everything here opens the file, reads what it needs and closes it again, so a :class:`CCDTask` can be
shipped to any worker process, which then holds its own file handle (fitsio and cfitsio handles must not be
shared between processes or threads).

Metadata precedence, highest first: the survey-ccds table row (``task.table_meta``), the CCD header, the
primary header. Two exceptions are checked instead of overridden: a table row whose EXPNUM or CCD name
disagrees with the file means the row points at the wrong image, and that is reported as bad input.

Non-finite pixels: NaN pixels are kept (the preprocess step maps NaN to 0); ``+-inf`` pixels are turned into
NaN so that downstream code only has one kind of missing pixel to handle. A CCD whose pixels are mostly
non-finite (more than ``max_nonfinite_fraction``, default one half) is refused, as is an all-zero CCD.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fitsio
import numpy as np

from vecstore.decam import CCDNUM_BY_NAME, ccd_id_for, ccdname_for, ccdnum_for
from vecstore.errors import BadInputError

# A CCD with more NaN/inf pixels than this fraction is refused: there is too little image left to embed.
DEFAULT_MAX_NONFINITE_FRACTION = 0.5

# Survey-ccds columns that carry CCD metadata; other columns of a table row are not kept.
TABLE_META_COLUMNS = (
    "expnum",
    "ccdname",
    "ccdnum",
    "filter",
    "exptime",
    "mjd_obs",
    "airmass",
    "plver",
    "ra",
    "dec",
    "ccd_cuts",
    "ebv",
    "camera",
)

_FITS_BLOCK = 2880
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CCDMeta:
    """Catalog row of one CCD. Field names are the catalog's column names."""

    ccd_id: int
    expnum: int
    ccdname: str
    ccdnum: int
    filter: str | None
    exptime: float | None
    mjd_obs: float | None
    airmass: float | None
    plver: str | None
    ra: float | None  # degrees; the CCD centre when known, else the telescope pointing
    dec: float | None  # degrees
    path: str
    hdu: str  # EXTNAME of the HDU read, or its index as a string when it has no name
    release: str | None = None
    ccd_cuts: int | None = None
    ebv: float | None = None
    naxis1: int | None = None  # pixels along a row (columns), as FITS counts them
    naxis2: int | None = None  # rows


@dataclass(frozen=True)
class CCDTask:
    """One unit of work: a CCD HDU of a file, plus the survey-ccds row it came from (if any).

    ``hdu`` is an HDU index (int) or an EXTNAME (str). ``table_meta`` is excluded from the hash (a dict is
    not hashable) but still takes part in equality.
    """

    path: str
    hdu: int | str
    table_meta: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.hdu, np.integer):
            object.__setattr__(self, "hdu", int(self.hdu))

    @property
    def known_ccdname(self) -> str | None:
        """CCD name known without opening the file: the table's ``ccdname`` or a DECam-named HDU."""
        if self.table_meta and self.table_meta.get("ccdname"):
            return str(self.table_meta["ccdname"]).strip().upper()
        if isinstance(self.hdu, str) and self.hdu.strip().upper() in CCDNUM_BY_NAME:
            return self.hdu.strip().upper()
        return None


@dataclass(frozen=True)
class FitsFileInfo:
    """What :func:`inspect_fits` learns from a file's HDU list without reading any pixels."""

    ccd_hdus: list[int | str]  # image HDUs with 2+ axes of data (names when unique, else indices)
    table_columns: dict[int, tuple[str, ...]]  # binary/ASCII table HDU index -> column names
    expnum: int | None  # EXPNUM of the primary header


# ----------------------------------------------------------------------------------------------------------
# Errors


def bad_input(path: str | os.PathLike, hdu: int | str | None, reason: str) -> BadInputError:
    """A :class:`BadInputError` whose message names the file, the HDU and the reason.

    The three parts are also kept as attributes (``path``, ``hdu``, ``reason``) so that callers can file a
    failure row without parsing the message.
    """
    where = os.fspath(path) if hdu is None else f"{os.fspath(path)}, HDU {hdu}"
    error = BadInputError(f"{where}: {reason}")
    error.path = os.fspath(path)
    error.hdu = None if hdu is None else str(hdu)
    error.reason = reason
    return error


def _cfitsio_message(error: Exception) -> str:
    """cfitsio's multi-line error stack condensed to its first informative lines."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines[:3]))


def _truncation_hint(path: str, otherwise: str = "") -> str:
    """A note when the file size shows the file was cut short (FITS files are whole 2880-byte blocks)."""
    size = os.path.getsize(path)
    if not path.endswith(".gz") and size % _FITS_BLOCK:
        return f" (file size {size} is not a multiple of the {_FITS_BLOCK}-byte FITS block: truncated?)"
    return otherwise


# ----------------------------------------------------------------------------------------------------------
# Opening files


def _check_file_is_fits(path: str) -> None:
    """Refuse what cfitsio would report obscurely: missing, directory, empty, unreadable, not FITS."""
    if not os.path.exists(path):
        raise bad_input(path, None, "no such file")
    if os.path.isdir(path):
        raise bad_input(path, None, "is a directory, not a FITS file")
    if os.path.getsize(path) == 0:
        raise bad_input(path, None, "empty file (0 bytes)")
    try:
        with open(path, "rb") as stream:
            start = stream.read(9)
    except PermissionError:
        raise bad_input(path, None, "permission denied (file is not readable by this user)") from None
    except OSError as error:
        raise bad_input(path, None, f"cannot be read: {error.strerror or error}") from None
    if not (start.startswith(b"SIMPLE  =") or start.startswith(_GZIP_MAGIC)):
        raise bad_input(path, None, f"not a FITS file (starts with {start[:9]!r}, not 'SIMPLE  =')")


@contextmanager
def open_fits(path: str | os.PathLike) -> Iterator[fitsio.FITS]:
    """Open a FITS file read-only after sanity checks; cfitsio failures become :class:`BadInputError`."""
    path = os.fspath(path)
    _check_file_is_fits(path)
    try:
        fits = fitsio.FITS(path)
    except OSError as error:
        reason = f"cannot be opened as FITS: {_cfitsio_message(error)}{_truncation_hint(path)}"
        raise bad_input(path, None, reason) from None
    try:
        yield fits
    finally:
        fits.close()


def inspect_fits(path: str | os.PathLike) -> FitsFileInfo:
    """CCD image HDUs, table HDUs and primary EXPNUM of a FITS file, reading headers only."""
    path = os.fspath(path)
    with open_fits(path) as fits:
        image_hdus: list[tuple[int, str]] = []
        tables: dict[int, tuple[str, ...]] = {}
        for index, hdu in enumerate(fits):
            if hdu.get_exttype() == "IMAGE_HDU":
                if len(hdu.get_dims()) >= 2:
                    image_hdus.append((index, hdu.get_extname().strip()))
            else:
                tables[index] = tuple(hdu.get_colnames())
        expnum = _as_int(fits[0].read_header().get("EXPNUM"))
    return FitsFileInfo(_hdu_labels(image_hdus), tables, expnum)


def _hdu_labels(image_hdus: list[tuple[int, str]]) -> list[int | str]:
    """EXTNAME for each HDU when it names that HDU unambiguously, else the HDU index."""
    counts: dict[str, int] = {}
    for _, name in image_hdus:
        counts[name.upper()] = counts.get(name.upper(), 0) + 1
    return [name if name and counts[name.upper()] == 1 else index for index, name in image_hdus]


def list_ccd_hdus(path: str | os.PathLike) -> list[int | str]:
    """Image HDUs with data in file order, skipping the empty primary: EXTNAMEs, or indices if unnamed."""
    return inspect_fits(path).ccd_hdus


# ----------------------------------------------------------------------------------------------------------
# Choosing the HDU


def _select_hdu(fits: fitsio.FITS, path: str, hdu: int | str) -> fitsio.hdu.base.HDUBase:
    """The HDU a task names (index, or case-insensitive EXTNAME; a digit string is taken as an index)."""
    if isinstance(hdu, str):
        name = hdu.strip()
        if name and name in fits:
            return fits[name]
        if not name.isdigit():
            reason = f"no HDU named {name!r}; the file has {_describe_hdus(fits)}{_truncation_hint(path)}"
            raise bad_input(path, hdu, reason)
        hdu = int(name)
    if not 0 <= hdu < len(fits):
        raise bad_input(
            path,
            hdu,
            f"HDU index {hdu} does not exist; the file has {_describe_hdus(fits)}{_truncation_hint(path)}",
        )
    return fits[hdu]


def _describe_hdus(fits: fitsio.FITS) -> str:
    labels = [f"{index}:{hdu.get_extname() or '(no name)'}" for index, hdu in enumerate(fits)]
    return f"{len(fits)} HDU(s) [{', '.join(labels)}]"


def _hdu_label(hdu: fitsio.hdu.base.HDUBase) -> str:
    """The catalog's ``hdu`` value: EXTNAME, or the HDU index when the HDU has no name."""
    return hdu.get_extname().strip() or str(hdu.get_extnum())


def _check_is_2d_image(hdu: fitsio.hdu.base.HDUBase, path: str, label: str) -> tuple[int, int]:
    """(NAXIS1, NAXIS2) of a 2-D image HDU (fpacked or not); anything else raises BadInputError."""
    if hdu.get_exttype() != "IMAGE_HDU":
        raise bad_input(path, label, f"is a {hdu.get_exttype()}, not an image")
    dims = list(hdu.get_dims())
    if not dims:
        raise bad_input(path, label, "image HDU has no data (NAXIS = 0)")
    if len(dims) != 2:
        raise bad_input(path, label, f"{len(dims)}-D image of shape {tuple(dims)}; a CCD is a 2-D image")
    rows, columns = dims  # fitsio gives the numpy order
    return int(columns), int(rows)


# ----------------------------------------------------------------------------------------------------------
# Metadata


def _header_values(header: fitsio.FITSHDR) -> dict[str, Any]:
    """Keyword -> value, upper-case keys, strings stripped, commentary cards dropped."""
    values: dict[str, Any] = {}
    for record in header.records():
        name = (record.get("name") or "").strip().upper()
        if not name or name in ("COMMENT", "HISTORY", "CONTINUE"):
            continue
        value = record.get("value")
        values[name] = value.strip() if isinstance(value, str) else value
    return values


def normalize_table_meta(row: Mapping[str, Any] | None) -> dict[str, Any]:
    """A survey-ccds row as plain Python values: lower-case keys, bytes decoded, strings stripped.

    Empty strings and NaN become None (legacypipe tables leave unknown values blank or NaN), so that a
    blank table cell falls back to the header instead of overriding it.
    """
    if not row:
        return {}
    clean: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, float) and math.isnan(value):
            value = None
        clean[str(key).strip().lower()] = value
    return clean


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


_SEXAGESIMAL = re.compile(r"^\s*([+-]?)\s*(\d+)[:\s]+(\d+)[:\s]+(\d+(?:\.\d*)?)\s*$")


def sexagesimal_to_degrees(text: str, *, hours: bool) -> float:
    """'HH:MM:SS.ss' (hours=True) or '+DD:MM:SS.s' to degrees; the sign applies to the whole angle."""
    match = _SEXAGESIMAL.match(text)
    if not match:
        raise BadInputError(f"{text!r} is not a sexagesimal angle")
    sign, whole, minutes, seconds = match.groups()
    value = int(whole) + int(minutes) / 60 + float(seconds) / 3600
    value *= 15.0 if hours else 1.0
    return -value if sign == "-" else value


def _angle_degrees(value: Any, *, hours: bool) -> float | None:
    """A header angle in degrees: sexagesimal strings (RA in hours) or plain numbers (degrees)."""
    if isinstance(value, str) and ":" in value:
        try:
            return sexagesimal_to_degrees(value, hours=hours)
        except ValueError:
            return None
    return _as_float(value)


def _band(header: Mapping[str, Any]) -> str | None:
    """BAND, else the first word of FILTER ('z DECam SDSS c0004 9260.0 1520.0' -> 'z')."""
    band = _as_str(header.get("BAND"))
    if band:
        return band
    filter_text = _as_str(header.get("FILTER"))
    return filter_text.split()[0] if filter_text else None


def _ra_dec(header: Mapping[str, Any], table: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Table CCD centre, else header CCD centre (CENRA1/CENDEC1), else the pointing (primary RA/DEC)."""
    table_ra, table_dec = _as_float(table.get("ra")), _as_float(table.get("dec"))
    if table_ra is not None and table_dec is not None:
        return table_ra, table_dec
    centre_ra, centre_dec = _as_float(header.get("CENRA1")), _as_float(header.get("CENDEC1"))
    if centre_ra is not None and centre_dec is not None:
        return centre_ra, centre_dec
    return _angle_degrees(header.get("RA"), hours=True), _angle_degrees(header.get("DEC"), hours=False)


def _decam_name(value: Any) -> str | None:
    name = _as_str(value)
    return name.upper() if name and name.upper() in CCDNUM_BY_NAME else None


def _ccdname_and_ccdnum(
    header: Mapping[str, Any], table: Mapping[str, Any], path: str, label: str
) -> tuple[str, int]:
    """CCD name and number from the table or header, checked against each other."""
    header_name = _first(*(_decam_name(header.get(key)) for key in ("CCDNAME", "EXTNAME", "DETPOS")))
    header_num = _as_int(header.get("CCDNUM"))
    table_name = _decam_name(table.get("ccdname"))
    if table.get("ccdname") is not None and table_name is None:
        raise bad_input(path, label, f"table ccdname {table['ccdname']!r} is not a DECam CCD name")
    if table_name and header_name and table_name != header_name:
        raise bad_input(
            path, label, f"table row is for CCD {table_name} but this HDU holds CCD {header_name}"
        )

    name = table_name or header_name
    number = header_num if header_num is not None else _as_int(table.get("ccdnum"))
    if name is None and number is None:
        seen = _first(*(_as_str(header.get(key)) for key in ("CCDNAME", "EXTNAME", "DETPOS")))
        raise bad_input(
            path,
            label,
            f"CCD name {seen!r} is not a DECam CCD name (N1..N31, S1..S31) and there is no CCDNUM",
        )
    if name is None:
        try:
            return ccdname_for(number), number
        except ValueError as error:
            raise bad_input(path, label, str(error)) from None
    if number is not None and number != ccdnum_for(name):
        raise bad_input(
            path, label, f"CCDNUM {number} disagrees with CCD name {name} (CCDNUM {ccdnum_for(name)})"
        )
    return name, ccdnum_for(name)


def _expnum(header: Mapping[str, Any], table: Mapping[str, Any], path: str, label: str) -> int:
    header_expnum = _as_int(header.get("EXPNUM"))
    table_expnum = _as_int(table.get("expnum"))
    if header_expnum is not None and table_expnum is not None and header_expnum != table_expnum:
        raise bad_input(
            path, label, f"table row is for EXPNUM {table_expnum} but the file is EXPNUM {header_expnum}"
        )
    expnum = _first(table_expnum, header_expnum)
    if expnum is None:
        raise bad_input(path, label, "no EXPNUM (not in the CCD header, the primary header or the table row)")
    return expnum


def _build_meta(
    header: Mapping[str, Any],
    table: Mapping[str, Any],
    path: str,
    label: str,
    release: str | None,
    naxis: tuple[int, int] | None = None,
) -> CCDMeta:
    """Catalog row from merged header values (CCD over primary) and the table row (over both), and the
    image's (NAXIS1, NAXIS2)."""
    camera = _as_str(table.get("camera"))
    if camera is not None and camera.lower() != "decam":
        raise bad_input(path, label, f"table row is for camera {camera!r}, not DECam")
    expnum = _expnum(header, table, path, label)
    ccdname, ccdnum = _ccdname_and_ccdnum(header, table, path, label)
    ra, dec = _ra_dec(header, table)
    return CCDMeta(
        ccd_id=ccd_id_for(expnum, ccdnum),
        expnum=expnum,
        ccdname=ccdname,
        ccdnum=ccdnum,
        filter=_first(_as_str(table.get("filter")), _band(header)),
        exptime=_first(_as_float(table.get("exptime")), _as_float(header.get("EXPTIME"))),
        mjd_obs=_first(_as_float(table.get("mjd_obs")), _as_float(header.get("MJD-OBS"))),
        airmass=_first(_as_float(table.get("airmass")), _as_float(header.get("AIRMASS"))),
        plver=_first(_as_str(table.get("plver")), _as_str(header.get("PLVER"))),
        ra=ra,
        dec=dec,
        path=path,
        hdu=label,
        release=release,
        ccd_cuts=_as_int(table.get("ccd_cuts")),
        ebv=_as_float(table.get("ebv")),
        naxis1=naxis[0] if naxis else None,
        naxis2=naxis[1] if naxis else None,
    )


def _meta_for_hdu(fits: fitsio.FITS, task: CCDTask, release: str | None) -> tuple[CCDMeta, Any]:
    """Select and check the task's HDU and build its metadata; returns (meta, hdu) with the file open."""
    hdu = _select_hdu(fits, task.path, task.hdu)
    label = _hdu_label(hdu)
    naxis = _check_is_2d_image(hdu, task.path, label)
    try:
        header = {**_header_values(fits[0].read_header()), **_header_values(hdu.read_header())}
    except OSError as error:
        reason = f"cannot read the header: {_cfitsio_message(error)}{_truncation_hint(task.path)}"
        raise bad_input(task.path, label, reason) from None
    meta = _build_meta(header, normalize_table_meta(task.table_meta), task.path, label, release, naxis)
    return meta, hdu


# ----------------------------------------------------------------------------------------------------------
# Pixels


def nonfinite_fraction(pixels: np.ndarray) -> float:
    """Fraction of NaN/inf pixels (after :func:`read_ccd`, inf pixels are already NaN)."""
    return float(1.0 - np.count_nonzero(np.isfinite(pixels)) / pixels.size) if pixels.size else 0.0


def _checked_pixels(raw: np.ndarray, path: str, label: str, max_nonfinite_fraction: float) -> np.ndarray:
    """float32 native-order copy with inf -> NaN; refuses empty, mostly non-finite and all-zero CCDs."""
    pixels = np.ascontiguousarray(raw, dtype=np.float32)
    if pixels.size == 0:
        raise bad_input(path, label, f"image has no pixels (shape {pixels.shape})")
    finite = np.isfinite(pixels)
    n_nonfinite = pixels.size - int(np.count_nonzero(finite))
    if n_nonfinite == pixels.size:
        kind = "NaN" if np.isnan(pixels).all() else "NaN or inf"
        raise bad_input(path, label, f"all {pixels.size} pixels are {kind}")
    if n_nonfinite / pixels.size > max_nonfinite_fraction:
        raise bad_input(
            path,
            label,
            f"{n_nonfinite / pixels.size:.1%} of pixels are NaN or inf "
            f"(more than the {max_nonfinite_fraction:.0%} allowed)",
        )
    if not np.any(pixels[finite] if n_nonfinite else pixels):
        raise bad_input(path, label, "all pixels are 0" if not n_nonfinite else "all finite pixels are 0")
    if n_nonfinite:
        pixels[np.isinf(pixels)] = np.nan
    return pixels


# ----------------------------------------------------------------------------------------------------------
# Public entry points


def read_header_meta(task: CCDTask, *, release: str | None = None) -> CCDMeta:
    """Metadata of the task's CCD from headers and table row only (no pixels are decompressed)."""
    with open_fits(task.path) as fits:
        meta, _ = _meta_for_hdu(fits, task, release)
    return meta


def read_ccd(
    task: CCDTask,
    *,
    release: str | None = None,
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE_FRACTION,
) -> tuple[CCDMeta, np.ndarray]:
    """Metadata and float32 pixels (native byte order, 2-D) of one CCD; bad input raises BadInputError.

    The file is opened for this call only, so tasks can be read in any process.
    """
    with open_fits(task.path) as fits:
        meta, hdu = _meta_for_hdu(fits, task, release)
        try:
            raw = hdu.read()
        except OSError as error:
            hint = _truncation_hint(task.path, otherwise=" (truncated or corrupt file?)")
            raise bad_input(
                task.path, meta.hdu, f"cannot read the pixels: {_cfitsio_message(error)}{hint}"
            ) from None
    return meta, _checked_pixels(raw, task.path, meta.hdu, max_nonfinite_fraction)

"""Label tables in FITS: DES-style exclude lists and legacypipe survey-ccds ``ccd_cuts``.

Column names are matched case-insensitively (DES writes EXPNUM, legacypipe expnum) and string cells are
decoded and stripped, since FITS pads fixed-width strings with spaces and older readers hand back bytes.
Rows are read one by one: a row that cannot be used is reported (``file:row`` and the reason) and the
others are read; a table in which most rows are unreadable is refused (:class:`LabelFormatError`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import fitsio
import numpy as np

from ingest.labels.common import (
    NOTE,
    LabelFile,
    LabelRecord,
    LabelWarning,
    canonical_ccd,
    collapse_whitespace,
    refuse_if_mostly_unreadable,
    require_existing,
)
from vecstore.errors import BadInputError

# legacypipe py/legacypipe/bits.py CCD_CUTS: the 19 bits the paper cites (Section 2.3) plus plver, which
# later versions add.
CCD_CUT_BITS: dict[str, int] = {
    "err_legacyzpts": 0x1,
    "not_grz": 0x2,
    "not_third_pix": 0x4,
    "exptime": 0x8,
    "ccdnmatch": 0x10,
    "zpt_diff_avg": 0x20,
    "zpt_small": 0x40,
    "zpt_large": 0x80,
    "sky_is_bright": 0x100,
    "badexp_file": 0x200,
    "phrms": 0x400,
    "radecrms": 0x800,
    "seeing_bad": 0x1000,
    "early_decam": 0x2000,
    "depth_cut": 0x4000,
    "too_many_bad_ccds": 0x8000,
    "flagged_in_des": 0x10000,
    "phrms_s7": 0x20000,
    "depth_cut_2": 0x40000,
    "plver": 0x80000,
}
_BIT_NAMES = {value: name for name, value in CCD_CUT_BITS.items()}

DES_COLUMNS_REQUIRED = ("expnum", "reason")
CCD_CUTS_COLUMNS_REQUIRED = ("expnum", "ccdname", "ccd_cuts")


def is_fits(path: Path) -> bool:
    """True for a FITS file, gzip-compressed or not (checked by content, not by name)."""
    try:
        with path.open("rb") as f:
            start = f.read(2)
        if start == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                start = f.read(9)
        else:
            with path.open("rb") as f:
                start = f.read(9)
    except OSError:
        return False
    return start == b"SIMPLE  ="


def table_columns(path: Path) -> list[tuple[int, set[str]]]:
    """(HDU index, lower-case column names) of every table HDU of a FITS file."""
    try:
        with fitsio.FITS(str(path)) as fits:
            return [
                (index, {name.lower() for name in hdu.get_colnames()})
                for index, hdu in enumerate(fits)
                if hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL")
            ]
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read FITS file ({exc})") from exc


def read_des_fits(path: str | Path) -> LabelFile:
    """Records of a DES-style exclude table: EXPNUM, CCDNUM, REASON, ANALYST (any case, in any table HDU).

    CCDNUM 0, NaN, or no CCDNUM column, means the whole exposure (DES writes 0 for exposure-wide
    entries; NaN is what a text list's ``nan`` CCD becomes in DELVE's ``make_exclude.py`` output, which
    has this format too, and the text reader reads those lines as exposure-level as well). Any other
    CCDNUM that is not 1..62 (63, 2.5...) makes the row unreadable rather than widening a CCD label to
    its whole exposure. ANALYST is optional.
    """
    path = require_existing(path)
    table = _read_table(path, DES_COLUMNS_REQUIRED, "a DES-style exclude table")
    names = {name.lower(): name for name in table.dtype.names}
    expnums = table[names["expnum"]]
    reasons = table[names["reason"]]
    ccdnums = table[names["ccdnum"]] if "ccdnum" in names else None
    analysts = table[names["analyst"]] if "analyst" in names else None
    records: list[LabelRecord] = []
    warnings: list[LabelWarning] = []
    for row in range(len(table)):
        record_or_problem = _des_record(
            path,
            row + 1,
            expnums[row],
            None if ccdnums is None else ccdnums[row],
            reasons[row],
            None if analysts is None else analysts[row],
        )
        if isinstance(record_or_problem, LabelRecord):
            records.append(record_or_problem)
        else:
            warnings.append(LabelWarning(str(path), row + 1, _row_text(table[row], names), record_or_problem))
    refuse_if_mostly_unreadable(path, "des-fits", len(table), warnings, unit="rows")
    return LabelFile(tuple(records), tuple(warnings))


def _des_record(path: Path, row: int, expnum, ccdnum, reason, analyst) -> LabelRecord | str:
    expnum_value = _as_int(expnum)
    if expnum_value is None or expnum_value <= 0:
        return "EXPNUM is not a positive integer"
    ccdnum_value = 0 if ccdnum is None or _is_nan(ccdnum) else _as_int(ccdnum)
    if ccdnum_value is None:
        return "CCDNUM is not an integer"
    level, ccdname, checked_ccdnum = "exposure", None, None
    if ccdnum_value != 0:
        try:
            checked_ccdnum, ccdname = canonical_ccd(None, ccdnum_value)
        except ValueError:
            return f"CCDNUM {ccdnum_value} is not a DECam CCD (1..62, or 0 for the whole exposure)"
        level = "ccd"
    analyst_text = None if analyst is None else _as_text(analyst) or None
    return LabelRecord(
        "des-fits",
        level,
        expnum_value,
        checked_ccdnum,
        ccdname,
        None,
        _as_text(reason),
        analyst_text,
        str(path),
        row,
    )


def read_ccd_cuts(path: str | Path) -> LabelFile:
    """One CCD-level record per set ``ccd_cuts`` bit of a legacypipe survey-ccds table.

    ``raw_reason`` is the bit's name (``unknown_bit_0x...`` for a bit this table of names does not know)
    and ``flag`` its value. Rows whose ``camera`` column says another camera than DECam are skipped with
    a note: their CCD names are not DECam's, and such rows are not errors of the table.
    """
    path = require_existing(path)
    table = _read_table(path, CCD_CUTS_COLUMNS_REQUIRED, "a survey-ccds table with ccd_cuts")
    names = {name.lower(): name for name in table.dtype.names}
    cuts = np.asarray(table[names["ccd_cuts"]]).astype(np.int64)
    cameras = table[names["camera"]] if "camera" in names else None
    records: list[LabelRecord] = []
    warnings: list[LabelWarning] = []
    # Only rows with a cut make records; reading millions of clean rows one by one would be slow.
    cut_rows = np.flatnonzero(cuts)
    for row in cut_rows:
        camera = _as_text(cameras[row]).lower() if cameras is not None else "decam"
        expnum = _as_int(table[names["expnum"]][row])
        ccdname = _as_text(table[names["ccdname"]][row])
        if camera != "decam":
            note = f"camera {camera!r} is not DECam; skipped"
            warnings.append(LabelWarning(str(path), int(row) + 1, _row_text(table[row], names), note, NOTE))
            continue
        problem = _ccd_cuts_row_problem(expnum, ccdname)
        if problem is not None:
            warnings.append(LabelWarning(str(path), int(row) + 1, _row_text(table[row], names), problem))
            continue
        ccdnum, ccdname = canonical_ccd(ccdname, None)
        records.extend(_records_for_bits(path, int(row) + 1, expnum, ccdnum, ccdname, int(cuts[row])))
    refuse_if_mostly_unreadable(path, "ccd-cuts", len(cut_rows), warnings, unit="rows with cuts")
    return LabelFile(tuple(records), tuple(warnings))


def _ccd_cuts_row_problem(expnum: int | None, ccdname: str) -> str | None:
    if expnum is None or expnum <= 0:
        return "expnum is not a positive integer"
    try:
        canonical_ccd(ccdname, None)
    except ValueError:
        return f"{ccdname!r} is not a DECam CCD name"
    return None


def _records_for_bits(path: Path, row: int, expnum: int, ccdnum: int, ccdname: str, cuts: int):
    for bit in _set_bits(cuts):
        reason = _BIT_NAMES.get(bit, f"unknown_bit_0x{bit:x}")
        yield LabelRecord("ccd-cuts", "ccd", expnum, ccdnum, ccdname, bit, reason, None, str(path), row)


def _set_bits(value: int) -> list[int]:
    """The powers of two that make up a non-negative bitmask, lowest first."""
    bits = []
    bit = 1
    while bit <= value:
        if value & bit:
            bits.append(bit)
        bit <<= 1
    return bits


def _read_table(path: Path, required: tuple[str, ...], what: str) -> np.ndarray:
    """The first table HDU holding the required columns, or BadInputError saying what is missing."""
    if path.is_dir() or not is_fits(path):
        raise BadInputError(f"{path}: not a FITS file; expected {what}")
    hdus = table_columns(path)
    for index, columns in hdus:
        if all(name in columns for name in required):
            try:
                return fitsio.read(str(path), ext=index)
            except (OSError, ValueError) as exc:
                raise BadInputError(f"{path}: cannot read table HDU {index} ({exc})") from exc
    found = sorted(set().union(*(columns for _, columns in hdus))) if hdus else []
    raise BadInputError(
        f"{path}: no table HDU has the columns {', '.join(required)} needed for {what}"
        f" (found: {', '.join(found) or 'no tables'})"
    )


def _as_text(value) -> str:
    """A FITS string cell as clean text: bytes decoded, padding stripped, whitespace runs collapsed."""
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", errors="replace")
    return collapse_whitespace(str(value).replace("\x00", " "))


def _is_nan(value) -> bool:
    """True for a NaN cell (a float column's "no value"); False for anything else, numeric or not."""
    try:
        return bool(np.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def _as_int(value) -> int | None:
    """An integer cell (int or integral float) as int; None for NaN, non-integral or non-numeric values."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(number) or not number.is_integer():
        return None
    return int(number)


# The columns worth showing in a warning about a row (a survey-ccds row has ~50).
_ROW_TEXT_COLUMNS = ("expnum", "ccdnum", "ccdname", "camera", "ccd_cuts", "reason", "analyst")


def _row_text(row, names: dict[str, str]) -> str:
    """``expnum=... ccdname=...`` for the identifying columns of a table row (``names``: lower -> actual)."""
    shown = [lower for lower in _ROW_TEXT_COLUMNS if lower in names]
    return " ".join(f"{lower}={_as_text(row[names[lower]])}" for lower in shown)

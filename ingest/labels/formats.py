"""Expert and pipeline label lists -> :class:`LabelRecord` rows, before any category mapping.

Sources (``SOURCES``) and their parsers, each ``read_*(path) -> LabelFile(records, warnings)``:

- ``decals-badexp``: legacypipe's ``decam-bad_expid.txt``, any version (:mod:`ingest.labels.badexp`);
- ``delve``: a DELVE exclude directory or one of its files (:mod:`ingest.labels.delve`);
- ``des-fits``: a DES-style FITS table EXPNUM, CCDNUM, REASON, ANALYST (:mod:`ingest.labels.fits`);
- ``ccd-cuts``: a legacypipe survey-ccds table, a record per set ``ccd_cuts`` bit (:mod:`ingest.labels.fits`).

:func:`read_labels` picks the parser, from ``source=`` or by :func:`detect_source`. Mapping the raw reasons
to vec's categories is :mod:`ingest.labels.rules`' job.

Every parser reads line by line and reports each line it cannot read (``LabelFile.of_kind("unreadable")``)
instead of giving up; a file where most lines are unreadable raises :class:`LabelFormatError`, which names
the file and the formats tried.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from ingest.labels.badexp import read_decals_badexp
from ingest.labels.common import (
    CCDS_PER_EXPOSURE,
    FITS_SOURCES,
    SOURCES,
    TEXT_SOURCES,
    LabelFile,
    LabelFormatError,
    LabelRecord,
    LabelWarning,
    require_existing,
)
from ingest.labels.delve import base_reason, delve_counts, read_delve, reason_for_file
from ingest.labels.fits import (
    CCD_CUT_BITS,
    CCD_CUTS_COLUMNS_REQUIRED,
    DES_COLUMNS_REQUIRED,
    is_fits,
    read_ccd_cuts,
    read_des_fits,
    table_columns,
)
from vecstore.errors import BadInputError

__all__ = [
    "CCDS_PER_EXPOSURE",
    "CCD_CUT_BITS",
    "SOURCES",
    "LabelFile",
    "LabelFormatError",
    "LabelRecord",
    "LabelWarning",
    "base_reason",
    "delve_counts",
    "detect_source",
    "read_ccd_cuts",
    "read_decals_badexp",
    "read_delve",
    "read_des_fits",
    "read_labels",
    "reason_for_file",
]

_READERS = {
    "decals-badexp": read_decals_badexp,
    "delve": read_delve,
    "des-fits": read_des_fits,
    "ccd-cuts": read_ccd_cuts,
}

# DELVE list files are named <reason>-y<N>.txt; bad_expid lists carry "bad_expid" in their name.
_DELVE_NAME = re.compile(r"^(problem|ghost-scatter|streak|noise|readout|ccd\d+)(-y\d+)?\.txt$", re.IGNORECASE)
_BADEXP_NAME = re.compile(r"bad[_-]?expid", re.IGNORECASE)
# Data lines: DELVE starts with an 8-digit night then the exposure number; bad_expid with the exposure
# number (DECam's are below 10^7), optionally -CCDNAME.
_DELVE_DATA = re.compile(r"^\d{8}\s+\d+(\s|$)")
_BADEXP_DATA = re.compile(r"^\d{1,7}(-[A-Za-z]+\d+)?(\s|$)")
_SNIFF_LINES = 200


def read_labels(path: str | Path, source: str | None = None, **options) -> LabelFile:
    """Read a label file or directory with the parser for ``source`` (detected when None).

    ``options`` go to the parser, e.g. ``count_commented_problem_lines=True`` for ``delve``. A file the
    parser refuses raises :class:`LabelFormatError`; when the format was detected, the error names every
    format detection checked the file against.
    """
    if source is not None:
        if source not in _READERS:
            raise BadInputError(f"unknown label source {source!r}; choose one of: {', '.join(SOURCES)}")
        return _READERS[source](path, **options)
    source = detect_source(path)
    try:
        return _READERS[source](path, **options)
    except LabelFormatError as exc:
        raise exc.tried(_formats_checked(Path(path))) from exc


def detect_source(path: str | Path) -> str:
    """The label source a file or directory holds, when only one fits.

    LabelFormatError when none fits (the file is not a label list vec reads), BadInputError with the
    choices when several do.
    """
    path = require_existing(path)
    if path.is_dir():
        candidates = _directory_candidates(path)
    elif is_fits(path):
        candidates = _fits_candidates(path)
    else:
        candidates = _text_candidates(path)
    if len(candidates) == 1:
        return candidates.pop()
    if not candidates:
        choices = ", ".join(SOURCES)
        raise LabelFormatError(
            path, _formats_checked(path), f"it matches none; pass --source one of: {choices}"
        )
    raise BadInputError(
        f"{path}: cannot tell which kind of label list this is (it could be any of: "
        f"{', '.join(sorted(candidates))}); pass --source one of: {', '.join(SOURCES)}"
    )


def _formats_checked(path: Path) -> tuple[str, ...]:
    """The formats detection compares a path with: a directory is a DELVE tree; files by their kind."""
    if path.is_dir():
        return ("delve",)
    return FITS_SOURCES if is_fits(path) else TEXT_SOURCES


def _directory_candidates(path: Path) -> set[str]:
    """A directory can only be a DELVE exclude tree: it must hold DELVE-named or DELVE-shaped lists."""
    for file in sorted(path.rglob("*.txt")):
        if "delve" in _text_candidates(file):
            return {"delve"}
    return set()


def _fits_candidates(path: Path) -> set[str]:
    candidates = set()
    for _, columns in table_columns(path):
        if all(name in columns for name in CCD_CUTS_COLUMNS_REQUIRED):
            candidates.add("ccd-cuts")
        if all(name in columns for name in DES_COLUMNS_REQUIRED):
            candidates.add("des-fits")
    return candidates


def _text_candidates(path: Path) -> set[str]:
    """Sources a text file's name, column header and data lines suggest (all of them, to spot conflicts)."""
    candidates = set()
    if _DELVE_NAME.match(path.name):
        candidates.add("delve")
    if _BADEXP_NAME.search(path.name):
        candidates.add("decals-badexp")
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in itertools.islice(f, _SNIFF_LINES)]
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if any("\x00" in line for line in lines):
        return set()  # binary, and not FITS: no label format
    for line in lines:
        candidates |= _line_candidates(line)
    return candidates


def _line_candidates(line: str) -> set[str]:
    if line.startswith("#"):
        words = line.lstrip("#").lower().split()
        if {"expnum", "ccdnum"} <= set(words) or {"nite", "exposure", "problem"} <= set(words):
            return {"delve"}
        if words and words[0] == "expid":
            return {"decals-badexp"}
        return set()
    if _DELVE_DATA.match(line):
        return {"delve"}
    if _BADEXP_DATA.match(line):
        return {"decals-badexp"}
    return set()

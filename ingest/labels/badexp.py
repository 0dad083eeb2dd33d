"""legacypipe's DECam bad-exposure list (``py/legacyzpts/data/decam-bad_expid.txt``), any version.

Each data line is ``EXPNUM[-CCDNAME] [FLAG] [free-text comment]`` with tabs or spaces between fields;
``#`` starts a comment line (column headers, night headers such as ``# 2018-09-10``, commented-out
exposures) and blank lines separate sections. FLAG is 1 (possibly saturated), 2 (clouds) or 3 (other,
see comment) and is optional: most lines carry only a comment such as ``expfactor=0.208  seeing=1.400``
and some carry nothing at all. ``EXPNUM-CCDNAME`` (``754142-S29``) names one CCD, as legacypipe's own
``read_bad_expid`` reads it.

Reading is line by line and forgiving about layout: tabs or spaces, CRLF line ends, trailing whitespace,
any number of trailing comment words, blank lines, ``#`` comments and an uncommented ``EXPID Flag
comments`` header are all fine. A line that still cannot be read (no exposure number first, a CCD name
DECam does not have) is reported as unreadable and the rest of the file is read; a file where most
lines are unreadable is refused as not a bad_expid list (:class:`LabelFormatError`).

A comment that only says "same" (or "ditto") refers to the line above; it is kept and the referent appended
(``same: windshake. DIQ>3" E-W elong``) so the reason can still be mapped to a category.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ingest.labels.common import (
    LabelFile,
    LabelRecord,
    LabelWarning,
    canonical_ccd,
    collapse_whitespace,
    read_text_lines,
    refuse_if_mostly_unreadable,
    require_existing,
)
from vecstore.errors import BadInputError

SOURCE = "decals-badexp"

# The first field: an exposure number, optionally joined by '-' to a DECam CCD name.
_EXPOSURE_FIELD = re.compile(r"^(?P<expnum>\d+)(?:-(?P<ccdname>[A-Za-z]+\d+))?$")

# Only these are flags; any other leading number is the start of a comment (nothing else is defined, and a
# number such as "4MAPS" or "50" must not become a flag).
_FLAGS = {"1": 1, "2": 2, "3": 3}

# An uncommented column header ("EXPID  Flag  comments"): the first word names the exposure column.
_HEADER_FIRST_WORDS = {"expid", "expnum", "exposure"}

_DITTO = re.compile(r'^(same|ditto|same as above|")\.?$', re.IGNORECASE)


def read_decals_badexp(path: str | Path) -> LabelFile:
    """Every label line of a ``decam-bad_expid.txt``; lines that are not labels become warnings."""
    path = require_existing(path)
    if path.is_dir():
        raise BadInputError(f"{path}: a directory, not a decam-bad_expid.txt file")
    lines, warnings = read_text_lines(path)
    records: list[LabelRecord] = []
    n_data = 0
    last_comment = ""  # the comment "same" refers to: the last real one, so chains of "same" all resolve
    for number, line in enumerate(lines, start=1):
        if _is_comment_or_blank(line) or _is_header(line):
            continue
        n_data += 1
        record_or_problem = _parse_line(line, str(path), number)
        if isinstance(record_or_problem, LabelRecord):
            record = _resolve_ditto(record_or_problem, last_comment)
            if record is record_or_problem:
                last_comment = record.raw_reason
            records.append(record)
        else:
            warnings.append(LabelWarning(str(path), number, line, record_or_problem))
    refuse_if_mostly_unreadable(path, SOURCE, n_data, warnings)
    return LabelFile(tuple(records), tuple(warnings))


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _is_header(line: str) -> bool:
    return line.split()[0].lower() in _HEADER_FIRST_WORDS


def _resolve_ditto(record: LabelRecord, last_comment: str) -> LabelRecord:
    """A "same" comment completed with the last real comment above (the record itself when not a ditto)."""
    if not last_comment or not _DITTO.match(record.raw_reason):
        return record
    return replace(record, raw_reason=f"{record.raw_reason}: {last_comment}")


def _parse_line(line: str, file: str, number: int) -> LabelRecord | str:
    """The record on one data line, or the reason it is not one."""
    fields = line.split(maxsplit=2)
    head = _EXPOSURE_FIELD.match(fields[0])
    if head is None:
        return "first field is not EXPNUM or EXPNUM-CCDNAME"
    expnum = int(head["expnum"])
    if expnum <= 0:
        return "exposure number must be positive"
    rest = fields[1:]
    flag = _FLAGS.get(rest[0]) if rest else None
    if flag is not None:
        rest = rest[1:]
    comment = collapse_whitespace(" ".join(rest))
    level, ccdnum, ccdname = "exposure", None, None
    if head["ccdname"] is not None:
        try:
            ccdnum, ccdname = canonical_ccd(head["ccdname"], None)
        except ValueError:
            return f"{head['ccdname']!r} is not a DECam CCD name"
        level = "ccd"
    return LabelRecord(
        source=SOURCE,
        level=level,
        expnum=expnum,
        ccdnum=ccdnum,
        ccdname=ccdname,
        flag=flag,
        raw_reason=comment,
        analyst=None,
        file=file,
        line=number,
    )

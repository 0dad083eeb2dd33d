"""DELVE / DECADE expert exclude lists (the delve-survey ``exclude`` repository), a directory or one file.

Two kinds of file, told apart by name (or, for a renamed problem list, by its header):

- ``problem-*.txt``, headed ``#Nite  Exposure  Problem``: whole exposures. The reference script splits on
  two or more spaces; here a line is ``<8-digit nite> <expnum> <problem text...>`` with any whitespace,
  which reads the same files and also single-spaced or tab-separated ones. One exposure-level record a line.
- every other ``*.txt``: single CCDs, header ``#date expnum ccd id ccdnum`` (``id`` is the CCD name,
  ``ccd`` an unrelated index). The reason comes from the file name (``ghost-scatter`` -> Ghost/Scatter,
  ``streak`` -> Streak, ``noise`` -> Noise, ``readout`` -> Readout, ``ccdN`` -> Bad CCD; any other name is
  title-cased, e.g. a later ``processing-y01.txt`` -> Processing). A short ``#`` comment such as
  ``# Backplane 4`` names a sub-reason for the lines below it and is appended: ``Noise: Backplane 4``.

Counting (:func:`delve_counts`) follows the reference ``bin/make_exclude.py``: see its docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest.labels_common import (
    CCDS_PER_EXPOSURE,
    LabelFile,
    LabelRecord,
    LabelWarning,
    canonical_ccd,
    collapse_whitespace,
    read_text_lines,
    refuse_if_nothing_read,
    require_existing,
)
from vecstore.errors import BadInputError

SOURCE = "delve"

# Joins a file's reason and a sub-reason from a comment inside it; base_reason() splits on it again.
SUB_REASON_SEPARATOR = ": "

# File-name stem (without the "-yN" year suffix) -> reason, as make_exclude.py assigns it; the ccdN files
# (one dead or flaky CCD over a range of exposures) are "Unknown" there and "Bad CCD" here.
_REASON_BY_STEM = {
    "ghost-scatter": "Ghost/Scatter",
    "streak": "Streak",
    "noise": "Noise",
    "readout": "Readout",
}
_YEAR_SUFFIX = re.compile(r"-y\d+$", re.IGNORECASE)
# A list's name is <reason>[-<tag>].txt; the tag is a year (-y4) in DELVE's repository, but other surveys
# and simulations use other tags (-sim, -dr3), so a known reason is recognised as the name's prefix.
_BAD_CCD_PREFIX = re.compile(r"^ccd\d+(-|$)")

_PROBLEM_LINE = re.compile(r"^(?P<nite>\d{8})\s+(?P<expnum>\d+)(?:\s+(?P<problem>.*?))?\s*$")

_CCD_COLUMNS_DEFAULT = ("date", "expnum", "ccd", "id", "ccdnum")

# A comment is a sub-reason when it reads like a short label ("Backplane 4", "Airplane", "Iridium flare?"),
# not like the SQL that generated a ccdN file ("select nite || ...", "where expnum >= ...").
_SUB_REASON_TEXT = re.compile(r"^[A-Za-z][A-Za-z0-9 ?/&'.-]*$")
_SUB_REASON_MAX_WORDS = 4
# Comments that record where the following lines came from ("# DECADE Addition", "# DECADE DR3_R1_2"),
# not what is wrong with them: they neither name nor reset a sub-reason.
_PROVENANCE_NOTE = re.compile(r"^(DECADE|DELVE|DES)\b", re.IGNORECASE)


def read_delve(path: str | Path, *, count_commented_problem_lines: bool = False) -> LabelFile:
    """All records of a DELVE exclude directory (every ``*.txt`` below it) or of one DELVE list file.

    ``count_commented_problem_lines=True`` also reads commented-out problem lines that are otherwise
    well formed (``#20190331  844998  Rho Ophiuchi``), as the reference script did because it gave pandas
    no comment character; that reproduces the paper's 8,634 / 37 / 51,445.
    """
    path = require_existing(path)
    files = _list_files(path)
    records: list[LabelRecord] = []
    warnings: list[LabelWarning] = []
    for file in files:
        if path.is_dir() and not file.read_bytes().strip():
            warnings.append(LabelWarning(str(file), None, "", "empty list file skipped"))
            continue
        if _is_problem_file(file):
            part = _read_problem_file(file, count_commented_problem_lines)
        else:
            part = _read_ccd_file(file)
        records.extend(part.records)
        warnings.extend(part.warnings)
    return LabelFile(tuple(records), tuple(warnings))


def base_reason(record: LabelRecord) -> str:
    """The reason without a comment's sub-reason: the Problem text, or the reason given by the file name."""
    if record.level == "exposure":
        return record.raw_reason
    return record.raw_reason.split(SUB_REASON_SEPARATOR, 1)[0]


def delve_counts(records) -> tuple[int, int, int]:
    """``(n_exposures, n_reasons, n_ccd_rows)`` counted the way DELVE's ``bin/make_exclude.py`` counts.

    - exposures: distinct EXPNUM over all records, exposure- and CCD-level together;
    - reasons: distinct :func:`base_reason` strings, i.e. each distinct Problem text plus one per file-name
      reason (Ghost/Scatter, Streak, Noise, Bad CCD...); sub-reasons from comments are not counted, since
      the reference script never saw them (it labels a whole file with one reason);
    - CCD rows: the rows of the reference script's output table: an exposure-level record counts as 62
      (CCDNUM 1..62) and a CCD-level record as 1. Nothing is de-duplicated (the same CCD listed twice, or
      in a problem file and a CCD file, is two rows), exactly like the script's ``len(df)``.

    With comment lines skipped the 2023-07-26 lists give 8,633 / 36 / 51,383; with
    ``count_commented_problem_lines=True`` they give the paper's 8,634 / 37 / 51,445.
    """
    records = list(records)
    exposures = {r.expnum for r in records}
    reasons = {base_reason(r) for r in records}
    rows = sum(CCDS_PER_EXPOSURE if r.level == "exposure" else 1 for r in records)
    return len(exposures), len(reasons), rows


def reason_for_file(file: Path) -> str:
    """The reason a CCD-list file gives all its lines, from its name (``noise-y6.txt`` -> ``Noise``)."""
    name = file.stem.lower()
    for reason_stem, reason in _REASON_BY_STEM.items():
        if name == reason_stem or name.startswith(reason_stem + "-"):
            return reason
    if _BAD_CCD_PREFIX.match(name):
        return "Bad CCD"
    stem = _YEAR_SUFFIX.sub("", name)
    return stem.replace("-", " ").replace("_", " ").strip().title() or file.stem


def _list_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise BadInputError(f"{path}: no DELVE list files (*.txt) in this directory")
    return files


def _is_problem_file(file: Path) -> bool:
    """Problem lists are named problem-*.txt; a renamed one still has its ``#Nite Exposure Problem`` line."""
    if file.name.lower().startswith("problem"):
        return True
    with file.open("r", encoding="utf-8", errors="replace") as f:
        first = f.readline().lstrip("#").lower().split()
    return "problem" in first and "exposure" in first


def _read_problem_file(file: Path, count_commented: bool) -> LabelFile:
    lines, warnings = read_text_lines(file)
    records: list[LabelRecord] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            if not count_commented:
                continue
            text = text.lstrip("#").strip()
            if not _PROBLEM_LINE.match(text):
                continue  # the column header or a real comment
        match = _PROBLEM_LINE.match(text)
        if match is None:
            warnings.append(LabelWarning(str(file), number, line, "not 'NITE EXPNUM PROBLEM'"))
            continue
        problem = collapse_whitespace(match["problem"] or "")
        if not problem:
            warnings.append(LabelWarning(str(file), number, line, "no problem text; kept, reason empty"))
        records.append(_exposure_record(int(match["expnum"]), problem, str(file), number))
    refuse_if_nothing_read(file, records, warnings)
    return LabelFile(tuple(records), tuple(warnings))


def _exposure_record(expnum: int, reason: str, file: str, number: int) -> LabelRecord:
    return LabelRecord(SOURCE, "exposure", expnum, None, None, None, reason, None, file, number)


def _read_ccd_file(file: Path) -> LabelFile:
    lines, warnings = read_text_lines(file)
    reason = reason_for_file(file)
    columns = _CCD_COLUMNS_DEFAULT
    sub_reason: str | None = None
    records: list[LabelRecord] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            comment = text.lstrip("#").strip()
            header = _header_columns(comment)
            if header is not None:
                columns = header
            elif _is_sub_reason(comment):
                sub_reason = None if comment.lower() == reason.lower() else collapse_whitespace(comment)
            continue
        full_reason = reason if sub_reason is None else f"{reason}{SUB_REASON_SEPARATOR}{sub_reason}"
        record, caveat = _parse_ccd_line(text.split(), columns, full_reason, str(file), number)
        if record is not None:
            records.append(record)
        if caveat is not None:
            warnings.append(LabelWarning(str(file), number, line, caveat))
    refuse_if_nothing_read(file, records, warnings)
    return LabelFile(tuple(records), tuple(warnings))


def _header_columns(comment: str) -> tuple[str, ...] | None:
    """Column names of a ``#date expnum ccd id ccdnum`` header (any order), or None for other comments."""
    names = tuple(comment.lower().split())
    if "expnum" in names and ("ccdnum" in names or "id" in names):
        return names
    return None


def _is_sub_reason(comment: str) -> bool:
    return (
        bool(comment)
        and len(comment.split()) <= _SUB_REASON_MAX_WORDS
        and _SUB_REASON_TEXT.match(comment) is not None
        and _PROVENANCE_NOTE.match(comment) is None
    )


def _field(values: list[str], columns: tuple[str, ...], name: str) -> str | None:
    """A column's value, None when the column is absent or holds ``nan``."""
    if name not in columns:
        return None
    value = values[columns.index(name)]
    return None if value.lower() == "nan" else value


def _parse_ccd_line(
    values: list[str], columns: tuple[str, ...], reason: str, file: str, number: int
) -> tuple[LabelRecord | None, str | None]:
    """(record, caveat) for one line: no record when the line is unusable, a caveat when it was doubtful."""
    if len(values) != len(columns):
        return None, f"expected {len(columns)} columns ({' '.join(columns)}), found {len(values)}"
    expnum_text = _field(values, columns, "expnum")
    if expnum_text is None or not expnum_text.isdigit() or int(expnum_text) <= 0:
        return None, "expnum is not a positive integer"
    name = _field(values, columns, "id")
    try:
        ccdnum = _integer_or_none(_field(values, columns, "ccdnum"))
        ccdnum, ccdname = canonical_ccd(name, ccdnum)
    except ValueError as exc:
        return None, f"no usable CCD: {exc}"
    record = LabelRecord(SOURCE, "ccd", int(expnum_text), ccdnum, ccdname, None, reason, None, file, number)
    # The reference script reads only the ccdnum column, so a contradicting name is reported, not obeyed.
    if name is not None and name.upper() != ccdname:
        return record, f"CCD name {name} disagrees with CCDNUM {ccdnum} ({ccdname}); CCDNUM used, like DELVE"
    return record, None


def _integer_or_none(text: str | None) -> int | None:
    """``"01"`` -> 1, ``"14.0"`` -> 14, None -> None; ValueError for anything else."""
    if text is None:
        return None
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"CCDNUM {text!r} is not an integer")
    return int(value)

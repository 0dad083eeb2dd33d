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

Reading is line by line and forgiving about layout: tabs or spaces, CRLF line ends, trailing whitespace,
blank lines, ``#`` comments and column headers with or without ``#`` are fine. In a CCD list, values
beyond the header's columns are ignored and missing trailing columns count as absent, so
``20191221 921464 nan N4`` (no ccdnum) still names N4.

A CCD-list line whose CCD columns (``ccd``, ``id``, ``ccdnum``) are all ``nan`` or absent, at least one
of them written as ``nan``, names no CCD: it is read as an *exposure-level* label with the file's reason
(all 62 CCDs), as in a later DELVE list's ``20191221  921464 nan nan`` (date, expnum, ``nan`` ccd and
id, no ccdnum). A line that just stops after the exposure number (``20191221 921464``) says nothing about
its CCD and is unreadable, as is one whose CCD is not DECam's (``ccdnum`` 99, ``id`` XY9).

An unreadable line is reported (``file:line`` and the reason) and the rest of the file is read. A file
in which most data lines are unreadable is not a DELVE list: reading that file alone raises
:class:`~ingest.labels.common.LabelFormatError`; inside a directory it is reported as refused and the
other files are still read, and only a directory where every file was refused (and nothing read) raises.

Counting (:func:`delve_counts`) follows the reference ``bin/make_exclude.py``: see its docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest.labels.common import (
    CCDS_PER_EXPOSURE,
    NOTE,
    REFUSED,
    UNREADABLE,
    LabelFile,
    LabelFormatError,
    LabelRecord,
    LabelWarning,
    canonical_ccd,
    collapse_whitespace,
    read_text_lines,
    refuse_if_mostly_unreadable,
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
# The columns that can say which CCD a line is about; "ccd" is an unrelated index but is nan with the rest
# when a line names no CCD.
_CCD_FIELDS = ("ccd", "id", "ccdnum")
_NAN = "nan"

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
    if not path.is_dir():
        return _read_list_file(path, count_commented_problem_lines)
    records: list[LabelRecord] = []
    warnings: list[LabelWarning] = []
    for file in _list_files(path):
        part = _read_file_of_directory(file, count_commented_problem_lines)
        records.extend(part.records)
        warnings.extend(part.warnings)
    _refuse_if_every_file_refused(path, records, warnings)
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


def _list_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.rglob("*.txt") if p.is_file())
    if not files:
        raise BadInputError(f"{directory}: no DELVE list files (*.txt) in this directory")
    return files


def _read_list_file(file: Path, count_commented: bool) -> LabelFile:
    if _is_problem_file(file):
        return _read_problem_file(file, count_commented)
    return _read_ccd_file(file)


def _read_file_of_directory(file: Path, count_commented: bool) -> LabelFile:
    """One file of a directory; a file that cannot be used is a warning, so the others still import."""
    try:
        if not file.read_bytes().strip():
            return LabelFile((), (LabelWarning(str(file), None, "", "empty list file skipped", NOTE),))
        return _read_list_file(file, count_commented)
    except OSError as exc:
        reason = f"cannot read ({exc.strerror or exc})"
    except LabelFormatError as exc:
        reason = exc.reason
    except BadInputError as exc:  # binary content and the like: not a list, like a refused one
        reason = str(exc).removeprefix(f"{file}: ")
    return LabelFile((), (LabelWarning(str(file), None, "", reason, REFUSED),))


def _refuse_if_every_file_refused(directory: Path, records: list, warnings: list[LabelWarning]) -> None:
    """Nothing imported and some file refused: the directory is not a DELVE exclude tree, say why."""
    refused = [w for w in warnings if w.kind == REFUSED]
    if records or not refused:
        return
    first = refused[0]
    raise LabelFormatError(
        directory,
        (SOURCE,),
        f"no list file could be read ({len(refused)} refused; first: {first.file}: {first.message})",
    )


def _is_problem_file(file: Path) -> bool:
    """Problem lists are named problem-*.txt; a renamed one still has its ``#Nite Exposure Problem`` line."""
    if file.name.lower().startswith("problem"):
        return True
    with file.open("r", encoding="utf-8-sig", errors="replace") as f:
        first = f.readline().lstrip("#").lower().split()
    return "problem" in first and "exposure" in first


def _read_problem_file(file: Path, count_commented: bool) -> LabelFile:
    lines, warnings = read_text_lines(file)
    records: list[LabelRecord] = []
    n_data = 0
    for number, line in enumerate(lines, start=1):
        text = _problem_data(line, count_commented)
        if text is None:
            continue
        n_data += 1
        match = _PROBLEM_LINE.match(text)
        if match is None or int(match["expnum"]) <= 0:
            warnings.append(LabelWarning(str(file), number, line, "not 'NITE EXPNUM PROBLEM'"))
            continue
        problem = collapse_whitespace(match["problem"] or "")
        if not problem:
            note = "no problem text; kept, reason empty"
            warnings.append(LabelWarning(str(file), number, line, note, NOTE))
        records.append(_exposure_record(int(match["expnum"]), problem, str(file), number))
    refuse_if_mostly_unreadable(file, SOURCE, n_data, warnings)
    return LabelFile(tuple(records), tuple(warnings))


def _problem_data(line: str, count_commented: bool) -> str | None:
    """The data text of a problem-list line; None for blanks, comments and the column header."""
    text = line.strip()
    if not text or _is_problem_header(text):
        return None
    if not text.startswith("#"):
        return text
    # A commented-out line is data only when asked for and well formed (not a real comment).
    text = text.lstrip("#").strip()
    return text if count_commented and _PROBLEM_LINE.match(text) else None


def _is_problem_header(text: str) -> bool:
    """``#Nite  Exposure  Problem``, with or without the ``#``."""
    words = text.lstrip("#").lower().split()
    return "exposure" in words and "problem" in words and not text.lstrip("#").strip()[:1].isdigit()


def _exposure_record(expnum: int, reason: str, file: str, number: int) -> LabelRecord:
    return LabelRecord(SOURCE, "exposure", expnum, None, None, None, reason, None, file, number)


def _read_ccd_file(file: Path) -> LabelFile:
    lines, warnings = read_text_lines(file)
    reason = reason_for_file(file)
    columns = _CCD_COLUMNS_DEFAULT
    sub_reason: str | None = None
    records: list[LabelRecord] = []
    n_data = 0
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        header = _header_columns(text.lstrip("#"))
        if header is not None:
            columns = header
            continue
        if text.startswith("#"):
            comment = text.lstrip("#").strip()
            if _is_sub_reason(comment):
                sub_reason = None if comment.lower() == reason.lower() else collapse_whitespace(comment)
            continue
        n_data += 1
        full_reason = reason if sub_reason is None else f"{reason}{SUB_REASON_SEPARATOR}{sub_reason}"
        record, problem = _parse_ccd_line(text.split(), columns, full_reason, str(file), number)
        if record is not None:
            records.append(record)
        if problem is not None:
            kind = NOTE if record is not None else UNREADABLE
            warnings.append(LabelWarning(str(file), number, line, problem, kind))
    refuse_if_mostly_unreadable(file, SOURCE, n_data, warnings)
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
    """A column's value, None when the column is absent (from the header or the line) or holds ``nan``."""
    if name not in columns or columns.index(name) >= len(values):
        return None
    value = values[columns.index(name)]
    return None if value.lower() == _NAN else value


def _says_no_ccd(values: list[str], columns: tuple[str, ...]) -> bool:
    """True when the line's CCD columns are all ``nan`` or missing and at least one is written ``nan``."""
    present = [values[i] for i, name in enumerate(columns) if name in _CCD_FIELDS and i < len(values)]
    return bool(present) and all(value.lower() == _NAN for value in present)


def _parse_ccd_line(
    values: list[str], columns: tuple[str, ...], reason: str, file: str, number: int
) -> tuple[LabelRecord | None, str | None]:
    """(record, problem) for one line: no record when the line is unusable, a note when it was doubtful."""
    expnum_text = _field(values, columns, "expnum")
    if expnum_text is None or not expnum_text.isdigit() or int(expnum_text) <= 0:
        return None, _column_count_problem(values, columns) or "expnum is not a positive integer"
    expnum = int(expnum_text)
    if _says_no_ccd(values, columns):
        return _exposure_record(expnum, reason, file, number), None
    name = _field(values, columns, "id")
    try:
        ccdnum = _integer_or_none(_field(values, columns, "ccdnum"))
        ccdnum, ccdname = canonical_ccd(name, ccdnum)
    except ValueError as exc:
        return None, _column_count_problem(values, columns) or f"no usable CCD: {exc}"
    record = LabelRecord(SOURCE, "ccd", expnum, ccdnum, ccdname, None, reason, None, file, number)
    # The reference script reads only the ccdnum column, so a contradicting name is reported, not obeyed.
    if name is not None and name.upper() != ccdname:
        return record, f"CCD name {name} disagrees with CCDNUM {ccdnum} ({ccdname}); CCDNUM used, like DELVE"
    return record, None


def _column_count_problem(values: list[str], columns: tuple[str, ...]) -> str | None:
    """Why a short line failed, when it is short: it lost the columns that would have made it readable."""
    if len(values) >= len(columns):
        return None
    return f"expected {len(columns)} columns ({' '.join(columns)}), found {len(values)}"


def _integer_or_none(text: str | None) -> int | None:
    """``"01"`` -> 1, ``"14.0"`` -> 14, None -> None; ValueError for anything else."""
    if text is None:
        return None
    value = float(text)
    if not value.is_integer():
        raise BadInputError(f"CCDNUM {text!r} is not an integer")
    return int(value)

"""What every label parser returns, and the small helpers they share.

A :class:`LabelRecord` is one raw label as its source wrote it, before any mapping to vec's categories
(that is :mod:`ingest.labels.rules`' job). Parsers read line by line (row by row for FITS) and never give up
on a file for one bad line: a line they cannot use becomes a :class:`LabelWarning` of kind ``unreadable``
naming ``file:line`` and the reason, returned next to the records in a :class:`LabelFile`. A line read (or
skipped on purpose) with something worth knowing is a ``note``; a file of a directory that had to be left
out whole is ``refused``.

A file in which most data lines are unreadable is not a label list of that kind at all (a README, a
table of something else): it raises :class:`LabelFormatError` naming the file and the formats tried,
instead of importing the few lines that happen to start with a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vecstore.decam import ccdname_for, ccdnum_for
from vecstore.errors import BadInputError

# The label sources vec can read; each names one parser in ingest.labels.formats.
SOURCES: tuple[str, ...] = ("decals-badexp", "delve", "des-fits", "ccd-cuts")
# Formats that share a file kind: detection checks a text file against both text formats, a FITS file
# against both table formats, so a refusal names them all as tried.
TEXT_SOURCES: tuple[str, ...] = ("decals-badexp", "delve")
FITS_SOURCES: tuple[str, ...] = ("des-fits", "ccd-cuts")

Level = Literal["exposure", "ccd"]
LEVELS: tuple[str, ...] = ("exposure", "ccd")

# A whole-exposure label stands for every CCD of the camera, CCDNUM 1..62, as DELVE's make_exclude.py
# expands it (N30 and S30 are included even in years they were dead, like the reference script does).
CCDS_PER_EXPOSURE = 62

WarningKind = Literal["unreadable", "note", "refused"]
UNREADABLE: WarningKind = "unreadable"  # the line gave no record
NOTE: WarningKind = "note"  # the line was read, or skipped on purpose, with something worth saying
REFUSED: WarningKind = "refused"  # a whole file of a directory was left out (not a label list)


class LabelFormatError(BadInputError):
    """A file that is not a label list of the format(s) tried: most of its data lines are unreadable."""

    def __init__(self, path: str | Path, formats: Sequence[str], reason: str):
        self.path = str(path)
        self.formats = tuple(formats)
        self.reason = reason
        super().__init__(f"{path}: not a label list (formats tried: {', '.join(self.formats)}): {reason}")

    def tried(self, formats: Sequence[str]) -> LabelFormatError:
        """The same refusal, naming every format that was checked (detection checks several)."""
        return LabelFormatError(self.path, formats, self.reason)


@dataclass(frozen=True)
class LabelRecord:
    """One label line as the source gave it.

    ``level`` is ``"exposure"`` when the label names a whole exposure (then ``ccdnum`` and ``ccdname`` are
    None) and ``"ccd"`` when it names one CCD (then both are set, ``ccdname`` in canonical upper case).
    ``flag`` is the source's numeric flag (bad_expid's 1/2/3, a ccd_cuts bit value), ``raw_reason`` the
    source's reason text with whitespace runs collapsed (empty when the source gave none). ``line`` is the
    1-based line of a text file or the 1-based row of a FITS table.
    """

    source: str
    level: Level
    expnum: int
    ccdnum: int | None
    ccdname: str | None
    flag: int | None
    raw_reason: str
    analyst: str | None
    file: str
    line: int | None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BadInputError(f"unknown label source {self.source!r}; expected one of {', '.join(SOURCES)}")
        if self.level not in LEVELS:
            raise BadInputError(f"label level must be 'exposure' or 'ccd', not {self.level!r}")
        if self.level == "ccd" and (self.ccdnum is None or self.ccdname is None):
            raise BadInputError(f"a CCD-level label needs ccdnum and ccdname ({self.file}:{self.line})")
        if self.level == "exposure" and (self.ccdnum is not None or self.ccdname is not None):
            raise BadInputError(f"an exposure-level label has no CCD ({self.file}:{self.line})")


@dataclass(frozen=True)
class LabelWarning:
    """A line (or row, or file) that was not read, or read with a caveat, so that nothing is dropped unseen.

    ``kind`` is ``unreadable`` (no record came of the line), ``note`` (read or skipped on purpose, with a
    remark) or ``refused`` (a whole file of a directory left out; ``line`` is None).
    """

    file: str
    line: int | None
    content: str
    message: str
    kind: WarningKind = UNREADABLE

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text}: {self.content!r}" if self.content else text


@dataclass(frozen=True)
class LabelFile:
    """What every ``read_*`` parser returns: the records it could read and the warnings about the rest."""

    records: tuple[LabelRecord, ...]
    warnings: tuple[LabelWarning, ...]

    def __len__(self) -> int:
        return len(self.records)

    def of_kind(self, kind: WarningKind) -> tuple[LabelWarning, ...]:
        return warnings_of_kind(self.warnings, kind)


def warnings_of_kind(warnings: Iterable[LabelWarning], kind: WarningKind) -> tuple[LabelWarning, ...]:
    return tuple(w for w in warnings if w.kind == kind)


def collapse_whitespace(text: str) -> str:
    """Free text with tabs and runs of spaces made single spaces, so the same reason compares equal."""
    return " ".join(text.split())


def require_existing(path: str | Path) -> Path:
    """The path as a Path, or BadInputError when nothing is there."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: label file or directory does not exist")
    return p


def read_text_lines(path: Path) -> tuple[list[str], list[LabelWarning]]:
    """Lines of a label text file (without line ends), refusing what is not text or has nothing in it.

    LF, CRLF and CR line ends all split lines, and a leading byte-order mark is dropped (editors on other
    systems add them). Bytes that are not UTF-8 are replaced rather than fatal (hand-edited lists pick up
    stray Latin-1 characters in comments); one note says so. A NUL byte means a binary file, e.g. a FITS
    table passed to a text parser, and that is refused.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read label file ({exc.strerror or exc})") from exc
    if b"\x00" in raw:
        raise BadInputError(f"{path}: not a text label file (binary content); is it a FITS table?")
    if not raw.strip():
        raise BadInputError(f"{path}: label file is empty")
    warnings: list[LabelWarning] = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="replace")
        warnings.append(LabelWarning(str(path), None, "", "bytes that are not UTF-8 were replaced", NOTE))
    return text.splitlines(), warnings


def canonical_ccd(ccdname: str | None, ccdnum: int | None) -> tuple[int, str]:
    """(CCDNUM, canonical CCD name) from whichever of the two is known; ValueError if neither is valid."""
    if ccdnum is not None:
        return ccdnum, ccdname_for(ccdnum)
    if ccdname is not None:
        num = ccdnum_for(ccdname)
        return num, ccdname_for(num)
    raise BadInputError("neither a CCD name nor a CCD number")


def refuse_if_mostly_unreadable(
    path: Path, source: str, n_data: int, warnings: Iterable[LabelWarning], unit: str = "non-comment lines"
) -> None:
    """LabelFormatError when more than half of the ``n_data`` data lines (or rows) of ``path`` are unreadable.

    One bad line in a list is a typo; a file where most lines fail is another kind of file (a README, a
    table of something else), and importing the few lines that happen to parse would be wrong. Files
    holding only comments (a new year's list with just its header) are fine and give no records.
    """
    unreadable = [w for w in warnings if w.kind == UNREADABLE and w.line is not None]
    if n_data == 0 or 2 * len(unreadable) <= n_data:
        return
    first = unreadable[0]
    raise LabelFormatError(
        path,
        (source,),
        f"{len(unreadable)} of {n_data} {unit} cannot be read as {source} "
        f"(first: line {first.line}: {first.message})",
    )

"""What every label parser returns, and the small helpers they share.

A :class:`LabelRecord` is one raw label as its source wrote it, before any mapping to vec's categories
(that is :mod:`ingest.categories`' job). Parsers never drop a line silently: a line they cannot use becomes a
:class:`LabelWarning` naming ``file:line`` and the line's content, returned next to the records in a
:class:`LabelFile`. A file that cannot be used at all raises :class:`vecstore.errors.BadInputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.decam import ccdname_for, ccdnum_for
from vecstore.errors import BadInputError

# The label sources vec can read; each names one parser in ingest.labels.
SOURCES: tuple[str, ...] = ("decals-badexp", "delve", "des-fits", "ccd-cuts")

Level = Literal["exposure", "ccd"]
LEVELS: tuple[str, ...] = ("exposure", "ccd")

# A whole-exposure label stands for every CCD of the camera, CCDNUM 1..62, as DELVE's make_exclude.py
# expands it (N30 and S30 are included even in years they were dead, like the reference script does).
CCDS_PER_EXPOSURE = 62


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
            raise ValueError(f"unknown label source {self.source!r}; expected one of {', '.join(SOURCES)}")
        if self.level not in LEVELS:
            raise ValueError(f"label level must be 'exposure' or 'ccd', not {self.level!r}")
        if self.level == "ccd" and (self.ccdnum is None or self.ccdname is None):
            raise ValueError(f"a CCD-level label needs ccdnum and ccdname ({self.file}:{self.line})")
        if self.level == "exposure" and (self.ccdnum is not None or self.ccdname is not None):
            raise ValueError(f"an exposure-level label has no CCD ({self.file}:{self.line})")


@dataclass(frozen=True)
class LabelWarning:
    """A line (or row) that was skipped or read with a caveat, so that nothing is dropped unseen."""

    file: str
    line: int | None
    content: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}: {self.content!r}"


@dataclass(frozen=True)
class LabelFile:
    """What every ``read_*`` parser returns: the records it could read and the warnings about the rest."""

    records: tuple[LabelRecord, ...]
    warnings: tuple[LabelWarning, ...]

    def __len__(self) -> int:
        return len(self.records)


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

    Bytes that are not UTF-8 are replaced rather than fatal (hand-edited lists pick up stray Latin-1
    characters in comments); one warning says so. A NUL byte means a binary file, e.g. a FITS table passed
    to a text parser, and that is refused.
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
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        warnings.append(LabelWarning(str(path), None, "", "bytes that are not UTF-8 were replaced by U+FFFD"))
    return text.splitlines(), warnings


def canonical_ccd(ccdname: str | None, ccdnum: int | None) -> tuple[int, str]:
    """(CCDNUM, canonical CCD name) from whichever of the two is known; ValueError if neither is valid."""
    if ccdnum is not None:
        return ccdnum, ccdname_for(ccdnum)
    if ccdname is not None:
        num = ccdnum_for(ccdname)
        return num, ccdname_for(num)
    raise ValueError("neither a CCD name nor a CCD number")


def refuse_if_nothing_read(path: Path, records: list, warnings: list[LabelWarning]) -> None:
    """A file where every data line failed is not a label file of this kind: say so instead of returning 0.

    Files that only hold comments (a new year's list with just its header) are fine and return no records.
    """
    skipped = [w for w in warnings if w.line is not None]
    if not records and skipped:
        first = skipped[0]
        raise BadInputError(
            f"{path}: no line could be read as a label ({len(skipped)} skipped); "
            f"first at line {first.line}: {first.message}: {first.content!r}"
        )

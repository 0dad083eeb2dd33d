"""Truth lists of a simulated survey, in the formats of the real lists the label importers read.

* legacypipe ``decam-bad_expid.txt``: whole exposures with a flag (1 saturated, 2 clouds, 3 other) and a
  comment whose keywords carry the category;
* DELVE: ``problem`` (whole-exposure reasons, fixed-width columns) and one file per CCD-level problem,
  listing ``date expnum nan ccdname ccdnum`` per bad CCD;
* ``truth.csv``: the category of every CCD, good ones included, for scoring.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vecstore.decam import ccdnum_for

BAD_EXPID_NAME = "decam-bad_expid-sim.txt"
DELVE_DIRNAME = "delve-sim"
PROBLEM_NAME = "problem-sim.txt"
GHOST_SCATTER_NAME = "ghost-scatter-sim.txt"
NOISE_NAME = "noise-sim.txt"
TRUTH_CSV_NAME = "truth.csv"
GOOD = "good"

_BAD_EXPID_HEADER = "#EXPID\tFlag\tcomments\n#Flags: 1=possibly saturated; 2=clouds; 3=other source\n"
_BAD_EXPID_ENTRIES = {
    "Saturated": (1, "twilight, possibly saturated"),
    "Clouds_Transparency": (2, "clouds"),
    "PSF": (3, "bad PSF"),
    "Out_of_Focus": (3, "out of focus"),
    "Telescope_Moving": (3, "telescope moving, trailed stars"),
}
_DELVE_PROBLEMS = {"NObjects": "NObjects", "Wonky": "Wonky"}
_PROBLEM_HEADER = "#Nite           Exposure        Problem\n"
_CCD_LIST_HEADER = "#date     expnum ccd id ccdnum\n"


class TruthRecord(Protocol):
    """What the writers need to know about one simulated exposure."""

    expnum: int
    nite: str
    category: str | None
    ccdnames: tuple[str, ...]
    affected_ccds: tuple[str, ...]
    expfactor: float | None


@dataclass(frozen=True)
class TruthPaths:
    """Every truth file written, so callers need not rebuild the names."""

    truth_csv: Path
    bad_expid: Path
    delve_dir: Path
    delve_problem: Path
    delve_ghost_scatter: Path
    delve_noise: Path
    delve_bad_ccd: tuple[Path, ...]


def ccd_list_name(ccdnum: int) -> str:
    """DELVE's per-CCD bad list for Bad_CCD problems, e.g. ``ccd31-sim.txt``."""
    return f"ccd{ccdnum}-sim.txt"


def write_truth_lists(out_dir: Path, records: Sequence[TruthRecord]) -> TruthPaths:
    """Write all truth lists into ``out_dir`` (lists of problems that did not occur hold only a header)."""
    records = sorted(records, key=lambda record: record.expnum)
    delve_dir = out_dir / DELVE_DIRNAME
    delve_dir.mkdir(parents=True, exist_ok=True)
    bad_ccd_paths = {n: delve_dir / ccd_list_name(n) for n in sorted(_bad_ccd_numbers(records))}
    paths = TruthPaths(
        truth_csv=out_dir / TRUTH_CSV_NAME,
        bad_expid=out_dir / BAD_EXPID_NAME,
        delve_dir=delve_dir,
        delve_problem=delve_dir / PROBLEM_NAME,
        delve_ghost_scatter=delve_dir / GHOST_SCATTER_NAME,
        delve_noise=delve_dir / NOISE_NAME,
        delve_bad_ccd=tuple(bad_ccd_paths.values()),
    )
    _write_truth_csv(paths.truth_csv, records)
    _write_text(paths.bad_expid, _BAD_EXPID_HEADER + "".join(_bad_expid_lines(records)))
    _write_text(paths.delve_problem, _PROBLEM_HEADER + "".join(_problem_lines(records)))
    _write_text(paths.delve_ghost_scatter, _ccd_list(records, "Ghost_Scatter"))
    _write_text(paths.delve_noise, _ccd_list(records, "Noise"))
    for ccdnum, path in bad_ccd_paths.items():
        _write_text(path, _ccd_list(records, "Bad_CCD", only_ccdnum=ccdnum))
    return paths


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="ascii")


def _write_truth_csv(path: Path, records: Sequence[TruthRecord]) -> None:
    with path.open("w", newline="", encoding="ascii") as handle:
        writer = csv.writer(handle)
        writer.writerow(["expnum", "ccdname", "category"])
        for record in records:
            for ccdname in record.ccdnames:
                bad = record.category is not None and ccdname in record.affected_ccds
                writer.writerow([record.expnum, ccdname, record.category if bad else GOOD])


def _bad_expid_lines(records: Sequence[TruthRecord]):
    # Tab-separated like the header; the comment is free text and may contain spaces.
    for record in records:
        if record.category == "Nonoptimal_Exposure":
            yield f"{record.expnum}\t3\texpfactor={record.expfactor:.3f}\n"
        elif record.category in _BAD_EXPID_ENTRIES:
            flag, comment = _BAD_EXPID_ENTRIES[record.category]
            yield f"{record.expnum}\t{flag}\t{comment}\n"


def _problem_lines(records: Sequence[TruthRecord]):
    for record in records:
        if record.category in _DELVE_PROBLEMS:
            yield f"{record.nite:<16}{record.expnum:<16}{_DELVE_PROBLEMS[record.category]}\n"


def _ccd_list(records: Sequence[TruthRecord], category: str, only_ccdnum: int | None = None) -> str:
    lines = [_CCD_LIST_HEADER]
    for record in records:
        if record.category != category:
            continue
        for ccdname in record.affected_ccds:
            ccdnum = ccdnum_for(ccdname)
            if only_ccdnum is None or ccdnum == only_ccdnum:
                lines.append(f"{record.nite}  {record.expnum:>6} nan {ccdname:<3} {ccdnum:>2}\n")
    return "".join(lines)


def _bad_ccd_numbers(records: Sequence[TruthRecord]) -> set[int]:
    bad_ccd_records = (record for record in records if record.category == "Bad_CCD")
    return {ccdnum_for(name) for record in bad_ccd_records for name in record.affected_ccds}

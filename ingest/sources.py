"""Turn what the user points at into a sorted list of CCD tasks, and the inputs that could not be used.

A source is one of:

- a **directory**, searched recursively for ``*.fits.fz``, ``*.fits`` and ``*.fits.gz`` files, one task
  per CCD image HDU. CP data-quality (``_ood_``) and weight (``_oow_``) files are skipped by default since
  only the ``ooi`` images are embedded (``skip_products=()`` keeps them). FITS files holding only tables
  (e.g. a survey-ccds table lying beside the images) are catalogues, not images, and are skipped silently.
- a legacypipe **survey-ccds table** (a FITS table with ``image_filename`` and ``image_hdu`` columns,
  ``.fits`` or ``.fits.gz``): one task per row, the image at ``image_root / image_filename`` (default
  ``image_root``: the table's directory), the HDU ``image_hdu`` (or ``ccdname`` if the table has no
  ``image_hdu``), the row's metadata columns in ``table_meta``. Image files are only checked to exist here;
  they are opened when read.
- a **text list**: one source per line, ``#`` starts a comment. Relative entries are resolved against the
  list file's directory (so a list travels with its data). Entries are taken as if given directly; a list
  inside a list is refused.
- a **FITS image file** given directly: its CCD HDUs, or just one with the cfitsio-style suffix
  ``file.fits.fz[N4]`` / ``file.fits[1]``. Explicitly named files are never skipped by product type.

The same CCD listed twice (same path and HDU, or same EXPNUM and CCD name, e.g. two processing versions of
one exposure) is kept once — the store holds one embedding per CCD — preferring a task that carries a table
row, then an ``ooi`` image over an ``ood``/``oow`` file, then the first in sorted order; each repeat becomes
a failure row saying which task was kept. Missing or unusable inputs become failure rows;
the rest goes on. Tasks are sorted by path, then by HDU (CCDNUM order for DECam-named HDUs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ingest.reader import TABLE_META_COLUMNS, CCDTask, inspect_fits, normalize_table_meta, open_fits
from vecstore.decam import CCDNUM_BY_NAME
from vecstore.errors import BadInputError

IMAGE_SUFFIXES = (".fits.fz", ".fits", ".fits.gz")
# CP product codes that are not images: data-quality masks and inverse-variance weight maps.
SKIPPED_PRODUCTS = ("ood", "oow")
TABLE_KEY_COLUMNS = ("image_filename", "image_hdu")

CCDFilter = Callable[[CCDTask], bool] | Collection[str]

_HDU_SUFFIX = re.compile(r"^(?P<path>.+)\[(?P<hdu>[^\[\]]+)\]$")
_SNIFF_BYTES = 4096


class SourceFailure(NamedTuple):
    """An input that produced no task: the file, the HDU when one is concerned, and why."""

    path: str
    hdu: str | None
    reason: str


@dataclass
class SourceScan:
    """Result of :func:`expand_sources`: tasks to read, and inputs that could not be used."""

    tasks: list[CCDTask] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    """A task plus what is known of its identity before reading it, for finding repeats."""

    task: CCDTask
    expnum: int | None
    ccdname: str | None


@dataclass
class _Expansion:
    """Accumulates candidates and failures while sources are walked."""

    image_root: Path | None
    skip_products: tuple[str, ...]
    candidates: list[_Candidate] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    existing_files: dict[str, bool] = field(default_factory=dict)

    def fail(self, path: str | os.PathLike, hdu: int | str | None, reason: str) -> None:
        self.failures.append(SourceFailure(os.fspath(path), None if hdu is None else str(hdu), reason))

    def fail_from(self, error: BadInputError) -> None:
        self.failures.append(SourceFailure(error.path, error.hdu, error.reason))

    def file_exists(self, path: str) -> bool:
        """os.path.isfile, cached: a survey-ccds table names each image file once per CCD."""
        if path not in self.existing_files:
            self.existing_files[path] = os.path.isfile(path)
        return self.existing_files[path]


# ----------------------------------------------------------------------------------------------------------
# Public entry point


def expand_sources(
    sources: Sequence[str | os.PathLike],
    *,
    image_root: str | os.PathLike | None = None,
    ccd_filter: CCDFilter | None = None,
    skip_products: Sequence[str] = SKIPPED_PRODUCTS,
) -> SourceScan:
    """Every CCD task named by ``sources`` (directories, survey-ccds tables, text lists, FITS files).

    ``ccd_filter`` is either a predicate on :class:`CCDTask` or a collection of CCD names (``{"N4", "S4"}``);
    with names, tasks whose CCD name is not known before reading (an unnamed HDU without a table row) are
    kept. ``image_root`` is where survey-ccds ``image_filename`` paths are relative to.
    """
    expansion = _Expansion(
        image_root=Path(image_root).expanduser() if image_root is not None else None,
        skip_products=tuple(product.lower() for product in skip_products),
    )
    for source in sources:
        _expand_source(os.fspath(source), expansion, base_dir=None, inside_list=False)
    candidates = [c for c in expansion.candidates if _passes(c.task, ccd_filter)]
    tasks = _drop_repeats(candidates, expansion)
    failures = sorted(set(expansion.failures), key=lambda f: (f.path, f.hdu or "", f.reason))
    return SourceScan(tasks=tasks, failures=failures)


# ----------------------------------------------------------------------------------------------------------
# Dispatch on the kind of source


def _expand_source(source: str, expansion: _Expansion, *, base_dir: Path | None, inside_list: bool) -> None:
    path, hdu = _split_hdu_suffix(source, base_dir)
    if not os.path.lexists(path):
        expansion.fail(path, hdu, "no such file or directory")
    elif os.path.isdir(path):
        _expand_directory(Path(path), expansion)
    elif hdu is not None or _looks_like_fits(path):
        _expand_fits_file(path, expansion, hdu=hdu, in_directory=False)
    elif inside_list:
        reason = (
            "not a FITS file; entries of a text list must be FITS files or directories (lists do not nest)"
        )
        expansion.fail(path, None, reason)
    else:
        _expand_text_list(Path(path), expansion)


def _absolute(entry: str, base_dir: Path | None) -> str:
    path = Path(entry).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return os.path.abspath(path)


def _split_hdu_suffix(source: str, base_dir: Path | None) -> tuple[str, int | str | None]:
    """``f.fits.fz[N4]`` -> (f.fits.fz, 'N4'), ``f.fits[1]`` -> (f.fits, 1); an existing path wins."""
    plain = _absolute(source, base_dir)
    match = _HDU_SUFFIX.match(source.strip())
    if os.path.lexists(plain) or not match:
        return plain, None
    hdu_text = match.group("hdu").strip()
    hdu: int | str = int(hdu_text) if hdu_text.isdigit() else hdu_text
    return _absolute(match.group("path"), base_dir), hdu


def _looks_like_fits(path: str) -> bool:
    """By name (the image suffixes), or by content for other names (FITS or gzip magic)."""
    if path.lower().endswith(IMAGE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as stream:
            start = stream.read(9)
    except OSError:
        return True  # let the FITS reader report why the file cannot be read
    return start.startswith(b"SIMPLE  =") or start.startswith(b"\x1f\x8b")


def _is_skipped_product(path: Path, skip_products: tuple[str, ...]) -> bool:
    """True for CP non-image products, recognised by a name token such as ``_ood_`` or ``_oow_``."""
    tokens = re.split(r"[_.\-]", path.name.lower())
    return any(token in skip_products for token in tokens)


# ----------------------------------------------------------------------------------------------------------
# Directories, files, lists


def _expand_directory(directory: Path, expansion: _Expansion) -> None:
    for path in sorted(directory.rglob("*")):
        if not path.name.lower().endswith(IMAGE_SUFFIXES) or path.is_dir():
            continue
        if _is_skipped_product(path, expansion.skip_products):
            continue
        _expand_fits_file(os.path.abspath(path), expansion, hdu=None, in_directory=True)


def _expand_fits_file(path: str, expansion: _Expansion, *, hdu: int | str | None, in_directory: bool) -> None:
    """A survey-ccds table -> its rows; an image file -> its CCD HDUs (or the one HDU named)."""
    try:
        info = inspect_fits(path)
    except BadInputError as error:
        expansion.fail_from(error)
        return
    table_hdu = _survey_ccds_hdu(info.table_columns)
    if table_hdu is not None and not info.ccd_hdus:
        if not in_directory:
            _expand_table(path, table_hdu, expansion)
        return
    if hdu is not None:
        expansion.candidates.append(_Candidate(CCDTask(path, hdu), info.expnum, _ccdname_of_hdu(hdu)))
        return
    if not info.ccd_hdus:
        if in_directory and info.table_columns:
            return  # a catalogue lying among the images, not an image file
        expansion.fail(path, None, "no CCD image HDU with data in this file")
        return
    for ccd_hdu in info.ccd_hdus:
        expansion.candidates.append(_Candidate(CCDTask(path, ccd_hdu), info.expnum, _ccdname_of_hdu(ccd_hdu)))


def _ccdname_of_hdu(hdu: int | str) -> str | None:
    if isinstance(hdu, str) and hdu.strip().upper() in CCDNUM_BY_NAME:
        return hdu.strip().upper()
    return None


def _expand_text_list(list_path: Path, expansion: _Expansion) -> None:
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        expansion.fail(list_path, None, "neither a FITS file nor a UTF-8 text list of files")
        return
    except OSError as error:
        expansion.fail(list_path, None, f"cannot read the list: {error.strerror or error}")
        return
    for line in text.splitlines():
        entry = _strip_comment(line)
        if entry:
            _expand_source(entry, expansion, base_dir=list_path.parent, inside_list=True)


def _strip_comment(line: str) -> str:
    """Drop a whole-line ``#`` comment or a trailing `` # comment`` (a ``#`` inside a name is kept)."""
    stripped = line.strip()
    if stripped.startswith("#"):
        return ""
    return re.split(r"\s+#", stripped, maxsplit=1)[0].strip()


# ----------------------------------------------------------------------------------------------------------
# survey-ccds tables


def _survey_ccds_hdu(table_columns: dict[int, tuple[str, ...]]) -> int | None:
    """Index of the first table HDU with legacypipe's image_filename and image_hdu columns."""
    for index, columns in sorted(table_columns.items()):
        lower = {column.lower() for column in columns}
        if all(key in lower for key in TABLE_KEY_COLUMNS):
            return index
    return None


def _read_table_columns(path: str, table_hdu: int) -> dict[str, list[Any]]:
    """The table's key and metadata columns as Python lists, keyed by lower-case column name."""
    wanted = set(TABLE_KEY_COLUMNS) | set(TABLE_META_COLUMNS)
    with open_fits(path) as fits:
        hdu = fits[table_hdu]
        names = [name for name in hdu.get_colnames() if name.lower() in wanted]
        data = hdu.read(columns=names)
    # tolist() column by column is far faster than touching numpy scalars row by row on big tables.
    return {name.lower(): np.asarray(data[name]).tolist() for name in names}


def _expand_table(path: str, table_hdu: int, expansion: _Expansion) -> None:
    try:
        columns = _read_table_columns(path, table_hdu)
    except BadInputError as error:
        expansion.fail_from(error)
        return
    except OSError as error:
        expansion.fail(path, table_hdu, f"cannot read the survey-ccds table: {error}")
        return
    root = expansion.image_root if expansion.image_root is not None else Path(path).parent
    meta_names = [name for name in TABLE_META_COLUMNS if name in columns]
    n_rows = len(columns["image_filename"])
    for row_index in range(n_rows):
        row = normalize_table_meta({name: columns[name][row_index] for name in meta_names})
        filename = _text(columns["image_filename"][row_index])
        image_hdu = columns["image_hdu"][row_index]
        _add_table_row(path, row_index, filename, image_hdu, row, root, expansion)


def _text(value: Any) -> str:
    """A table string cell as clean text (FITS strings may be bytes, padded with blanks)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()


def _add_table_row(
    table_path: str,
    row_index: int,
    filename: str,
    image_hdu: Any,
    row: dict[str, Any],
    root: Path,
    expansion: _Expansion,
) -> None:
    where = f"row {row_index} of survey-ccds table {table_path}"
    hdu: int | str | None = (
        int(image_hdu) if image_hdu is not None and int(image_hdu) >= 0 else row.get("ccdname")
    )
    if not filename:
        expansion.fail(table_path, hdu, f"{where} has an empty image_filename")
        return
    if hdu is None:
        expansion.fail(table_path, None, f"{where} has neither an image_hdu nor a ccdname")
        return
    image_path = os.path.abspath(root / filename)
    if not expansion.file_exists(image_path):
        expansion.fail(image_path, hdu, f"image file not found (named by {where}; image_root {root})")
        return
    task = CCDTask(image_path, hdu, row)
    expansion.candidates.append(_Candidate(task, row.get("expnum"), task.known_ccdname))


# ----------------------------------------------------------------------------------------------------------
# Filtering, order and repeats


def _passes(task: CCDTask, ccd_filter: CCDFilter | None) -> bool:
    if ccd_filter is None:
        return True
    if callable(ccd_filter):
        return bool(ccd_filter(task))
    wanted = {str(name).strip().upper() for name in ccd_filter}
    return task.known_ccdname is None or task.known_ccdname in wanted


def _hdu_sort_key(hdu: int | str) -> tuple[int, int, str]:
    """Indices first in file order, then DECam names in CCDNUM order, then any other names."""
    if isinstance(hdu, int):
        return (0, hdu, "")
    name = hdu.strip().upper()
    return (1, CCDNUM_BY_NAME.get(name, 99), name)


def _task_sort_key(task: CCDTask) -> tuple:
    return (task.path, _hdu_sort_key(task.hdu))


def _preference_key(candidate: _Candidate) -> tuple:
    """Which of several tasks for one CCD to keep: one with a table row, then an image over a weight or
    mask file (when those are not skipped), then the first in sorted order."""
    task = candidate.task
    not_an_image = _is_skipped_product(Path(task.path), SKIPPED_PRODUCTS)
    return (task.table_meta is None, not_an_image, *_task_sort_key(task))


def _drop_repeats(candidates: list[_Candidate], expansion: _Expansion) -> list[CCDTask]:
    """Keep one task per CCD (by path+HDU, and by EXPNUM+CCD name); repeats become failures."""
    kept: list[CCDTask] = []
    by_location: dict[tuple[str, str], CCDTask] = {}
    by_identity: dict[tuple[int, str], CCDTask] = {}
    for candidate in sorted(candidates, key=_preference_key):
        task = candidate.task
        location = (task.path, str(task.hdu).strip().upper())
        identity = (candidate.expnum, candidate.ccdname) if candidate.expnum and candidate.ccdname else None
        first = by_location.get(location) or (by_identity.get(identity) if identity else None)
        if first is not None:
            what = "file and HDU" if location in by_location else f"EXPNUM {identity[0]} CCD {identity[1]}"
            expansion.fail(
                task.path,
                task.hdu,
                f"listed twice: same {what} as {first.path} HDU {first.hdu}; kept that one",
            )
            continue
        by_location[location] = task
        if identity:
            by_identity[identity] = task
        kept.append(task)
    return sorted(kept, key=_task_sort_key)

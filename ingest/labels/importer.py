"""Import label lists into a store: parse, map to categories, insert once.

Labels are stored whether or not their exposures are ingested yet (they join by expnum/ccdnum when the
CCDs arrive). Every label keeps its source, raw reason, analyst, level and file; its category is the
rules' verdict at import time (NULL = unmapped, listed by ``vec labels summary``; ``ignore`` = deliberately
not used). A label's key is a hash of its content, not of the file path, so importing the same list twice,
or under another name, adds nothing.

Lines the parsers could not read are not errors of the import: :func:`warning_summary` condenses them
into one line per kind (unreadable lines, notes, refused files) and :func:`warning_details` lists them all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ingest.labels.common import NOTE, REFUSED, UNREADABLE, LabelFormatError, WarningKind, warnings_of_kind
from ingest.labels.formats import LabelRecord, LabelWarning, read_labels
from ingest.labels.rules import IGNORE, CategoryRules, unmapped_reasons
from vecstore.store import Store

_LABEL_COLUMNS = {
    "label_key": pa.string(),
    "source": pa.string(),
    "level": pa.string(),
    "expnum": pa.int64(),
    "ccdnum": pa.int32(),
    "ccdname": pa.string(),
    "flag": pa.int64(),
    "raw_reason": pa.string(),
    "analyst": pa.string(),
    "category": pa.string(),
    "file": pa.string(),
    "line": pa.int32(),
    "imported_at": pa.timestamp("us"),
}


@dataclass(frozen=True)
class LabelImport:
    path: str
    source: str
    n_records: int
    n_added: int
    n_ignored: int
    unmapped: list[tuple[str, str, int]]
    warnings: list[LabelWarning]
    n_files: int = 1  # files that gave at least one label (a DELVE directory holds many)

    def of_kind(self, kind: WarningKind) -> tuple[LabelWarning, ...]:
        return warnings_of_kind(self.warnings, kind)

    def describe(self) -> str:
        return (
            f"{self.path}: {self.n_records:,} labels ({self.source}), {self.n_added:,} new, "
            f"{self.n_ignored:,} ignored by rule, {sum(n for *_, n in self.unmapped):,} unmapped"
        )


def label_key(record: LabelRecord) -> str:
    parts = (
        record.source,
        record.level,
        record.expnum,
        record.ccdnum,
        record.flag,
        record.raw_reason,
        record.analyst,
    )
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def labels_table(records: list[LabelRecord], rules: CategoryRules) -> pa.Table:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = {name: [] for name in _LABEL_COLUMNS}
    for record in records:
        values = {
            "label_key": label_key(record),
            "source": record.source,
            "level": record.level,
            "expnum": record.expnum,
            "ccdnum": record.ccdnum,
            "ccdname": record.ccdname,
            "flag": record.flag,
            "raw_reason": record.raw_reason,
            "analyst": record.analyst,
            "category": rules.categorize(record),
            "file": str(record.file),
            "line": record.line,
            "imported_at": now,
        }
        for name, value in values.items():
            rows[name].append(value)
    return pa.table({name: pa.array(values, type=_LABEL_COLUMNS[name]) for name, values in rows.items()})


def import_labels(
    store: Store, path: str | Path, source: str | None = None, rules: CategoryRules | None = None, **options
) -> LabelImport:
    """Read ``path`` (format ``source`` or detected), map categories, insert labels not already stored."""
    rules = rules or CategoryRules.load()
    parsed = read_labels(path, source, **options)
    records = parsed.records
    table = labels_table(records, rules)
    with store.transaction() as con:
        before = con.execute("SELECT count(*) FROM labels").fetchall()[0][0]
        con.register("incoming", table)
        con.execute(f"INSERT OR IGNORE INTO labels SELECT {', '.join(_LABEL_COLUMNS)} FROM incoming")
        con.unregister("incoming")
        after = con.execute("SELECT count(*) FROM labels").fetchall()[0][0]
    detected = records[0].source if records else (source or "unknown")
    return LabelImport(
        path=str(path),
        source=detected,
        n_records=len(records),
        n_added=int(after - before),
        n_ignored=sum(1 for c in table.column("category").to_pylist() if c == IGNORE),
        unmapped=unmapped_reasons(records, rules),
        warnings=list(parsed.warnings),
        n_files=len({r.file for r in records}),
    )


def import_each(
    store: Store, paths: Sequence[str | Path], source: str | None = None, rules: CategoryRules | None = None
) -> list[LabelImport | LabelFormatError]:
    """:func:`import_labels` for each path, in order; a path refused as not a label list is given as its
    error, and does not stop the others."""
    rules = rules or CategoryRules.load()
    results: list[LabelImport | LabelFormatError] = []
    for path in paths:
        try:
            results.append(import_labels(store, path, source, rules))
        except LabelFormatError as exc:
            results.append(exc)
    return results


def warning_lines(result: LabelImport, verbose: bool = False) -> list[str]:
    """Every warning (``verbose``), or one summary line per kind that says how to see them all."""
    if verbose:
        return warning_details(result)
    return [f"{summary}; --verbose lists all" for summary in warning_summary(result)]


def warning_summary(result: LabelImport) -> list[str]:
    """At most one line per kind of warning, with a count and the first one, e.g.

    ``12 unreadable lines in 2 files (first: delve/x.txt:17: expected 5 columns, found 2)``.
    """
    lines = []
    unreadable = result.of_kind(UNREADABLE)
    if unreadable:
        where = _files(unreadable)
        lines.append(f"{_count(unreadable, 'unreadable line')} in {where} (first: {_first(unreadable)})")
    notes = result.of_kind(NOTE)
    if notes:
        lines.append(f"{_count(notes, 'note')} on lines read or skipped on purpose (first: {_first(notes)})")
    refused = result.of_kind(REFUSED)
    if refused:
        lines.append(
            f"{_count(refused, 'file')} refused as not a label list, labels from the "
            f"{_count_n(result.n_files, 'other file')} imported (first: {_first(refused)})"
        )
    return lines


def warning_details(result: LabelImport) -> list[str]:
    """Every warning on its own line, ``<kind>: file:line: reason: 'content'``, unreadable lines first."""
    return [f"{kind}: {w}" for kind in (UNREADABLE, NOTE, REFUSED) for w in result.of_kind(kind)]


def _first(warnings: Sequence[LabelWarning]) -> str:
    return f"{warnings[0].location}: {warnings[0].message}"


def _files(warnings: Sequence[LabelWarning]) -> str:
    return _count_n(len({w.file for w in warnings}), "file")


def _count(items: Sequence, noun: str) -> str:
    return _count_n(len(items), noun)


def _count_n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"

"""Import label lists into a store: parse, map to categories, insert once.

Labels are stored whether or not their exposures are ingested yet (they join by expnum/ccdnum when the
CCDs arrive). Every label keeps its source, raw reason, analyst, level and file; its category is the
rules' verdict at import time (NULL = unmapped, listed by ``vec labels summary``; ``ignore`` = deliberately
not used). A label's key is a hash of its content, not of the file path, so importing the same list twice,
or under another name, adds nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ingest.categories import IGNORE, CategoryRules, unmapped_reasons
from ingest.labels import LabelRecord, LabelWarning, read_labels
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
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
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
    )

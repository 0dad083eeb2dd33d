"""The catalog: a DuckDB file with every table of the store, joined by ``ccd_id``.

The writer opens the file only for the length of one transaction, so that readers in other processes
(``vec sql`` during an ingest) get in between; both sides retry briefly when the other holds the lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from vecstore.errors import StoreLockedError

CATALOG_FILE = "catalog.duckdb"

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS exposures (
    expnum BIGINT PRIMARY KEY,
    filter VARCHAR, exptime DOUBLE, mjd_obs DOUBLE, airmass DOUBLE, plver VARCHAR,
    ra DOUBLE, dec DOUBLE, release VARCHAR, path VARCHAR
);
CREATE TABLE IF NOT EXISTS ccds (
    ccd_id BIGINT PRIMARY KEY,
    expnum BIGINT NOT NULL,
    ccdname VARCHAR, ccdnum INTEGER, filter VARCHAR, exptime DOUBLE, mjd_obs DOUBLE, airmass DOUBLE,
    plver VARCHAR, ra DOUBLE, dec DOUBLE, path VARCHAR, hdu VARCHAR, release VARCHAR,
    ccd_cuts BIGINT, ebv DOUBLE,
    part_id BIGINT NOT NULL,
    run_id BIGINT,
    committed_at TIMESTAMP,
    part_row INTEGER,  -- the CCD's row in its part: a read of a few CCDs decodes only their row groups
    naxis1 INTEGER, naxis2 INTEGER  -- the image's columns and rows (NULL in stores made before vec kept them)
);
-- Stores made before row offsets were recorded; the writer fills them in on open (Store.recover).
ALTER TABLE ccds ADD COLUMN IF NOT EXISTS part_row INTEGER;
ALTER TABLE ccds ADD COLUMN IF NOT EXISTS naxis1 INTEGER;
ALTER TABLE ccds ADD COLUMN IF NOT EXISTS naxis2 INTEGER;
CREATE TABLE IF NOT EXISTS embedding_parts (
    part_id BIGINT PRIMARY KEY,
    file VARCHAR NOT NULL UNIQUE,
    n_rows INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    dtype VARCHAR NOT NULL,
    run_id BIGINT,
    committed_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS labels (
    label_key VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL, level VARCHAR NOT NULL, expnum BIGINT NOT NULL,
    ccdnum INTEGER, ccdname VARCHAR, flag BIGINT, raw_reason VARCHAR, analyst VARCHAR,
    category VARCHAR, file VARCHAR, line INTEGER, imported_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS failures (
    run_id BIGINT, path VARCHAR, hdu VARCHAR, ccd_id BIGINT, reason VARCHAR, failed_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS runs (
    run_id BIGINT PRIMARY KEY,
    command VARCHAR, args VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
    summary VARCHAR
);
CREATE TABLE IF NOT EXISTS models (
    version VARCHAR PRIMARY KEY,
    created_at TIMESTAMP, settings VARCHAR, n_train BIGINT, n_test BIGINT, n_corpus BIGINT
);
CREATE TABLE IF NOT EXISTS splits (
    version VARCHAR, ccd_id BIGINT, split VARCHAR, category VARCHAR, weight DOUBLE,
    PRIMARY KEY (version, ccd_id)
);
CREATE TABLE IF NOT EXISTS ccd_predictions (
    run_id BIGINT, model_version VARCHAR, ccd_id BIGINT, expnum BIGINT, ccdname VARCHAR,
    label VARCHAR, prob DOUBLE, is_bad BOOLEAN, probs VARCHAR, neighbours VARCHAR,
    PRIMARY KEY (run_id, ccd_id)
);
CREATE TABLE IF NOT EXISTS exposure_predictions (
    run_id BIGINT, model_version VARCHAR, expnum BIGINT, is_bad BOOLEAN, category VARCHAR,
    n_bad INTEGER, n_ccds INTEGER, mean_prob DOUBLE,
    PRIMARY KEY (run_id, expnum)
);
-- Added with the calibrated rule and the unknown flag (stores made before get them on open).
ALTER TABLE ccd_predictions ADD COLUMN IF NOT EXISTS p_bad DOUBLE;
ALTER TABLE ccd_predictions ADD COLUMN IF NOT EXISTS top_bad VARCHAR;
ALTER TABLE ccd_predictions ADD COLUMN IF NOT EXISTS unknown BOOLEAN;
ALTER TABLE ccd_predictions ADD COLUMN IF NOT EXISTS kth_distance DOUBLE;
ALTER TABLE exposure_predictions ADD COLUMN IF NOT EXISTS n_unknown INTEGER;
ALTER TABLE exposure_predictions ADD COLUMN IF NOT EXISTS rule VARCHAR;
-- Analysts' verdicts (`vec labels add`): one per analyst and target, a second one replaces the first.
-- ccdnum 0 = the whole exposure (level 'exposure'); category is one of the 11 or 'good'.
CREATE TABLE IF NOT EXISTS analyst_labels (
    analyst VARCHAR NOT NULL, expnum BIGINT NOT NULL, level VARCHAR NOT NULL, ccdnum INTEGER NOT NULL,
    ccdname VARCHAR, category VARCHAR NOT NULL, note VARCHAR, labelled_at TIMESTAMP,
    PRIMARY KEY (analyst, expnum, ccdnum)
);
-- Exposures `vec nightly` classified: a later night skips them (its list never repeats a line).
CREATE TABLE IF NOT EXISTS nightly_exposures (
    expnum BIGINT PRIMARY KEY, run_id BIGINT, release VARCHAR, is_bad BOOLEAN, category VARCHAR,
    n_unknown INTEGER, list_file VARCHAR, classified_at TIMESTAMP
);
-- Each ingested CCD with each usable label that applies to it: an exposure-level label applies to every
-- CCD of the exposure, a CCD-level one to its CCD. Unmapped (NULL) and 'ignore' labels are left out.
CREATE VIEW IF NOT EXISTS ccd_labels AS
SELECT c.ccd_id, c.expnum, c.ccdname, l.category, l.source, l.level, l.raw_reason
FROM ccds c JOIN labels l
  ON l.expnum = c.expnum AND (l.level = 'exposure' OR l.ccdnum = c.ccdnum)
WHERE l.category IS NOT NULL AND l.category <> 'ignore';
"""

TABLES = (
    "store_meta",
    "exposures",
    "ccds",
    "embedding_parts",
    "labels",
    "failures",
    "runs",
    "models",
    "splits",
    "ccd_predictions",
    "exposure_predictions",
    "analyst_labels",
    "nightly_exposures",
)

_LOCK_MESSAGES = ("lock", "Conflicting lock", "being used by another")


def _is_lock_error(exc: Exception) -> bool:
    return isinstance(exc, (duckdb.IOException, duckdb.ConnectionException)) and any(
        text in str(exc) for text in _LOCK_MESSAGES
    )


def connect(path: Path, *, read_only: bool, timeout_s: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Open the catalog, retrying with back-off while another process holds the file lock."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except Exception as exc:  # duckdb raises several classes for a held lock
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                if _is_lock_error(exc):
                    raise StoreLockedError(
                        f"catalog {path} stayed locked by another process for {timeout_s:.0f} s: {exc}"
                    ) from None
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def open_catalog(
    path: Path, *, read_only: bool, timeout_s: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, read_only=read_only, timeout_s=timeout_s)
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(path: Path, timeout_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short read-write transaction: commit on success, roll back on any error, then release the file."""
    with open_catalog(path, read_only=False, timeout_s=timeout_s) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


def create_schema(path: Path) -> None:
    with open_catalog(path, read_only=False) as con:
        con.execute(SCHEMA)


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """Run ``sql`` and return an Arrow table, or None for a statement without a result set.

    The relational API avoids a copy; its method name differs between DuckDB 1.x and 2.x.
    """
    relation = con.sql(sql, params=params or None)
    if relation is None:  # a statement without a result set
        return None
    method = getattr(relation, "to_arrow_table", None) or relation.arrow
    return method()

"""The store: a directory with the DuckDB catalog, raw embedding parts and model versions.

Commit protocol (see ARCHITECTURE.md): a batch of vectors is durable once its Parquet part is renamed into
place *and* the catalog transaction that names the part and inserts its CCD rows commits. On opening for
writing, files in ``embeddings/`` that the catalog does not name are removed (orphans of a crash), and CCDs
whose part file has gone missing are dropped from the catalog so the next ingest embeds them again.
The set of CCDs still to embed is never stored: it is always "sources minus committed ccd_ids".

The catalog records each CCD's part and row within it (``ccds.part_id``, ``ccds.part_row``), so reading some
ids opens only their parts and decodes only their row groups. ``vec compact`` (compact.py) merges small parts
under the same protocol: new part durable first, then one transaction moves the CCDs to it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

import vecstore
from vecstore import catalog, parts
from vecstore.config import Config
from vecstore.errors import (
    BadInputError,
    InconsistentStoreError,
    NotAStoreError,
    NotFoundError,
    ReadOnlyError,
    StoreLockedError,
    VecError,
)
from vecstore.provenance import Provenance, check_compatible

if TYPE_CHECKING:
    from vecstore.compact import CompactResult

CCD_COLUMNS = (
    "ccd_id",
    "expnum",
    "ccdname",
    "ccdnum",
    "filter",
    "exptime",
    "mjd_obs",
    "airmass",
    "plver",
    "ra",
    "dec",
    "path",
    "hdu",
    "release",
    "ccd_cuts",
    "ebv",
    "naxis1",
    "naxis2",
)
# Columns added after stores were in use: NULL in an older store's rows means "not recorded", not a value.
LATER_CCD_COLUMNS = ("naxis1", "naxis2")
_CCD_TYPES = {
    "ccd_id": pa.int64(),
    "expnum": pa.int64(),
    "ccdnum": pa.int32(),
    "exptime": pa.float64(),
    "mjd_obs": pa.float64(),
    "airmass": pa.float64(),
    "ra": pa.float64(),
    "dec": pa.float64(),
    "ccd_cuts": pa.int64(),
    "ebv": pa.float64(),
    "naxis1": pa.int32(),
    "naxis2": pa.int32(),
}
WRITER_LOCK = "writer.lock"
# Tries of locate-then-read: a `vec compact` committing in between moves CCDs to a new part, once per merge.
_READ_ATTEMPTS = 5


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CommitResult:
    part_id: int | None
    n_added: int
    n_already_committed: int
    added: np.ndarray | None = None  # boolean mask over the batch's rows: the ones this commit stored


@dataclass(frozen=True)
class PartRecord:
    """One committed part as the catalog's ``embedding_parts`` records it."""

    part_id: int
    file: str
    n_rows: int
    run_id: int | None
    dtype: str


@dataclass(frozen=True)
class _Located:
    """Where CCDs are: their ids (sorted), and for each the part_id and the row within that part."""

    ids: np.ndarray
    part_ids: np.ndarray
    rows: np.ndarray
    files: dict[int, str]  # part_id -> file name
    dim: int


@dataclass(frozen=True)
class _Snapshot:
    """The committed parts as (file, n_rows recorded, CCDs in the catalog) and their ids by (part, row)."""

    parts: list[tuple[str, int, int]]
    ids: np.ndarray
    n_ccds: int


def _groups(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(key, positions)`` for each distinct key, positions ascending."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    for positions in np.split(order, cuts):
        if len(positions):
            yield int(keys[positions[0]]), positions


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed by a compaction since it was listed
        return 0


def ccd_rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """CCD metadata rows (dicts with the catalog's column names) as an Arrow table of catalog types."""
    columns = {}
    for name in CCD_COLUMNS:
        values = [row.get(name) for row in rows]
        if name == "hdu":
            values = [None if v is None else str(v) for v in values]
        columns[name] = pa.array(values, type=_CCD_TYPES.get(name, pa.string()))
    return pa.table(columns)


class Store:
    """A vec store directory. Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, *, writable: bool, config: Config | None = None):
        self.path = Path(path)
        self.writable = writable
        self.config = config or Config()
        self.catalog_path = self.path / catalog.CATALOG_FILE
        self.parts_dir = self.path / parts.PARTS_DIR
        self._lock_handle = None
        self._committed: set[int] | None = None
        self._last_part_id: int | None = None
        self._dtype: str | None = None
        self._small_parts: list[PartRecord] | None = None  # parts under the compaction target (maybe_compact)
        self._ccd_columns: frozenset[str] | None = None  # the catalog's ccds columns, fixed once opened

    # ----------------------------------------------------------------- opening and closing
    @classmethod
    def create(cls, path: str | Path, *, config: Config | None = None) -> Store:
        """Make a new store at ``path`` (an empty or missing directory), or open it if it is one."""
        path = Path(path)
        if (path / catalog.CATALOG_FILE).exists():
            return cls.open(path, writable=True, config=config)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise NotAStoreError(
                f"{path} exists and is not an empty directory nor a vec store; choose a new path"
            )
        path.mkdir(parents=True, exist_ok=True)
        (path / parts.PARTS_DIR).mkdir()
        (path / "models").mkdir()
        catalog.create_schema(path / catalog.CATALOG_FILE)
        store = cls(path, writable=True, config=config)
        store._acquire_writer_lock()
        # The on-disk dtype is the store's, fixed at creation: a later run with another config must not
        # write parts of another dtype into it.
        store.set_meta(
            {
                "vec_version": vecstore.__version__,
                "created_at": _now().isoformat(),
                "embedding_dtype": store.config.store.embedding_dtype,
            }
        )
        return store

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False, config: Config | None = None) -> Store:
        path = Path(path)
        if not (path / catalog.CATALOG_FILE).is_file():
            init = ", or create one with `vec init`" if not path.exists() or path.is_dir() else ""
            raise NotAStoreError(
                f"{path} is not a vec store: no {catalog.CATALOG_FILE}; point at an existing store with "
                f"--store DIR or VEC_STORE=DIR (the demo's is demo-store){init}"
            )
        store = cls(path, writable=writable, config=config)
        if writable:
            store._acquire_writer_lock()
            with catalog.transaction(store.catalog_path, store._timeout) as con:
                con.execute(catalog.SCHEMA)  # tables added by newer vec versions
            store.recover()
        store.check_invariants()
        return store

    def close(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _timeout(self) -> float:
        return self.config.store.lock_timeout_s

    def _acquire_writer_lock(self) -> None:
        handle = open(self.path / WRITER_LOCK, "a+")  # noqa: SIM115 - held open for the store's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreLockedError(
                f"store {self.path} is being written by another vec process (pid {holder}); "
                "wait for it to finish or open the store read-only"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def _require_writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError(f"store {self.path} is open read-only; open it with writable=True")

    # ----------------------------------------------------------------- catalog access
    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run a read-only query on the catalog and return an Arrow table."""
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            return catalog.query_arrow(con, sql, params)

    def query_ids(self, ids: np.ndarray, select: str) -> pa.Table:
        """``select`` (a query over ``ccds``) restricted to the ccd_ids in ``ids``, joined inside DuckDB."""
        wanted = pa.table({"wanted_id": pa.array(np.asarray(ids, dtype=np.int64))})
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            con.register("wanted", wanted)
            return catalog.query_arrow(con, f"{select} WHERE ccd_id IN (SELECT wanted_id FROM wanted)")

    def scalar(self, sql: str, params: list | None = None) -> Any:
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            rows = con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def has_table(self, name: str) -> bool:
        """Whether the catalog has table ``name``: a store from before a table was added, opened read-only,
        lacks it (a writable open adds it)."""
        sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
        return bool(self.scalar(sql, [name]))

    def ccd_columns(self) -> frozenset[str]:
        """The columns of this catalog's ``ccds`` table, read once: a store from before a column was added,
        opened read-only, lacks it (a writable open adds it, before this can be asked)."""
        if self._ccd_columns is None:
            sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'ccds'"
            self._ccd_columns = frozenset(self.query(sql).column("column_name").to_pylist())
        return self._ccd_columns

    def ccd_columns_sql(self) -> str:
        """``CCD_COLUMNS`` as a SELECT list over ``ccds``, NULL for those this catalog lacks (read-only)."""
        return ", ".join(c if c in self.ccd_columns() else f"NULL AS {c}" for c in CCD_COLUMNS)

    def ccd_sizes(self, ids: np.ndarray) -> dict[int, tuple[int, int]]:
        """ccd_id -> (NAXIS1, NAXIS2) of the CCDs in ``ids`` whose size the catalog recorded."""
        if "naxis1" not in self.ccd_columns():
            return {}
        table = self.query_ids(ids, "SELECT ccd_id, naxis1, naxis2 FROM ccds").to_pydict()
        return {
            i: (n1, n2)
            for i, n1, n2 in zip(table["ccd_id"], table["naxis1"], table["naxis2"], strict=True)
            if n1 is not None and n2 is not None
        }

    def ccd_size_counts(self) -> Counter[tuple[int, int]]:
        """(NAXIS1, NAXIS2) -> how many of the store's CCDs have that size (those recorded)."""
        if "naxis1" not in self.ccd_columns():
            return Counter()
        sql = (
            "SELECT naxis1, naxis2, count(*) AS n FROM ccds "
            "WHERE naxis1 IS NOT NULL AND naxis2 IS NOT NULL GROUP BY naxis1, naxis2"
        )
        rows = self.query(sql).to_pydict()
        return Counter(
            {(n1, n2): n for n1, n2, n in zip(rows["naxis1"], rows["naxis2"], rows["n"], strict=True)}
        )

    def transaction(self):
        self._require_writable()
        return catalog.transaction(self.catalog_path, self._timeout)

    def meta(self) -> dict[str, str]:
        table = self.query("SELECT key, value FROM store_meta")
        return dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True))

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction() as con:
            for key, value in values.items():
                con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, str(value)])

    # ----------------------------------------------------------------- provenance
    def provenance(self) -> Provenance | None:
        return Provenance.from_meta(self.meta())

    def check_provenance(self, offered: Provenance) -> None:
        """Refuse ``offered`` when the store already holds vectors of another provenance."""
        stored = self.provenance()
        if stored is not None:
            check_compatible(stored, offered, str(self.path))

    def ensure_provenance(self, offered: Provenance) -> None:
        """Record ``offered`` on a store without vectors yet, or check it against the stored one; a vector
        layout the store lacks (a store from before the layout was recorded) is added."""
        stored = self.provenance()
        if stored is None:
            self.set_meta(offered.as_meta())
            return
        check_compatible(stored, offered, str(self.path))
        missing = {k: v for k, v in offered.layout_meta().items() if k not in stored.layout_meta()}
        if missing:
            self.set_meta(missing)

    # ----------------------------------------------------------------- runs and failures
    def start_run(self, command: str, args: dict[str, Any]) -> int:
        with self.transaction() as con:
            run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, NULL, 'running', NULL)",
                [run_id, command, json.dumps(args, default=str), _now()],
            )
        return int(run_id)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any]) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE run_id = ?",
                [_now(), status, json.dumps(summary, default=str), run_id],
            )

    def record_failures(self, run_id: int | None, failures: list[tuple]) -> None:
        """Failure rows ``(path, hdu, ccd_id, reason)``; kept forever so a user can see what was skipped."""
        if not failures:
            return
        with self.transaction() as con:
            con.executemany(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, str(p), None if h is None else str(h), c, r, _now()) for p, h, c, r in failures],
            )

    # ----------------------------------------------------------------- embeddings: writing
    @property
    def embedding_dtype(self) -> str:
        """The dtype of this store's parts: recorded at creation (the config's, for stores made before)."""
        if self._dtype is None:
            self._dtype = self.meta().get("embedding_dtype", self.config.store.embedding_dtype)
        return self._dtype

    def committed_ids(self) -> np.ndarray:
        """Sorted ccd_ids that have a committed embedding."""
        ids = self.query("SELECT ccd_id FROM ccds ORDER BY ccd_id").column("ccd_id").to_numpy()
        return ids.astype(np.int64, copy=False)

    def _committed_set(self) -> set[int]:
        if self._committed is None:
            self._committed = set(self.committed_ids().tolist())
        return self._committed

    def commit_batch(
        self, run_id: int | None, rows: list[dict[str, Any]], vectors: np.ndarray
    ) -> CommitResult:
        """Make one batch durable: its part file, then the catalog rows that name it, in one transaction.

        CCDs already committed (e.g. listed twice, or done by an earlier run) are left out, so a ccd_id
        never has two vectors.
        """
        self._require_writable()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(rows) != len(vectors):
            raise BadInputError(f"commit_batch: {len(rows)} rows but vectors of shape {vectors.shape}")
        ids = np.array([int(r["ccd_id"]) for r in rows], dtype=np.int64)
        committed = self._committed_set()
        keep = np.array([i not in committed for i in ids], dtype=bool)
        _, first = np.unique(ids, return_index=True)  # a duplicate inside the batch keeps its first row
        keep &= np.isin(np.arange(len(ids)), first)
        n_skipped = int((~keep).sum())
        if not keep.any():
            return CommitResult(None, 0, n_skipped, keep)
        added = keep.copy()
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
        ids, vectors = ids[keep], vectors[keep]
        dtype = self.embedding_dtype
        self.parts_dir.mkdir(exist_ok=True)
        part_id = self._next_part_id()
        name = parts.part_file_name(part_id)
        parts.write_part(self.parts_dir, name, ids, vectors, dtype)
        table = ccd_rows_table(rows).append_column("part_row", pa.array(np.arange(len(ids), dtype=np.int32)))
        now = _now()
        with self.transaction() as con:
            con.register("batch", table)
            con.execute(
                "INSERT INTO embedding_parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [part_id, name, len(ids), vectors.shape[1], dtype, run_id, now],
            )
            con.execute(
                "INSERT OR IGNORE INTO exposures SELECT expnum, any_value(filter), any_value(exptime), "
                "any_value(mjd_obs), any_value(airmass), any_value(plver), any_value(ra), any_value(dec), "
                "any_value(release), any_value(path) FROM batch GROUP BY expnum"
            )
            columns = ", ".join(CCD_COLUMNS)
            con.execute(
                f"INSERT INTO ccds ({columns}, part_id, run_id, committed_at, part_row) "
                f"SELECT {columns}, ?, ?, ?, part_row FROM batch",
                [part_id, run_id, now],
            )
            con.unregister("batch")
        committed.update(ids.tolist())
        self._note_new_part(PartRecord(part_id, name, len(ids), run_id, dtype))
        return CommitResult(part_id, len(ids), n_skipped, added)

    def _next_part_id(self) -> int:
        # Only the lock-holding writer allocates part ids, so a counter read once is enough.
        if self._last_part_id is None:
            self._last_part_id = int(self.scalar("SELECT coalesce(max(part_id), 0) FROM embedding_parts"))
        self._last_part_id += 1
        return self._last_part_id

    def replace_parts(self, old: list[PartRecord], ids: np.ndarray, vectors: np.ndarray) -> int:
        """Commit one new part holding exactly the CCDs of the parts ``old``, in their place (compaction).

        The same protocol as :meth:`commit_batch`: the part file is made durable first; then ONE catalog
        transaction names it, moves the CCDs' part_id and part_row to it and un-commits ``old``; the old
        files are removed after. A crash at any moment leaves either the old parts or the new one
        committed, and the other unreferenced (removed by :meth:`recover`). ``vectors`` must be in the
        parts' stored dtype (``old[0].dtype``), so the values stay bitwise the same. Returns the new part_id.
        """
        self._require_writable()
        old_ids = [p.part_id for p in old]
        dtype, run_id = old[0].dtype, old[0].run_id
        part_id = self._next_part_id()
        name = parts.part_file_name(part_id)
        parts.write_part(self.parts_dir, name, ids, vectors, dtype)
        moved = pa.table(
            {"ccd_id": pa.array(ids, pa.int64()), "row": pa.array(np.arange(len(ids), dtype=np.int32))}
        )
        marks = ", ".join("?" * len(old_ids))
        # An error below rolls the transaction back; the new file is then an orphan that recover() removes.
        with self.transaction() as con:
            con.register("moved", moved)
            con.execute(
                "INSERT INTO embedding_parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [part_id, name, len(ids), vectors.shape[1], dtype, run_id, _now()],
            )
            n_moved = con.execute(
                f"UPDATE ccds SET part_id = ?, part_row = moved.row FROM moved "
                f"WHERE ccds.ccd_id = moved.ccd_id AND ccds.part_id IN ({marks})",
                [part_id, *old_ids],
            ).fetchall()[0][0]
            n_left = con.execute(f"SELECT count(*) FROM ccds WHERE part_id IN ({marks})", old_ids).fetchall()
            if n_moved != len(ids) or n_left[0][0]:
                raise InconsistentStoreError(
                    f"store {self.path}: parts {old_ids} and the catalog disagree on their CCDs; nothing was "
                    "changed; run `vec info --verify`"
                )
            con.execute(f"DELETE FROM embedding_parts WHERE part_id IN ({marks})", old_ids)
            con.unregister("moved")
        for part in old:
            (self.parts_dir / part.file).unlink(missing_ok=True)
        parts.fsync_dir(self.parts_dir)
        self._small_parts = None
        return part_id

    # ----------------------------------------------------------------- embeddings: compaction
    def part_records(self) -> list[PartRecord]:
        """Every committed part, in part_id order."""
        table = self.query(
            "SELECT part_id, file, n_rows, run_id, dtype FROM embedding_parts ORDER BY part_id"
        )
        return [PartRecord(**row) for row in table.to_pylist()]

    def _note_new_part(self, part: PartRecord) -> None:
        if self._small_parts is not None and part.n_rows < self.config.store.compact_target_rows:
            self._small_parts.append(part)

    def compact(self, target_rows: int | None = None) -> CompactResult:
        """Merge small parts into parts of up to ``target_rows`` rows (default: the config's); compact.py."""
        from vecstore import compact  # compact imports this module

        return compact.compact(self, target_rows or self.config.store.compact_target_rows)

    def maybe_compact(self) -> CompactResult | None:
        """Compact when that would remove more than ``[store] compact_trigger_parts`` parts, else None.

        Meant for the ingest engine to call after each commit: the small parts are listed from the catalog
        once and then tracked in memory (this process is the only writer), so a call that does nothing costs
        no catalog access.
        """
        from vecstore import compact

        self._require_writable()
        target = self.config.store.compact_target_rows
        if self._small_parts is None:
            self._small_parts = [p for p in self.part_records() if p.n_rows < target]
        groups = compact.plan(self._small_parts, target)
        if sum(len(g) - 1 for g in groups) <= self.config.store.compact_trigger_parts:
            return None
        return compact.compact(self, target, groups)

    # ----------------------------------------------------------------- embeddings: reading
    def committed_parts(self) -> list[tuple[int, str, int]]:
        table = self.query("SELECT part_id, file, n_rows FROM embedding_parts ORDER BY part_id")
        return list(zip(*(table.column(c).to_pylist() for c in ("part_id", "file", "n_rows")), strict=True))

    def load_embeddings(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ccd_ids, vectors float32)`` sorted by ccd_id, each id once; only ``ids`` when given.

        Duplicates in ``ids`` are read once; ids without a committed embedding raise. The catalog says which
        part and row holds each CCD, so only those parts are opened and only their row groups decoded: a
        few CCDs cost about the same in a store of any size. Whole-store work should prefer
        :meth:`iter_embeddings`, which never holds every vector at once.
        """
        wanted = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
        for _ in range(_READ_ATTEMPTS):
            located = self._locate(wanted)
            if wanted is not None and len(located.ids) != len(wanted):
                missing = np.setdiff1d(wanted, located.ids)[:5].tolist()
                raise NotFoundError(f"store {self.path} has no embedding for ccd_id(s) {missing}")
            try:
                return located.ids, self._read_located(located)
            except FileNotFoundError:
                continue  # a `vec compact` replaced a part between locating and reading: locate again
        raise self._missing_part_error()

    def iter_embeddings(self, batch_rows: int = 16_384) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every committed CCD's vector exactly once, as ``(ccd_ids int64 (n,), vectors float32 (n, dim))``.

        For whole-store work (corpus index builds, ``classify --all``, ``info --verify``):

        - a batch holds at most ``batch_rows`` rows, all from one part; parts come in part_id order and rows
          in their stored order, so ids are NOT sorted across (or within) batches: join by id;
        - memory is one batch (48 MB of 768-d float32 at the default size) and one Parquet row group at a
          time, plus the snapshot's ids (8 bytes a CCD): never one copy of every vector;
        - it yields the CCDs committed when the call is made (a snapshot): commits made while iterating are
          not included (compare with :meth:`committed_ids` afterwards); a concurrent ``vec compact`` is
          harmless (a part it removed is read from the part that replaced it);
        - each part is checked against the catalog as it is read (its ids, at the catalog's rows); a
          disagreement raises :class:`VecError`.
        """
        if batch_rows < 1:
            raise BadInputError(f"iter_embeddings: batch_rows must be >= 1, got {batch_rows}")
        yield from self._iter_snapshot(self._snapshot(), batch_rows)

    def _locate(self, wanted: np.ndarray | None) -> _Located:
        """Where the CCDs ``wanted`` (sorted, unique; None = all) are: one catalog query (a connection
        costs ~10 ms, the query a few more), so a small read costs the same in a store of any size."""
        where = "" if wanted is None else " WHERE c.ccd_id IN (SELECT wanted_id FROM wanted)"
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            if wanted is not None:
                con.register("wanted", pa.table({"wanted_id": pa.array(wanted, pa.int64())}))
            found = self._query_rows(
                con,
                "SELECT c.ccd_id, c.part_id, c.part_row, p.file, p.dim "
                f"FROM ccds c JOIN embedding_parts p USING (part_id){where} ORDER BY c.ccd_id",
            )
        part_ids = found.column("part_id").to_numpy().astype(np.int64, copy=False)
        distinct, first = np.unique(part_ids, return_index=True)
        files = found.column("file").take(pa.array(first)).to_pylist()
        return _Located(
            ids=found.column("ccd_id").to_numpy().astype(np.int64, copy=False),
            part_ids=part_ids,
            rows=found.column("part_row").to_numpy().astype(np.int64),
            files=dict(zip(distinct.tolist(), files, strict=True)),
            dim=int(found.column("dim")[0].as_py()) if found.num_rows else self._stored_dim(),
        )

    def _stored_dim(self) -> int:
        """The vectors' dimension where no part is read: the parts', else the provenance's, else 0."""
        dim = self.scalar("SELECT max(dim) FROM embedding_parts")
        return int(dim if dim is not None else self.meta().get("dim", 0))

    def _query_rows(self, con, sql: str) -> pa.Table:
        """Run ``sql``, which reads ``ccds.part_row`` (older stores lack it until opened for writing)."""
        try:
            table = catalog.query_arrow(con, sql)
        except duckdb.BinderException:
            table = None
        if table is None or table.column("part_row").null_count:
            raise InconsistentStoreError(
                f"store {self.path} predates row offsets in the catalog; open it for writing once "
                f"(`vec --store {self.path} init`) to record them"
            )
        return table

    def _read_located(self, located: _Located) -> np.ndarray:
        """The vectors of ``located.ids`` in that order, reading each part once and only its rows needed."""
        out = np.empty((len(located.ids), located.dim), dtype=np.float32)
        for part_id, where in _groups(located.part_ids):
            name = located.files[part_id]
            try:
                ids, vectors = parts.read_rows(self.parts_dir / name, located.rows[where])
            except IndexError:
                raise self._disagree_error(name) from None
            if not np.array_equal(ids, located.ids[where]):
                raise self._disagree_error(name)
            out[where] = vectors
        return out

    def _snapshot(self) -> _Snapshot:
        """The committed parts and, in one array, their CCDs by (part, row), from one catalog view."""
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            table = catalog.query_arrow(
                con,
                "SELECT p.part_id, p.file, p.n_rows, count(c.ccd_id) AS n_ccds FROM embedding_parts p "
                "LEFT JOIN ccds c USING (part_id) GROUP BY ALL ORDER BY p.part_id",
            )
            rows = self._query_rows(
                con,
                "SELECT c.ccd_id, c.part_row FROM ccds c JOIN embedding_parts p USING (part_id) "
                "ORDER BY c.part_id, c.part_row",
            )
            n_ccds = con.execute("SELECT count(*) FROM ccds").fetchall()[0][0]
        return _Snapshot(
            parts=[(r["file"], r["n_rows"], r["n_ccds"]) for r in table.to_pylist()],
            ids=rows.column("ccd_id").to_numpy().astype(np.int64, copy=False),
            n_ccds=int(n_ccds),
        )

    def _iter_snapshot(self, snapshot: _Snapshot, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for name, _, n_ccds in snapshot.parts:
            expected = snapshot.ids[start : start + n_ccds]
            start += n_ccds
            yield from self._iter_part(name, expected, batch_rows)

    def _iter_part(
        self, name: str, expected: np.ndarray, batch_rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One part's batches, checked against ``expected`` (the catalog's ids of the part in row order)."""
        try:
            batches = parts.iter_part(self.parts_dir / name, batch_rows)
        except FileNotFoundError:
            # `vec compact` replaced the part after the snapshot: read its CCDs from where they are now.
            for start in range(0, len(expected), batch_rows):
                yield self.load_embeddings(expected[start : start + batch_rows])
            return
        done = 0
        for ids, vectors in batches:
            if not np.array_equal(ids, expected[done : done + len(ids)]):
                raise self._disagree_error(name)
            done += len(ids)
            yield ids, vectors.astype(np.float32)
        if done != len(expected):
            raise self._disagree_error(name)

    def _disagree_error(self, name: str) -> VecError:
        return VecError(
            f"store {self.path} is inconsistent: part {name} does not hold the CCDs the catalog puts in it "
            "(at the catalog's rows); run `vec info --verify` and report this"
        )

    def _missing_part_error(self) -> VecError:
        return VecError(
            f"store {self.path}: a committed embedding part file is missing from {self.parts_dir}; open the "
            f"store for writing (`vec --store {self.path} init`) to re-queue its CCDs"
        )

    # ----------------------------------------------------------------- crash recovery and invariants
    def recover(self) -> dict[str, int]:
        """Remove orphan part files; re-queue CCDs whose committed part file is missing.

        Orphans are what a crash leaves: a part renamed into place whose commit never happened, a temp file,
        or (during ``vec compact``) the old parts after the transaction that replaced them.
        """
        self._require_writable()
        named = {name: pid for pid, name, _ in self.committed_parts()}
        removed = 0
        for file in parts.list_part_files(self.parts_dir):
            if file.name not in named:
                file.unlink()
                removed += 1
        missing = [pid for name, pid in named.items() if not (self.parts_dir / name).exists()]
        if missing:
            with self.transaction() as con:
                con.execute(
                    "INSERT INTO failures SELECT NULL, path, hdu, ccd_id, "
                    "'embedding part file missing; CCD re-queued', ? FROM ccds WHERE part_id IN "
                    f"({', '.join('?' * len(missing))})",
                    [_now(), *missing],
                )
                for table in ("ccds", "embedding_parts"):
                    con.execute(
                        f"DELETE FROM {table} WHERE part_id IN ({', '.join('?' * len(missing))})", missing
                    )
        filled = self._fill_part_rows()
        self._committed = None
        self._last_part_id = None
        self._small_parts = None
        return {"orphans_removed": removed, "parts_missing": len(missing), "parts_given_rows": filled}

    def _fill_part_rows(self) -> int:
        """Record each CCD's row in its part in stores made before the catalog kept it (from the ids)."""
        table = self.query(
            "SELECT DISTINCT p.part_id, p.file FROM ccds c JOIN embedding_parts p USING (part_id) "
            "WHERE c.part_row IS NULL ORDER BY p.part_id"
        )
        if not table.num_rows:
            return 0
        with self.transaction() as con:
            for part_id, name in zip(
                *(table.column(c).to_pylist() for c in ("part_id", "file")), strict=True
            ):
                ids = parts.read_part_ids(self.parts_dir / name)
                con.register(
                    "rows_of_part", pa.table({"ccd_id": ids, "row": np.arange(len(ids), dtype=np.int32)})
                )
                con.execute(
                    "UPDATE ccds SET part_row = r.row FROM rows_of_part r "
                    "WHERE ccds.ccd_id = r.ccd_id AND ccds.part_id = ?",
                    [part_id],
                )
                con.unregister("rows_of_part")
        return table.num_rows

    def check_invariants(self) -> None:
        """Vector count == catalog count: every committed CCD is in exactly one committed part."""
        # One statement, so both counts come from the same snapshot while a writer commits.
        row = self.query(
            "SELECT (SELECT coalesce(sum(n_rows), 0) FROM embedding_parts) AS v, "
            "(SELECT count(*) FROM ccds) AS c"
        ).to_pylist()[0]
        n_vectors, n_ccds = row["v"], row["c"]
        if n_vectors != n_ccds:
            raise InconsistentStoreError(
                f"store {self.path} is inconsistent: {n_vectors} vectors in committed parts but {n_ccds} "
                "committed CCDs; run `vec info --verify` and report this"
            )

    def verify(self) -> dict[str, int]:
        """A deep check reading every part once (:meth:`iter_embeddings`): each part holds exactly the CCDs
        the catalog puts in it, at the catalog's rows, and every committed CCD is in a committed part."""
        snapshot = self._snapshot()
        for name, n_rows, n_ccds in snapshot.parts:
            if n_rows != n_ccds:
                raise InconsistentStoreError(
                    f"store {self.path}: part {name} is recorded with {n_rows} rows but the catalog puts "
                    f"{n_ccds} CCDs in it"
                )
        if len(snapshot.ids) != snapshot.n_ccds:
            raise InconsistentStoreError(
                f"store {self.path}: {snapshot.n_ccds - len(snapshot.ids)} committed CCDs name no "
                "committed part"
            )
        n_vectors = sum(len(ids) for ids, _ in self._iter_snapshot(snapshot, 16_384))
        return {"vectors": n_vectors, "ccds": snapshot.n_ccds}

    def parts_summary(self) -> dict[str, int]:
        """Committed parts: how many, how many are under the compaction target (and it), rows, bytes."""
        target = self.config.store.compact_target_rows
        records = self.part_records()
        rows = sorted(p.n_rows for p in records)
        return {
            "parts": len(records),
            "small_parts": sum(n < target for n in rows),
            "rows_min": rows[0] if rows else 0,
            "rows_median": rows[len(rows) // 2] if rows else 0,
            "rows_max": rows[-1] if rows else 0,
            "bytes": sum(_file_size(self.parts_dir / p.file) for p in records),
            "target_rows": target,
        }

    # ----------------------------------------------------------------- summary
    def counts(self) -> dict[str, int]:
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in catalog.TABLES}

    def disk_usage(self) -> dict[str, int]:
        def size(p: Path) -> int:
            if p.is_file():
                return p.stat().st_size
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0

        return {
            "catalog": size(self.catalog_path) + size(self.path / (catalog.CATALOG_FILE + ".wal")),
            "embeddings": size(self.parts_dir),
            "models": size(self.path / "models"),
        }

    def models_dir(self) -> Path:
        return self.path / "models"


def remove_store(path: Path) -> None:
    """Delete a store directory (tests and demo re-runs); refuses anything that is not a store."""
    if not (path / catalog.CATALOG_FILE).exists():
        raise NotAStoreError(f"{path} is not a vec store; refusing to delete it")
    shutil.rmtree(path)

"""The store: a directory with the DuckDB catalog, raw embedding parts and model versions.

Commit protocol (see ARCHITECTURE.md): a batch of vectors is durable once its Parquet part is renamed into
place *and* the catalog transaction that names the part and inserts its CCD rows commits. On opening for
writing, files in ``embeddings/`` that the catalog does not name are removed (orphans of a crash), and CCDs
whose part file has gone missing are dropped from the catalog so the next ingest embeds them again.
The set of CCDs still to embed is never stored: it is always "sources minus committed ccd_ids".
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import vecstore
from vecstore import catalog, parts
from vecstore.config import Config
from vecstore.errors import NotAStoreError, StoreLockedError, VecError
from vecstore.provenance import Provenance, check_compatible

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
)
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
}
WRITER_LOCK = "writer.lock"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class CommitResult:
    part_id: int | None
    n_added: int
    n_already_committed: int
    added: np.ndarray | None = None  # boolean mask over the batch's rows: the ones this commit stored


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
            hint = " (run `vec init` to create one)" if not path.exists() or path.is_dir() else ""
            raise NotAStoreError(f"{path} is not a vec store: no {catalog.CATALOG_FILE}{hint}")
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
            raise VecError(f"store {self.path} is open read-only; open it with writable=True")

    # ----------------------------------------------------------------- catalog access
    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run a read-only query on the catalog and return an Arrow table."""
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            return catalog.query_arrow(con, sql, params)

    def scalar(self, sql: str, params: list | None = None) -> Any:
        with catalog.open_catalog(self.catalog_path, read_only=True, timeout_s=self._timeout) as con:
            rows = con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

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
        """Record ``offered`` on a store without vectors yet, or check it against the stored one."""
        stored = self.provenance()
        if stored is None:
            self.set_meta(offered.as_meta())
        else:
            check_compatible(stored, offered, str(self.path))

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

    # ----------------------------------------------------------------- embeddings
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
            raise VecError(f"commit_batch: {len(rows)} rows but vectors of shape {vectors.shape}")
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
        table = ccd_rows_table(rows)
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
            con.execute(
                f"INSERT INTO ccds SELECT {', '.join(CCD_COLUMNS)}, ?, ?, ? FROM batch",
                [part_id, run_id, now],
            )
            con.unregister("batch")
        committed.update(ids.tolist())
        return CommitResult(part_id, len(ids), n_skipped, added)

    def _next_part_id(self) -> int:
        # Only the lock-holding writer allocates part ids, so a counter read once is enough.
        if self._last_part_id is None:
            self._last_part_id = int(self.scalar("SELECT coalesce(max(part_id), 0) FROM embedding_parts"))
        self._last_part_id += 1
        return self._last_part_id

    def committed_parts(self) -> list[tuple[int, str, int]]:
        table = self.query("SELECT part_id, file, n_rows FROM embedding_parts ORDER BY part_id")
        return list(zip(*(table.column(c).to_pylist() for c in ("part_id", "file", "n_rows")), strict=True))

    def load_embeddings(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ccd_ids, vectors float32)`` sorted by ccd_id; only ``ids`` when given (missing ids raise)."""
        chunks_ids, chunks_vec = [], []
        wanted = None if ids is None else np.unique(np.asarray(ids, dtype=np.int64))
        for _, name, _ in self.committed_parts():
            part_ids, vectors = parts.read_part(self.parts_dir / name)
            if wanted is not None:
                mask = np.isin(part_ids, wanted)
                part_ids, vectors = part_ids[mask], vectors[mask]
            chunks_ids.append(part_ids)
            chunks_vec.append(vectors.astype(np.float32))
        if not chunks_ids:
            dim = int(self.meta().get("dim", 0))
            return np.empty(0, np.int64), np.empty((0, dim), np.float32)
        all_ids = np.concatenate(chunks_ids)
        all_vec = np.concatenate(chunks_vec)
        order = np.argsort(all_ids, kind="stable")
        all_ids, all_vec = all_ids[order], all_vec[order]
        if wanted is not None and len(all_ids) != len(wanted):
            missing = np.setdiff1d(wanted, all_ids)[:5].tolist()
            raise VecError(f"store {self.path} has no embedding for ccd_id(s) {missing}")
        return all_ids, all_vec

    # ----------------------------------------------------------------- crash recovery and invariants
    def recover(self) -> dict[str, int]:
        """Remove orphan part files; re-queue CCDs whose committed part file is missing."""
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
        self._committed = None
        self._last_part_id = None
        return {"orphans_removed": removed, "parts_missing": len(missing)}

    def check_invariants(self) -> None:
        """Vector count == catalog count: every committed CCD is in exactly one committed part."""
        # One statement, so both counts come from the same snapshot while a writer commits.
        row = self.query(
            "SELECT (SELECT coalesce(sum(n_rows), 0) FROM embedding_parts) AS v, "
            "(SELECT count(*) FROM ccds) AS c"
        ).to_pylist()[0]
        n_vectors, n_ccds = row["v"], row["c"]
        if n_vectors != n_ccds:
            raise VecError(
                f"store {self.path} is inconsistent: {n_vectors} vectors in committed parts but {n_ccds} "
                "committed CCDs; run `vec info --verify` and report this"
            )

    def verify(self) -> dict[str, int]:
        """A deep check reading every part: ids in parts == ids in the catalog, each exactly once."""
        part_ids, _ = self.load_embeddings()
        catalog_ids = self.committed_ids()
        if len(np.unique(part_ids)) != len(part_ids):
            raise VecError(f"store {self.path}: a ccd_id appears in more than one part")
        if not np.array_equal(np.sort(part_ids), catalog_ids):
            raise VecError(f"store {self.path}: ccd_ids in parts differ from the catalog's")
        return {"vectors": len(part_ids), "ccds": len(catalog_ids)}

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

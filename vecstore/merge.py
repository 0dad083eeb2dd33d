"""Fold stores built separately (e.g. one per node without a shared file system) into one.

``merge_stores(dest, sources)`` copies into ``dest`` (created if missing):

* **CCDs and vectors** through ``dest.commit_batch`` in chunks, so the commit protocol holds and a merge
  killed at any moment is resumed by running it again: ids already in ``dest`` are skipped. Vectors are
  written in ``dest``'s embedding dtype; when ``dest`` and the sources share a dtype they are copied bit
  for bit. ``exposures`` rows come along with the CCDs.
* **labels** with ``INSERT OR IGNORE`` by ``label_key`` (a hash of the label's content): the first copy
  of a label wins, so a label whose category was mapped differently in two stores keeps ``dest``'s.
* **runs**, renumbered after ``dest``'s largest run id in source order, since every store counts its
  runs from 1. A copied run's ``args`` JSON gains ``merged_from`` = ``{store, store_created_at, run_id}``
  (the source's path, creation time and original id); a re-merge recognises a run by (store_created_at,
  run_id, started_at) and does not copy it twice. CCDs and failures point at the renumbered run.
  The merge itself is a run (``command = 'merge'``) of ``dest``.
* **failures**, with renumbered run ids, each row copied once (a re-merge adds none).
* **analysts' verdicts** (``analyst_labels``), one per analyst and target as in one store: a verdict
  ``dest`` lacks is added, one ``dest`` has is replaced only by a later one (``labelled_at``), as a second
  ``vec labels add`` would; a re-merge changes nothing.

The provenance and the vector layout (``feature_names``, ``blocks``) come along with the vectors, so a
merged hybrid store balances its blocks and a merged ``qa`` store has its ``features`` view.

Not copied: models, splits, predictions and the nightly bookkeeping, which are derived from the vectors
and labels; train again on the merged store.

Refusals, before anything is written:

* stores whose vectors have different provenance (embedder, preset, dim, weights): ``ProvenanceError``
  naming both stores;
* a ccd_id held by two stores (``dest`` and a source, or two sources) with different vectors or
  catalog rows: ``VecError`` naming the ccd_id and both stores. Vectors are compared exactly after both are
  cast to ``dest``'s embedding dtype (so with a float16 ``dest``, float32 sources that differ by less than
  float16 rounding count as equal; that rounding is the only tolerance). Catalog rows are compared on every
  CCD column except the bookkeeping ones (part, run, commit time); a CCD size an older store did not
  record (NULL ``naxis1``/``naxis2``) matches any. Identical duplicates are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecstore import catalog, parts
from vecstore.config import Config
from vecstore.errors import (
    BadInputError,
    ConflictError,
    InconsistentStoreError,
    NotFoundError,
    ProvenanceError,
)
from vecstore.provenance import Provenance
from vecstore.store import LATER_CCD_COLUMNS, Store

COMPARE_CHUNK_IDS = 65536  # shared ids compared at a time, to bound memory on large re-merges

_FAILURE_COLUMNS = ("run_id", "path", "hdu", "ccd_id", "reason", "failed_at")
_RUN_COLUMNS = ("run_id", "command", "args", "started_at", "finished_at", "status", "summary")


@dataclass
class MergeSummary:
    dest: Path
    sources: list[Path]
    run_id: int  # the merge's own run in dest
    ccds_added: int = 0
    ccds_skipped: int = 0  # already in dest (identical), or an identical duplicate in an earlier source
    labels_added: int = 0
    analyst_labels_added: int = 0
    runs_added: int = 0
    failures_added: int = 0
    run_ids: dict[str, dict[int, int]] = field(default_factory=dict)  # source -> {old run id: dest run id}

    def describe(self) -> str:
        return (
            f"merged {len(self.sources)} store(s) into {self.dest}: {self.ccds_added:,} CCDs added, "
            f"{self.ccds_skipped:,} already there, {self.labels_added:,} labels, "
            f"{self.analyst_labels_added:,} analysts' verdicts, {self.runs_added:,} runs, "
            f"{self.failures_added:,} failures (merge run {self.run_id})"
        )


def merge_stores(
    dest: str | Path,
    sources: list[str | Path],
    *,
    config: Config | None = None,
    chunk_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MergeSummary:
    """Fold the stores at ``sources`` into the store at ``dest`` (created if missing); see module doc.

    ``config`` is ``dest``'s (its embedding dtype and lock timeout); sources are opened read-only.
    ``chunk_rows``: CCDs per commit into ``dest`` (default ``store.merge_chunk_rows``).
    ``progress(done, total)`` counts source CCDs.
    """
    dest, source_paths = Path(dest), [Path(s) for s in sources]
    _refuse_self_merge(dest, source_paths)
    opened = [Store.open(path, writable=False, config=config) for path in source_paths]
    try:
        dest_exists = (dest / catalog.CATALOG_FILE).exists()
        if not dest_exists:  # check before creating, so a refused merge leaves no empty store behind
            provenance = _check_mergeable(opened, (config or Config()).store.embedding_dtype)
        with Store.create(dest, config=config) as target:
            if dest_exists:
                provenance = _check_mergeable([target, *opened], target.embedding_dtype)
            if provenance is not None:
                target.ensure_provenance(provenance)
            return _copy_all(target, opened, chunk_rows or target.config.store.merge_chunk_rows, progress)
    finally:
        for store in opened:
            store.close()


def _refuse_self_merge(dest: Path, sources: list[Path]) -> None:
    if not sources:
        raise BadInputError("vec merge needs at least one source store")
    resolved = [s.resolve() for s in sources]
    if dest.resolve() in resolved:
        raise BadInputError(f"cannot merge store {dest} into itself; give a different destination")
    if len(set(resolved)) != len(resolved):
        raise BadInputError("a source store is listed twice")


# ----------------------------------------------------------------------------------------------- checks
def _common_provenance(stores: list[Store]) -> Provenance | None:
    """The provenance every store with vectors shares, with the vector layout any of them knows;
    ProvenanceError naming two that differ."""
    first: Store | None = None
    common: Provenance | None = None
    for store in stores:
        offered = store.provenance()
        if offered is None:
            continue
        if common is None:
            first, common = store, offered
        elif not offered.same_vectors(common):
            raise ProvenanceError(
                f"cannot merge: store {first.path} holds vectors from {common.describe()} but store "
                f"{store.path} holds vectors from {offered.describe()}; only stores built with the same "
                "embedder, preset and weights can be merged"
            )
        else:
            common = common.with_layout_of(offered)
    return common


def _check_mergeable(stores: list[Store], dest_dtype: str) -> Provenance | None:
    """Refuse stores that cannot be merged (see module doc); returns their common provenance."""
    provenance = _common_provenance(stores)
    _check_duplicates_agree(stores, dest_dtype)
    return provenance


def _check_duplicates_agree(holders: list[Store], dtype: str) -> None:
    """Every ccd_id held by two stores must have the same vector (as ``dtype``) and catalog row in both."""
    held = [store.committed_ids() for store in holders]
    for later in range(1, len(holders)):
        remaining = held[later]
        for earlier in range(later):
            shared = np.intersect1d(remaining, held[earlier], assume_unique=True)
            if len(shared):
                _compare_shared(holders[earlier], holders[later], shared, dtype)
                remaining = np.setdiff1d(remaining, shared, assume_unique=True)


def _compare_shared(first: Store, second: Store, shared: np.ndarray, dtype: str) -> None:
    for start in range(0, len(shared), COMPARE_CHUNK_IDS):
        ids = shared[start : start + COMPARE_CHUNK_IDS]
        _compare_vectors(first, second, ids, dtype)
        _compare_rows(first, second, ids)


def _compare_vectors(first: Store, second: Store, ids: np.ndarray, dtype: str) -> None:
    a = _as_stored(vectors_by_id(first, ids), dtype)
    b = _as_stored(vectors_by_id(second, ids), dtype)
    same = np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)
    if not same.all():
        ccd_id = int(ids[np.argmin(same)])
        raise ConflictError(
            f"cannot merge: ccd_id {ccd_id} has different vectors in store {first.path} and store "
            f"{second.path} (compared as {dtype}); remove it from one of them or re-embed it in one store"
        )


def _as_stored(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """Vectors as ``dest`` would store them, read back as float32."""
    return vectors.astype(parts.DTYPES[dtype]).astype(np.float32)


def _compare_rows(first: Store, second: Store, ids: np.ndarray) -> None:
    a, b = ccd_rows_by_id(first, ids), ccd_rows_by_id(second, ids)
    for row_a, row_b in zip(a, b, strict=True):
        differing = sorted(k for k in row_a if not _same_value(row_a[k], row_b[k], k))
        if differing:
            raise ConflictError(
                f"cannot merge: ccd_id {row_a['ccd_id']} has different catalog rows in store {first.path} "
                f"and store {second.path} (columns {differing}: {[row_a[k] for k in differing]} vs "
                f"{[row_b[k] for k in differing]})"
            )


def _same_value(a: Any, b: Any, column: str = "") -> bool:
    """Equality of catalog values, with NaN equal to NaN (a header value both stores could not read) and
    NULL equal to anything in a column older stores did not record (``LATER_CCD_COLUMNS``)."""
    if column in LATER_CCD_COLUMNS and (a is None or b is None):
        return True
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


# ----------------------------------------------------------------------------------------------- reading
def vectors_by_id(store: Store, ids: np.ndarray) -> np.ndarray:
    """Vectors of ``ids`` (sorted, all committed) in that order, reading only the parts that hold them."""
    located = store.query_ids(ids, "SELECT ccd_id, file FROM ccds JOIN embedding_parts USING (part_id)")
    found_ids, vectors = [], []
    for name in sorted(set(located.column("file").to_pylist())):
        part_ids, part_vectors = parts.read_part(store.parts_dir / name)
        keep = np.isin(part_ids, ids)
        found_ids.append(part_ids[keep])
        vectors.append(part_vectors[keep].astype(np.float32))
    all_ids = np.concatenate(found_ids) if found_ids else np.empty(0, np.int64)
    order = np.argsort(all_ids, kind="stable")
    if not np.array_equal(all_ids[order], ids):
        raise NotFoundError(f"store {store.path} has no embedding for some of ccd_ids {ids[:5].tolist()}...")
    return np.concatenate(vectors)[order]


def ccd_rows_by_id(store: Store, ids: np.ndarray) -> list[dict[str, Any]]:
    """Catalog rows (CCD columns only) of ``ids``, sorted by ccd_id."""
    table = store.query_ids(ids, f"SELECT {store.ccd_columns_sql()} FROM ccds")
    return table.sort_by("ccd_id").to_pylist()


# ----------------------------------------------------------------------------------------------- copying
def _copy_all(
    dest: Store, sources: list[Store], chunk_rows: int, progress: Callable[[int, int], None] | None
) -> MergeSummary:
    run_id = dest.start_run("merge", {"sources": [str(s.path) for s in sources]})
    summary = MergeSummary(dest=dest.path, sources=[s.path for s in sources], run_id=run_id)
    total = sum(int(s.scalar("SELECT count(*) FROM ccds")) for s in sources)
    status = "interrupted"
    try:
        done = 0
        for source in sources:
            run_map = _copy_bookkeeping(dest, source, summary)
            summary.run_ids[str(source.path)] = run_map
            for added, skipped in _copy_ccds(dest, source, run_map, chunk_rows):
                summary.ccds_added += added
                summary.ccds_skipped += skipped
                done += added + skipped
                if progress:
                    progress(done, total)
        status = "ok"
    finally:
        dest.finish_run(
            run_id,
            status,
            {
                "ccds_added": summary.ccds_added,
                "ccds_skipped": summary.ccds_skipped,
                "labels_added": summary.labels_added,
                "analyst_labels_added": summary.analyst_labels_added,
                "runs_added": summary.runs_added,
                "failures_added": summary.failures_added,
            },
        )
    return summary


def _copy_bookkeeping(dest: Store, source: Store, summary: MergeSummary) -> dict[int, int]:
    """Runs, failures and labels of ``source`` in one transaction; returns {source run id: dest run id}.

    Done before the CCDs so that a CCD never points at a run that is not there yet.
    """
    origin = source.meta().get("created_at", "")
    source_runs = source.query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY run_id").to_pylist()
    failures = source.query(f"SELECT {', '.join(_FAILURE_COLUMNS)} FROM failures").to_pylist()
    labels = source.query("SELECT * FROM labels")
    verdicts = _analyst_labels(source)
    with dest.transaction() as con:
        known = _merged_runs(con)
        next_id = con.execute("SELECT coalesce(max(run_id), 0) FROM runs").fetchall()[0][0] + 1
        run_map: dict[int, int] = {}
        for run in source_runs:
            key = (origin, run["run_id"], _iso(run["started_at"]))
            if key not in known:
                con.execute(
                    f"INSERT INTO runs VALUES ({', '.join('?' * len(_RUN_COLUMNS))})",
                    [next_id, *_copied_run(run, source, origin)],
                )
                known[key] = next_id
                next_id += 1
                summary.runs_added += 1
            run_map[run["run_id"]] = known[key]
        summary.failures_added += _insert_failures(con, failures, run_map)
        summary.labels_added += _insert_labels(con, labels)
        summary.analyst_labels_added += _insert_analyst_labels(con, verdicts)
    return run_map


def _analyst_labels(source: Store) -> pa.Table | None:
    """The source's analysts' verdicts; None for a store from before ``vec labels add`` (opened read-only,
    its catalog never gained the table)."""
    return source.query("SELECT * FROM analyst_labels") if source.has_table("analyst_labels") else None


def _insert_analyst_labels(con, verdicts: pa.Table | None) -> int:
    """Verdicts ``dest`` lacks, or later than its own for the same analyst and target; how many."""
    if verdicts is None or verdicts.num_rows == 0:
        return 0
    con.register("incoming_verdicts", verdicts)
    try:
        newer = (
            "FROM incoming_verdicts i LEFT JOIN analyst_labels d USING (analyst, expnum, ccdnum) "
            "WHERE d.analyst IS NULL OR i.labelled_at > d.labelled_at"
        )
        n = con.execute(f"SELECT count(*) {newer}").fetchall()[0][0]
        columns = ", ".join(f"i.{c}" for c in verdicts.column_names)
        con.execute(f"INSERT OR REPLACE INTO analyst_labels SELECT {columns} {newer}")
        return int(n)
    finally:
        con.unregister("incoming_verdicts")


def _merged_runs(con) -> dict[tuple[str, int, str], int]:
    """Runs of ``dest`` copied by earlier merges, by (source created_at, source run id, started_at)."""
    known = {}
    for run_id, args, started_at in con.execute("SELECT run_id, args, started_at FROM runs").fetchall():
        origin = _json_dict(args).get("merged_from")
        if isinstance(origin, dict):
            known[(origin.get("store_created_at", ""), origin.get("run_id"), _iso(started_at))] = run_id
    return known


def _copied_run(run: dict[str, Any], source: Store, origin: str) -> list[Any]:
    """A source run's columns after ``run_id``, its args marked with where it came from."""
    args = _json_dict(run["args"])
    merged_from = {"store": str(source.path), "store_created_at": origin, "run_id": run["run_id"]}
    if "merged_from" in args:  # a run that an earlier merge brought into the source
        merged_from["previous"] = args["merged_from"]
    args = {**args, "merged_from": merged_from}
    return [
        run["command"],
        json.dumps(args, default=str),
        run["started_at"],
        run["finished_at"],
        run["status"],
        run["summary"],
    ]


def _json_dict(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"args": text}
    return value if isinstance(value, dict) else {"args": value}


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _insert_failures(con, failures: list[dict[str, Any]], run_map: dict[int, int]) -> int:
    """Failure rows not already in ``dest`` (same content after renumbering); returns how many."""
    if not failures:
        return 0
    renumbered = [
        {**f, "run_id": None if f["run_id"] is None else run_map.get(f["run_id"])} for f in failures
    ]
    incoming = pa.Table.from_pylist(renumbered).select(list(_FAILURE_COLUMNS))
    con.register("incoming_failures", incoming)
    try:
        before = con.execute("SELECT count(*) FROM failures").fetchall()[0][0]
        matches = " AND ".join(f"f.{c} IS NOT DISTINCT FROM i.{c}" for c in _FAILURE_COLUMNS)
        con.execute(
            f"INSERT INTO failures SELECT {', '.join(_FAILURE_COLUMNS)} FROM incoming_failures i "
            f"WHERE NOT EXISTS (SELECT 1 FROM failures f WHERE {matches})"
        )
        return con.execute("SELECT count(*) FROM failures").fetchall()[0][0] - before
    finally:
        con.unregister("incoming_failures")


def _insert_labels(con, labels: pa.Table) -> int:
    if labels.num_rows == 0:
        return 0
    con.register("incoming_labels", labels)
    try:
        before = con.execute("SELECT count(*) FROM labels").fetchall()[0][0]
        columns = ", ".join(labels.column_names)
        con.execute(f"INSERT OR IGNORE INTO labels ({columns}) SELECT {columns} FROM incoming_labels")
        return con.execute("SELECT count(*) FROM labels").fetchall()[0][0] - before
    finally:
        con.unregister("incoming_labels")


def _copy_ccds(
    dest: Store, source: Store, run_map: dict[int, int], chunk_rows: int
) -> Iterator[tuple[int, int]]:
    """Commit ``source``'s CCDs into ``dest`` in chunks of one run; yields (added, skipped) per chunk.

    ``commit_batch`` leaves out ids ``dest`` already has (checked identical beforehand), which is what
    makes an interrupted merge resumable.
    """
    for run_id, rows, vectors in _source_chunks(source, chunk_rows):
        result = dest.commit_batch(None if run_id is None else run_map.get(run_id), rows, vectors)
        yield result.n_added, result.n_already_committed


def _source_chunks(source: Store, chunk_rows: int) -> Iterator[tuple[int | None, list[dict], np.ndarray]]:
    """(run id, rows, vectors) of ``source``, part after part, grouped into chunks of one run."""
    pending_run, pending_rows, pending_vectors = None, [], []
    for part_id, name, run_id in _parts_with_runs(source):
        if pending_rows and (run_id != pending_run or len(pending_rows) >= chunk_rows):
            yield pending_run, pending_rows, np.concatenate(pending_vectors)
            pending_rows, pending_vectors = [], []
        pending_run = run_id
        rows, vectors = _read_part_with_rows(source, part_id, name)
        pending_rows += rows
        pending_vectors.append(vectors)
    if pending_rows:
        yield pending_run, pending_rows, np.concatenate(pending_vectors)


def _read_part_with_rows(source: Store, part_id: int, name: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One part's catalog rows and vectors, both in ccd_id order."""
    part_ids, vectors = parts.read_part(source.parts_dir / name)
    order = np.argsort(part_ids, kind="stable")
    part_ids, vectors = part_ids[order], vectors[order]
    rows = source.query(
        f"SELECT {source.ccd_columns_sql()} FROM ccds WHERE part_id = ? ORDER BY ccd_id", [part_id]
    ).to_pylist()
    if [row["ccd_id"] for row in rows] != part_ids.tolist():
        raise InconsistentStoreError(
            f"store {source.path}: part {name} and the catalog disagree on its ccd_ids; "
            "run `vec info --verify` on it before merging"
        )
    return rows, vectors


def _parts_with_runs(source: Store) -> list[tuple[int, str, int | None]]:
    table = source.query("SELECT part_id, file, run_id FROM embedding_parts ORDER BY part_id")
    return list(zip(*(table.column(c).to_pylist() for c in ("part_id", "file", "run_id")), strict=True))

"""Raw embeddings on disk: immutable Parquet parts of (ccd_id, embedding).

A part is written under a temporary name, flushed to disk and renamed into place; only then does the
catalog transaction that names it commit. A part the catalog does not name is an orphan of a crash.

Parts are written in row groups of at most ``ROW_GROUP_ROWS`` rows, and the catalog records each CCD's row
within its part, so reading a few CCDs decodes only the row groups that hold them (:func:`read_rows`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecstore.errors import ConfigError

PARTS_DIR = "embeddings"
TMP_SUFFIX = ".tmp"
DTYPES = {"float16": np.float16, "float32": np.float32}
# Rows per Parquet row group: the unit a selective read decodes. 256 rows of 768-d float16 are 384 KB, so a
# few CCDs out of a large (compacted) part cost about a millisecond, and the footer stays small.
ROW_GROUP_ROWS = 256


def part_file_name(part_id: int) -> str:
    # The random suffix keeps a re-used part_id (after a crash before commit) from meeting its orphan.
    return f"part-{part_id:08d}-{uuid.uuid4().hex[:8]}.parquet"


def fsync_dir(directory: Path) -> None:
    """Make renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_part(directory: Path, name: str, ccd_ids: np.ndarray, vectors: np.ndarray, dtype: str) -> Path:
    """Write a part durably: temp file, fsync, rename, fsync of the directory."""
    if dtype not in DTYPES:
        raise ConfigError(f"embedding dtype {dtype!r} not in {sorted(DTYPES)}")
    values = np.ascontiguousarray(vectors, dtype=DTYPES[dtype])
    n, dim = values.shape
    flat = pa.array(values.reshape(-1), type=pa.float16() if dtype == "float16" else pa.float32())
    table = pa.table(
        {
            "ccd_id": pa.array(np.asarray(ccd_ids, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    final = directory / name
    tmp = directory / (name + TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        # No dictionary encoding: ids are unique and embedding values nearly so; the writer's attempt at a
        # dictionary (and its fallback) made reads 2.5x slower for no size gain.
        pq.write_table(table, handle, compression="zstd", row_group_size=ROW_GROUP_ROWS, use_dictionary=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def _columns(table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """``(ccd_ids, vectors)`` of a table or batch of a part, vectors in the stored dtype."""
    column = table.column("embedding")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    ids = np.asarray(table.column("ccd_id").to_numpy(), dtype=np.int64)
    return ids, flat.reshape(-1, column.type.list_size)


def read_part(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ccd_ids int64 (n,), vectors (n, dim))`` in the part's stored dtype."""
    return _columns(pq.read_table(path))


def read_rows(path: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ccd_ids, vectors)`` of the part's rows ``rows`` (0-based), in that order, stored dtype.

    Only the row groups that hold ``rows`` are read and decoded.
    """
    rows = np.asarray(rows, dtype=np.int64)
    part = pq.ParquetFile(path)
    sizes = np.array([part.metadata.row_group(g).num_rows for g in range(part.num_row_groups)], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if len(rows) and (rows.min() < 0 or rows.max() >= starts[-1]):
        raise IndexError(f"{path}: rows outside 0..{starts[-1] - 1}")
    group_of_row = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(group_of_row)
    ids, vectors = _columns(part.read_row_groups(groups.tolist()))
    # Where each group read begins in their concatenation: a row's place there is that plus its offset.
    begins = np.zeros(len(sizes), np.int64)
    begins[groups] = np.cumsum(sizes[groups]) - sizes[groups]
    local = begins[group_of_row] + rows - starts[group_of_row]
    return ids[local], vectors[local]


def iter_part(path: Path, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The part's ``(ccd_ids, vectors)`` in stored row order, at most ``batch_rows`` rows at a time.

    The file is opened by the call (a missing file raises then, before any batch) and stays open to the
    end, so a part that `vec compact` unlinks meanwhile stays readable.
    """
    part = pq.ParquetFile(path)  # not a generator function: a missing file raises here, at the call
    return (_columns(batch) for batch in part.iter_batches(batch_size=batch_rows))


def read_part_ids(path: Path) -> np.ndarray:
    """The part's ccd_ids in stored row order (the vectors are not read)."""
    return np.asarray(pq.read_table(path, columns=["ccd_id"]).column("ccd_id").to_numpy(), np.int64)


def part_row_count(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def list_part_files(directory: Path) -> list[Path]:
    """Every file in the parts directory, committed or not (temp files included)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file())

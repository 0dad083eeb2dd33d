"""Raw embeddings on disk: immutable Parquet parts of (ccd_id, embedding).

A part is written under a temporary name, flushed to disk and renamed into place; only then does the
catalog transaction that names it commit. A part the catalog does not name is an orphan of a crash.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PARTS_DIR = "embeddings"
TMP_SUFFIX = ".tmp"
DTYPES = {"float16": np.float16, "float32": np.float32}


def part_file_name(part_id: int) -> str:
    # The random suffix keeps a re-used part_id (after a crash before commit) from meeting its orphan.
    return f"part-{part_id:08d}-{uuid.uuid4().hex[:8]}.parquet"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_part(directory: Path, name: str, ccd_ids: np.ndarray, vectors: np.ndarray, dtype: str) -> Path:
    """Write a part durably: temp file, fsync, rename, fsync of the directory."""
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype {dtype!r} not in {sorted(DTYPES)}")
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
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def read_part(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ccd_ids int64 (n,), vectors (n, dim))`` in the part's stored dtype."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return table.column("ccd_id").to_numpy(), flat.reshape(-1, dim)


def part_row_count(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def list_part_files(directory: Path) -> list[Path]:
    """Every file in the parts directory, committed or not (temp files included)."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file())

"""FAISS indexes with the L1 metric, keyed by ``ccd_id``.

Only index types that FAISS computes correctly with METRIC_L1 are allowed: ``Flat``, ``HNSW<M>[,Flat]``
and ``IVF<n>,Flat``. Scalar and product quantisers (SQ, PQ, ...) either return wrong distances or, for
``HNSW32,SQ8``, abort the process; they are refused here before FAISS sees the string.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from vecstore.errors import BadInputError, NotFoundError, TrainingError
from vecstore.index_spec import validate_spec

__all__ = ["validate_spec"]  # re-exported: the spec rules live in index_spec (no faiss needed to check)


def build_index(vectors: np.ndarray, ids: np.ndarray, spec: str, *, ef_construction: int = 80) -> faiss.Index:
    """An ``IndexIDMap2`` over a METRIC_L1 index of ``spec`` holding ``vectors`` under ``ids``."""
    spec = validate_spec(spec)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(ids):
        raise BadInputError(f"build_index: {len(ids)} ids for vectors of shape {x.shape}")
    inner = faiss.index_factory(x.shape[1], spec, faiss.METRIC_L1)
    hnsw = _hnsw_of(inner)
    if hnsw is not None:
        hnsw.efConstruction = ef_construction
    index = faiss.IndexIDMap2(inner)
    if not index.is_trained:
        if len(x) < 1:
            raise TrainingError(f"index {spec} needs training vectors")
        index.train(x)
    if len(x):
        index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
    return index


def _hnsw_of(index: faiss.Index):
    inner = faiss.downcast_index(index)
    return getattr(inner, "hnsw", None)


def set_search_params(index: faiss.Index, ef_search: int | None = None, nprobe: int | None = None) -> None:
    """Search breadth: ``efSearch`` for HNSW, ``nprobe`` (lists visited) for IVF; each only when given."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
    hnsw = getattr(inner, "hnsw", None)
    if hnsw is not None and ef_search is not None:
        hnsw.efSearch = ef_search
    if nprobe is not None and hasattr(inner, "nprobe"):
        inner.nprobe = nprobe


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))


def index_ids(index: faiss.Index) -> np.ndarray:
    """The ccd_ids an ``IndexIDMap2`` holds."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def index_size(index: faiss.Index) -> int:
    return int(index.ntotal)


class FaissSearcher:
    """A FAISS index behind the same two members as :class:`vecstore.exact_l1.ExactL1Searcher`."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @property
    def size(self) -> int:
        return index_size(self.index)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self.index, queries, k)


def flat_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) held by an ``IndexIDMap2`` over a flat index, in insertion order."""
    inner = faiss.downcast_index(index.index)
    return index_ids(index), inner.reconstruct_n(0, inner.ntotal).astype(np.float32)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, ccd_ids)`` each (n, k); missing neighbours (k > ntotal) have id -1."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    return index.search(q, k)


def save_index(index: faiss.Index, path: Path) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_index(path: Path) -> faiss.Index:
    if not path.exists():
        raise NotFoundError(f"index file {path} does not exist")
    index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap2):
        index = faiss.downcast_index(index)
    return index

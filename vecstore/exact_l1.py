"""Exact L1 k-nearest neighbours on the CPU cores: bounding boxes over k-means cells, SIMD inside a cell.

Classification must stay exact (the same neighbours as scikit-learn's KD-tree, up to distance ties), but
FAISS's ``IndexFlat(METRIC_L1)`` is a generic loop no faster than the KD-tree. This index:

1. sorts the reference vectors into ~sqrt(n)/2 k-means cells and keeps each cell's bounding box;
2. per query, the L1 distance to a box, sum_c max(0, lo_c - q_c, q_c - hi_c), is a lower bound on the
   distance to every vector inside it, so cells are visited nearest box first and the search stops when
   the next box is farther than the current k-th neighbour: exact, not approximate;
3. inside a cell, distances are computed dimension by dimension over the cell's contiguous columns,
   which the compiler vectorises (numba, ``fastmath`` only reorders nothing across dimensions: every
   distance is the same float64 sum, in the same order, as scikit-learn's);
4. queries run in parallel over the cores.

Ties: equal distances are ordered by reference row (the order of the vectors given to ``build``),
lowest first, whichever cells they fall in; vec's reference sets are sorted by ccd_id, so by id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange


@njit(fastmath=True, cache=True)
def _cell_distances(columns, start, stop, query, out):  # pragma: no cover - compiled
    width = stop - start
    for j in range(width):
        out[j] = 0.0
    for c in range(columns.shape[0]):
        value = query[c]
        row = columns[c]
        for j in range(width):
            out[j] += abs(np.float64(row[start + j]) - value)


@njit(cache=True)
def _box_bounds(lo, hi, query, out):  # pragma: no cover - compiled
    for g in range(lo.shape[0]):
        total = 0.0
        for c in range(lo.shape[1]):
            value = query[c]
            if value < lo[g, c]:
                total += lo[g, c] - value
            elif value > hi[g, c]:
                total += value - hi[g, c]
        out[g] = total


@njit(cache=True)
def _insert(best_d, best_i, distance, row):  # pragma: no cover - compiled
    """Insert into the (distance, row)-sorted lists if it belongs there."""
    k = best_d.shape[0]
    last = k - 1
    if distance > best_d[last] or (distance == best_d[last] and row > best_i[last]):
        return
    u = last
    while u > 0 and (best_d[u - 1] > distance or (best_d[u - 1] == distance and best_i[u - 1] > row)):
        best_d[u] = best_d[u - 1]
        best_i[u] = best_i[u - 1]
        u -= 1
    best_d[u] = distance
    best_i[u] = row


@njit(parallel=True, cache=True)
def _search(columns, starts, rows, lo, hi, queries, k, widest, out_d, out_i):  # pragma: no cover - compiled
    n_cells = lo.shape[0]
    for qi in prange(queries.shape[0]):
        query = queries[qi]
        bounds = np.empty(n_cells)
        _box_bounds(lo, hi, query, bounds)
        order = np.argsort(bounds)
        best_d = np.full(k, np.inf)
        best_i = np.full(k, np.iinfo(np.int64).max)
        scratch = np.empty(widest)
        for o in range(n_cells):
            cell = order[o]
            if bounds[cell] > best_d[k - 1]:
                break  # every remaining cell's box is farther than the k-th neighbour
            start, stop = starts[cell], starts[cell + 1]
            _cell_distances(columns, start, stop, query, scratch)
            for j in range(stop - start):
                if scratch[j] <= best_d[k - 1]:  # most distances fail here: keep the call off that path
                    _insert(best_d, best_i, scratch[j], rows[start + j])  # ties: lower original row
        out_d[qi] = best_d
        out_i[qi] = best_i


def n_cells_for(n: int) -> int:
    """~sqrt(n)/2 cells: fewer makes each scan long, more makes the box pass long (measured in bench/)."""
    return 1 if n < 2000 else int(round(np.sqrt(n) / 2))


@dataclass(frozen=True)
class ExactL1Index:
    """Reference vectors (float64) grouped in cells; ``rows[i]`` is the original row of sorted column i."""

    columns: np.ndarray  # (dim, n) float32, cell by cell
    starts: np.ndarray  # (n_cells + 1,)
    lo: np.ndarray  # (n_cells, dim)
    hi: np.ndarray
    rows: np.ndarray  # (n,)

    @property
    def size(self) -> int:
        return int(self.columns.shape[1])

    @classmethod
    def build(cls, vectors: np.ndarray, n_cells: int | None = None, seed: int = 0) -> ExactL1Index:
        x = np.asarray(vectors, dtype=np.float64)
        cells = n_cells_for(len(x)) if n_cells is None else max(1, min(n_cells, len(x)))
        labels = _kmeans_labels(x, cells, seed)
        rows = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=cells)
        keep = counts > 0  # an empty cell has no box
        starts = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        ordered = x[rows]
        lo = np.array([ordered[a:b].min(axis=0) for a, b in zip(starts[:-1], starts[1:], strict=True)])
        hi = np.array([ordered[a:b].max(axis=0) for a, b in zip(starts[:-1], starts[1:], strict=True)])
        # float32 columns halve the memory each query streams; the sums are float64 (float32 -> float64 is
        # exact, so the distances equal scikit-learn's on the same float32 vectors).
        columns = np.ascontiguousarray(ordered.T.astype(np.float32))
        return cls(columns, starts, lo, hi, rows.astype(np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows) each (n_queries, k), nearest first; rows index the vectors given to build."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float64)
        k = min(k, self.size)
        distances = np.empty((len(q), k))
        found = np.empty((len(q), k), dtype=np.int64)
        widest = int(np.diff(self.starts).max())
        _search(self.columns, self.starts, self.rows, self.lo, self.hi, q, k, widest, distances, found)
        return distances, found

    def save(self, path) -> None:
        np.savez(path, columns=self.columns, starts=self.starts, lo=self.lo, hi=self.hi, rows=self.rows)

    @classmethod
    def load(cls, path) -> ExactL1Index:
        with np.load(path, allow_pickle=False) as a:
            return cls(a["columns"], a["starts"], a["lo"], a["hi"], a["rows"])


def _kmeans_labels(x: np.ndarray, cells: int, seed: int) -> np.ndarray:
    if cells == 1:
        return np.zeros(len(x), dtype=np.int64)
    from sklearn.cluster import KMeans

    # A rough clustering is enough: the boxes only have to be tight, not the clusters optimal.
    return KMeans(cells, n_init=1, max_iter=20, random_state=seed).fit_predict(x).astype(np.int64)


@dataclass(frozen=True)
class ExactL1Searcher:
    """An :class:`ExactL1Index` that answers with ccd_ids (``ids[row]``), like the FAISS indexes do."""

    index: ExactL1Index
    ids: np.ndarray  # ccd_id of each row given to build

    @property
    def size(self) -> int:
        return self.index.size

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, rows = self.index.search(queries, k)
        return distances, self.ids[rows]

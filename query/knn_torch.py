"""Exact L1 k-nearest neighbours with torch, for a CUDA device (also runs on the CPU, where it is slower).

The same answer as :class:`vecstore.exact_l1.ExactL1Searcher` — the same ids, and the same float64
distances bit for bit — by brute force in two passes:

1. **screen (float32)**: blockwise ``torch.cdist(p=1)`` of the queries against every reference vector,
   each block bounded in memory, keeping each query's ``k + margin`` smallest float32 distances;
2. **exact (float64)**: those candidates' distances again in float64, summed dimension by dimension in
   the same order as the numba index (so equal to its distances to the last bit), sorted by
   (distance, reference row).

The float32 distances are off by at most a bound proportional to the distance (rounding of the query to
float32, of each difference and of the sum, in whatever order the kernel adds). A query's answer is
*certified* when every reference left out of its candidates has a float32 distance whose lower bound is
above the k-th exact distance: then no left-out reference can be nearer, nor tie. A query that is not
certified (exact ties straddling the candidate list, on tie-heavy data) is answered again over every
reference in float64, with a stable sort, so ties are broken by lower reference row as the CPU path
breaks them (vec's reference rows are sorted by ccd_id: by lower id).

This module is in ``query/``, not ``vecstore/``: the core of vecstore must not import torch.
"""

from __future__ import annotations

import numpy as np
import torch

U32 = 2.0**-24  # unit round-off of float32
U64 = 2.0**-53


class TorchL1Searcher:
    """Reference vectors on a torch device that answer ``search(queries, k) -> (distances, ccd_ids)``.

    ``vectors`` (n, dim) are held as float32 (vec's reference vectors are float32 on disk, so nothing is
    lost); ``ids`` is the ccd_id of each row. ``block_bytes`` bounds the float32 distance block one
    ``cdist`` call writes (queries x references x 4 bytes).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        device: str = "cuda",
        *,
        block_bytes: int | None = None,
        margin: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.ids = np.asarray(ids)
        if len(self.ids) != len(x):
            raise ValueError(f"{len(x)} vectors but {len(self.ids)} ids")
        self.refs = torch.from_numpy(x).to(self.device)
        on_gpu = self.device.type == "cuda"
        self.block_bytes = int(block_bytes or (256 if on_gpu else 32) * 2**20)
        self.margin = margin
        self.dim = int(x.shape[1])

    @classmethod
    def from_exact(cls, searcher, device: str = "cuda", **options) -> TorchL1Searcher:
        """The vectors and ids of an :class:`vecstore.exact_l1.ExactL1Searcher`, in their original rows."""
        index = searcher.index
        vectors = np.empty((index.size, index.columns.shape[0]), dtype=np.float32)
        vectors[index.rows] = index.columns.T
        return cls(vectors, searcher.ids, device, **options)

    @property
    def size(self) -> int:
        return int(self.refs.shape[0])

    # ------------------------------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances float64, ccd_ids) each (n_queries, k), nearest first; ties by lower reference row."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float64)
        k = min(int(k), self.size)
        distances = np.empty((len(q), k))
        rows = np.empty((len(q), k), dtype=np.int64)
        if len(q) == 0 or k == 0:
            return distances, self.ids[rows]
        n_candidates = min(self.size, k + (self.margin if self.margin is not None else max(k, 16)))
        ref_block = min(self.size, max(n_candidates, self.block_bytes // 4 // 256))
        query_block = max(1, self.block_bytes // 4 // ref_block)
        with torch.inference_mode():
            for a in range(0, len(q), query_block):
                q64 = torch.from_numpy(q[a : a + query_block]).to(self.device)
                d, r = self._search_block(q64, k, n_candidates, ref_block)
                distances[a : a + len(q64)] = d.cpu().numpy()
                rows[a : a + len(q64)] = r.cpu().numpy()
        return distances, self.ids[rows]

    def _search_block(self, q64: torch.Tensor, k: int, n_candidates: int, ref_block: int):
        q32 = q64.float()
        screen_d, screen_rows = self._screen(q32, n_candidates, ref_block)
        exact_d = self._exact_distances(q64, screen_rows)
        # Sort by (distance, row): by row first, then a stable sort by distance.
        by_row, order = torch.sort(screen_rows, dim=1)
        exact_d = torch.gather(exact_d, 1, order)
        exact_d, order = torch.sort(exact_d, dim=1, stable=True)
        best_rows = torch.gather(by_row, 1, order)[:, :k]
        best_d = exact_d[:, :k]
        if n_candidates < self.size:
            # Every left-out reference has a float32 distance >= the largest kept one.
            floor = self._lower_bound(screen_d.max(dim=1).values, q64)
            uncertain = torch.nonzero(floor <= best_d[:, -1]).flatten()
            if len(uncertain):
                best_d[uncertain], best_rows[uncertain] = self._full_exact(q64[uncertain], k)
        return best_d, best_rows

    def _screen(self, q32: torch.Tensor, n_candidates: int, ref_block: int):
        """Each query's ``n_candidates`` smallest float32 distances and their rows (any order)."""
        best_d = best_rows = None
        for b in range(0, self.size, ref_block):
            block = self.refs[b : b + ref_block]
            d = torch.cdist(q32, block, p=1)
            take = min(n_candidates, d.shape[1])
            d, r = torch.topk(d, take, dim=1, largest=False, sorted=False)
            r = r + b
            if best_d is not None:
                d, r = torch.cat([best_d, d], dim=1), torch.cat([best_rows, r], dim=1)
                d, keep = torch.topk(d, min(n_candidates, d.shape[1]), dim=1, largest=False, sorted=False)
                r = torch.gather(r, 1, keep)
            best_d, best_rows = d, r
        return best_d, best_rows

    def _exact_distances(self, q64: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """float64 L1 distances of each query to its candidate rows, summed dimension by dimension in
        index order: the numba index's sum, term for term (float32 -> float64 is exact)."""
        # (dim, queries, candidates) float64, each dimension contiguous
        candidates = self.refs[rows].double().permute(2, 0, 1).contiguous()
        columns = q64.t().contiguous()
        total = torch.zeros(rows.shape, dtype=torch.float64, device=self.device)
        term = torch.empty_like(total)
        for c in range(self.dim):
            torch.sub(candidates[c], columns[c][:, None], out=term)
            total += term.abs_()
        return total

    def _lower_bound(self, screen: torch.Tensor, q64: torch.Tensor) -> torch.Tensor:
        """A float64 value below the CPU's float64 distance of any reference whose float32 distance is
        ``screen`` or more.

        With u = 2^-24 and dim terms: the query's rounding to float32 moves the true distance by at most
        u * sum|q|; each float32 difference is within a factor (1 +- u) of the exact one, and any order
        of summing dim terms adds at most gamma_(dim-1) = (dim-1) u / (1 - (dim-1) u) of their sum. So
        true >= screen / (1 + rho) - u * sum|q|, rho = u + gamma(1 + u); the CPU's float64 sum is within
        a factor (1 - dim * 2^-53 * 1.01) of the truth. Each factor is taken again twice over for safety.
        """
        n = self.dim
        gamma = (n - 1) * U32 / (1 - (n - 1) * U32)
        rho = 2 * (U32 + gamma * (1 + U32))
        shift = 2 * U32 * q64.abs().sum(dim=1)
        true_floor = screen.double() / (1 + rho) - shift
        return true_floor * (1 - 2 * n * U64 * 1.01)

    def _full_exact(self, q64: torch.Tensor, k: int):
        """k nearest by (float64 distance, row) over every reference, for queries the screen could not
        certify; memory bounded like the screen (float64 rows, sorted with a stable sort)."""
        per_call = max(1, self.block_bytes // 8 // self.size)
        out_d, out_rows = [], []
        for a in range(0, len(q64), per_call):
            q = q64[a : a + per_call]
            total = torch.zeros((len(q), self.size), dtype=torch.float64, device=self.device)
            for c in range(self.dim):
                total += (self.refs[:, c].double()[None, :] - q[:, c : c + 1]).abs()
            d, order = torch.sort(total, dim=1, stable=True)
            out_d.append(d[:, :k])
            out_rows.append(order[:, :k])
        return torch.cat(out_d), torch.cat(out_rows)

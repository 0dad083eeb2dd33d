"""Similarity-search benchmark: HNSW32 (efSearch 64/128/256) vs exact Flat, L1, on post-processed vectors.

The corpus index of ``vec similar``: 2,000,000 synthetic clustered 15-d vectors (the post-processor's
output size), ``vecstore.index.build_index`` with ``Flat`` and ``HNSW32`` (efConstruction 80, the config
default). Measured in one run: build time, latency of a single query and of a batch of 1,000 queries
(``vecstore.index.search``, k = 10), and recall@10 of HNSW against the exact L1 neighbours from Flat.

    python bench/similar_bench.py [--quick]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    Report,
    Table,
    best,
    elapsed,
    interleaved,
    log,
    median,
    ms,
    parse_args,
    ratio,
    repeats_for,
    secs,
    timed,
)
from vecstore.index import build_index, search, set_search_params  # noqa: E402

DIM = 15
K = 10
EF_SEARCHES = (64, 128, 256)
EF_CONSTRUCTION = 80
N_CLUSTERS = 300


@dataclass(frozen=True)
class Sizes:
    corpus: int
    batch: int  # queries in the batch search
    single_hnsw: int  # queries searched one at a time, per repeat
    single_flat: int


FULL = Sizes(corpus=2_000_000, batch=1000, single_hnsw=200, single_flat=20)
QUICK = Sizes(corpus=20_000, batch=1000, single_hnsw=50, single_flat=10)


class ClusteredVectors:
    """15-d points from a mixture of Gaussian clusters of different sizes, spreads and weights."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng([seed, 0])
        self.centres = rng.normal(0.0, 4.0, (N_CLUSTERS, DIM))
        self.spreads = rng.lognormal(mean=-0.5, sigma=0.5, size=N_CLUSTERS)
        self.weights = rng.dirichlet(np.full(N_CLUSTERS, 0.5))
        self.seed = seed

    def sample(self, n: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, stream])
        cluster = rng.choice(N_CLUSTERS, size=n, p=self.weights)
        noise = rng.standard_normal((n, DIM)) * self.spreads[cluster, None]
        return np.ascontiguousarray(self.centres[cluster] + noise, dtype=np.float32)


# ----------------------------------------------------------------------------------------- measurements
def time_single_queries(index, queries: np.ndarray, ef_search: int | None) -> float:
    """Median seconds of one query, searching one query at a time (after one untimed warm-up query)."""
    if ef_search is not None:
        set_search_params(index, ef_search)
    search(index, queries[-1:], K)
    return median([elapsed(lambda q=q: search(index, q[None, :], K)) for q in queries])


def time_batch(index, queries: np.ndarray, ef_search: int | None, results: dict, key: str) -> float:
    if ef_search is not None:
        set_search_params(index, ef_search)
    (_, ids), seconds = timed(lambda: search(index, queries, K))
    results[key] = ids
    return seconds


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f, e)) for f, e in zip(found, exact, strict=True))
    return hits / exact.size


def build_indexes(corpus: np.ndarray, report: Report) -> tuple[dict, dict[str, float]]:
    ids = 50_000_000 + np.arange(len(corpus), dtype=np.int64)
    indexes, build_seconds = {}, {}
    for spec in ("Flat", "HNSW32"):
        log(f"building {spec} over {len(corpus):,} vectors (threads: {faiss.omp_get_max_threads()})")
        indexes[spec], build_seconds[spec] = timed(
            lambda spec=spec: build_index(corpus, ids, spec, ef_construction=EF_CONSTRUCTION)
        )
        log(f"  {spec}: {build_seconds[spec]:.1f} s")
    report.raw["build_seconds"] = build_seconds
    return indexes, build_seconds


def search_runs(indexes: dict, batch: np.ndarray, sizes: Sizes, results: dict) -> dict:
    flat, hnsw = indexes["Flat"], indexes["HNSW32"]
    runs = {
        "Flat single": lambda: time_single_queries(flat, batch[: sizes.single_flat], None),
        "Flat batch": lambda: time_batch(flat, batch, None, results, "Flat"),
    }
    for ef in EF_SEARCHES:
        runs[f"HNSW ef{ef} single"] = lambda ef=ef: time_single_queries(hnsw, batch[: sizes.single_hnsw], ef)
        runs[f"HNSW ef{ef} batch"] = lambda ef=ef: time_batch(hnsw, batch, ef, results, f"HNSW ef{ef}")
    return runs


def results_table(sizes, build_seconds, seconds, results, repeats) -> Table:
    table = Table(
        f"vec similar (index level): {sizes.corpus:,} vectors, {DIM}-d synthetic clustered, L1, k={K}; "
        f"best of {repeats}",
        ["index", "efSearch", "build s", "single query ms", f"batch {sizes.batch} ms",
         "per query in batch ms", "recall@10", "single speed-up vs Flat"],
    )  # fmt: skip
    flat_single = best(seconds["Flat single"])
    flat_batch = best(seconds["Flat batch"])
    table.add(
        "Flat (exact)", "-", secs(build_seconds["Flat"]), ms(flat_single), ms(flat_batch),
        ms(flat_batch / sizes.batch), "1.000", "1.00x",
    )  # fmt: skip
    for ef in EF_SEARCHES:
        single, batch = best(seconds[f"HNSW ef{ef} single"]), best(seconds[f"HNSW ef{ef} batch"])
        table.add(
            "HNSW32", ef, secs(build_seconds["HNSW32"]), ms(single), ms(batch), ms(batch / sizes.batch),
            f"{recall_at_k(results[f'HNSW ef{ef}'], results['Flat']):.3f}", ratio(flat_single, single),
        )  # fmt: skip
    table.notes += [
        f"single query: median over {sizes.single_hnsw} (HNSW) / {sizes.single_flat} (Flat) queries searched "
        "one at a time; batch: one search() call with all queries (FAISS spreads them over the cores)",
        f"queries: {sizes.batch} held-out draws from the corpus distribution; recall@10 against Flat's exact "
        "L1 neighbours of the same queries",
        f"HNSW32 built with efConstruction {EF_CONSTRUCTION} (config default); build = build_index wall time",
        "the `vec similar` CLI is not measured (not implemented yet): this is its search path, "
        "vecstore.index.search on the corpus index after set_search_params",
    ]
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    repeats = repeats_for(args, full=3, quick=1)
    report = Report(
        "similar_bench",
        args,
        {**sizes.__dict__, "dim": DIM, "k": K, "ef_search": EF_SEARCHES, "ef_construction": EF_CONSTRUCTION,
         "clusters": N_CLUSTERS, "repeats": repeats, "faiss_threads": faiss.omp_get_max_threads()},
    )  # fmt: skip
    data = ClusteredVectors(seed=0)
    corpus = data.sample(sizes.corpus, stream=0)
    batch = data.sample(sizes.batch, stream=1)
    indexes, build_seconds = build_indexes(corpus, report)
    results: dict[str, np.ndarray] = {}
    log("searching")
    seconds = interleaved(search_runs(indexes, batch, sizes, results), repeats)
    report.raw["search_seconds"] = seconds
    report.tables.append(results_table(sizes, build_seconds, seconds, results, repeats))
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

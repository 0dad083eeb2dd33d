"""Exact L1 k-NN benchmark: vec's ExactL1Index vs scikit-learn's KD-tree and FAISS IndexFlat(METRIC_L1).

What classification does per CCD: the 7 nearest reference CCDs under L1, exactly. 40,000 references x
15 dimensions (the post-processor's output size), 20,000 queries, on every core of this machine, in the
same run; two data sets: clustered (12 blobs, like post-processed embeddings of labelled categories) and a
plain Gaussian (no structure: the worst case for any pruning). Build times are reported apart from search
(vec builds its cells once per model version, when ``vec train`` writes it). Agreement: share of queries
whose 7 neighbour ids equal the KD-tree's exactly (the data have no distance ties).

Also vec's torch searcher (query/knn_torch.py, what ``[classify] knn_device`` uses on a GPU): brute force
on the CPU cores (torch's cdist), and on the GPU when torch sees one (the first CUDA device; its build
column includes the copy to the device, its first search — CUDA's start — is not timed).

    python bench/exact_knn_bench.py [--quick]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import Report, Table, best, interleaved, log, parse_args, rate, ratio, repeats_for, timed  # noqa: E402
from query.knn_torch import TorchL1Searcher  # noqa: E402
from vecstore.exact_l1 import ExactL1Index  # noqa: E402

K = 7
DIM = 15


def data_sets(n_ref: int, n_query: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, DIM)) * 3
    blobs = [
        (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, DIM))).astype(np.float32)
        for n in (n_ref, n_query)
    ]
    plain = [rng.normal(size=(n, DIM)).astype(np.float32) for n in (n_ref, n_query)]
    return {"clustered": tuple(blobs), "gaussian": tuple(plain)}


def methods(refs: np.ndarray):
    """name -> (build seconds, search(queries) -> ids)."""
    import faiss
    from sklearn.neighbors import KDTree

    tree, tree_s = timed(lambda: KDTree(refs.astype(np.float64), metric="manhattan"))
    flat = faiss.IndexFlat(DIM, faiss.METRIC_L1)
    _, flat_s = timed(lambda: flat.add(refs))
    exact, exact_s = timed(lambda: ExactL1Index.build(refs))
    exact.search(refs[:4], K)  # compile (cached on disk after the first run)
    found = {
        "scikit-learn KDTree (baseline)": (tree_s, lambda q: tree.query(q.astype(np.float64), K)[1]),
        "FAISS IndexFlat(METRIC_L1)": (flat_s, lambda q: flat.search(q, K)[1]),
        "vec ExactL1Index": (exact_s, lambda q: exact.search(q, K)[1]),
    }
    for device in torch_devices():
        on_torch, torch_s = timed(lambda d=device: TorchL1Searcher(refs, np.arange(len(refs)), d))
        on_torch.search(refs[:4], K)  # CUDA's start (and torch's first-call costs) out of the timing
        found[f"vec TorchL1Searcher ({device})"] = (torch_s, lambda q, s=on_torch: s.search(q, K)[1])
    return found


def torch_devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run_data_set(name: str, refs, queries, repeats: int, report: Report) -> Table:
    log(f"{name}: building")
    found = methods(refs)
    answers = {m: search(queries) for m, (_, search) in found.items()}
    baseline = "scikit-learn KDTree (baseline)"
    runs = {m: (lambda s=search: timed(lambda: s(queries))[1]) for m, (_, search) in found.items()}
    log(f"{name}: timing {repeats} interleaved repeats")
    seconds = interleaved(runs, repeats)
    report.raw[name] = {"seconds": seconds, "build_seconds": {m: b for m, (b, _) in found.items()}}
    table = Table(
        f"exact {K}-NN L1, {name}: {len(refs):,} references x {DIM}-d, {len(queries):,} queries, "
        f"{os.cpu_count()} cores",
        ["method", "build s", "queries/s", "vs KD-tree", "same ids as KD-tree"],
    )
    for m, (build_s, _) in found.items():
        table.add(
            m,
            f"{build_s:.2f}",
            rate(len(queries), best(seconds[m])),
            ratio(best(seconds[baseline]), best(seconds[m])),
            f"{(answers[m] == answers[baseline]).all(axis=1).mean():.4f}",
        )
    return table


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_ref, n_query = (4_000, 2_000) if args.quick else (40_000, 20_000)
    repeats = repeats_for(args, full=3)
    report = Report("exact_knn_bench", args, {"references": n_ref, "queries": n_query, "k": K, "dim": DIM})
    for name, (refs, queries) in data_sets(n_ref, n_query).items():
        report.tables.append(run_data_set(name, refs, queries, repeats, report))
    report.finish()


if __name__ == "__main__":
    main()

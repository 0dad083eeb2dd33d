"""kNN classification benchmark: vec's FAISS path vs the paper's scikit-learn pipeline.

vec: ``fit_postprocessor`` (MinMaxScaler -> PCA(15) -> VarianceThreshold as arrays) + a Flat L1 reference
index (``build_index``) + ``find_neighbours`` + ``class_probabilities``.
scikit-learn: ``Pipeline(MinMaxScaler(), PCA(15, svd_solver="full"), VarianceThreshold(0.001),
KNeighborsClassifier(7, p=1)).predict_proba``.

Data: synthetic clustered 768-d embeddings (12 classes, each a mixture of Gaussian blobs; classes overlap),
40,000 labelled and 1,000,000 query CCDs. scikit-learn runs on a 20,000-query subset and its CCDs/s is
extrapolated; both methods are compared (argmax and probabilities) on that subset.

    python bench/knn_bench.py [--quick]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.feature_selection import VarianceThreshold  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

from bench.common import (  # noqa: E402
    Report,
    Table,
    best,
    interleaved,
    log,
    parse_args,
    percent,
    rate,
    ratio,
    repeats_for,
    secs,
    timed,
)
from query.knn import class_probabilities, find_neighbours  # noqa: E402
from vecstore.index import FaissSearcher, build_index, search  # noqa: E402
from vecstore.postprocess import PostProcessor, fit_postprocessor  # noqa: E402

DIM = 768
N_CLASSES = 12
BLOBS_PER_CLASS = 4
CENTRE_SCALE = 0.5  # per-dimension spread of blob centres; the noise around a centre is 1 per dimension
GOOD_SHARE = 0.4  # class 0 plays "good"; the 11 bad classes share the rest
K = 7
N_COMPONENTS = 15
VARIANCE_THRESHOLD = 0.001


@dataclass(frozen=True)
class Sizes:
    labelled: int
    queries: int
    compared: int  # queries both methods classify (scikit-learn's subset)
    chunk: int  # queries per vec call (bounds memory: the post-processor works in float64)


FULL = Sizes(labelled=40_000, queries=1_000_000, compared=20_000, chunk=50_000)
QUICK = Sizes(labelled=2_000, queries=2_000, compared=2_000, chunk=1_000)


class ClusteredEmbeddings:
    """768-d vectors: class c is a mixture of ``BLOBS_PER_CLASS`` unit Gaussians around random centres."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng([seed, 0])
        self.centres = rng.normal(0.0, CENTRE_SCALE, (N_CLASSES * BLOBS_PER_CLASS, DIM)).astype(np.float32)
        self.class_share = np.array([GOOD_SHARE] + [(1 - GOOD_SHARE) / (N_CLASSES - 1)] * (N_CLASSES - 1))
        self.seed = seed

    def sample(self, n: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 (n, 768), class labels (n,)) of random stream ``stream``."""
        rng = np.random.default_rng([self.seed, 1, stream])
        labels = rng.choice(N_CLASSES, size=n, p=self.class_share)
        blobs = labels * BLOBS_PER_CLASS + rng.integers(0, BLOBS_PER_CLASS, n)
        vectors = rng.standard_normal((n, DIM), dtype=np.float32)
        vectors += self.centres[blobs]
        return vectors, labels


# ----------------------------------------------------------------------------------------- vec
@dataclass
class VecClassifier:
    processor: PostProcessor
    index: object
    ids: np.ndarray
    labels: np.ndarray


def fit_vec(vectors: np.ndarray, labels: np.ndarray) -> VecClassifier:
    """Post-processor fitted on the labelled vectors and a Flat L1 index of them keyed by ccd_id."""
    processor = fit_postprocessor(vectors, N_COMPONENTS, VARIANCE_THRESHOLD)
    ids = 90_000_000 + 100 * np.arange(len(vectors), dtype=np.int64) + 7  # ccd_id-like, not row numbers
    index = build_index(processor.transform(vectors), ids, "Flat")
    return VecClassifier(processor, index, ids, labels)


def vec_probabilities(model: VecClassifier, queries: np.ndarray, seconds: dict[str, float]) -> np.ndarray:
    """Class probabilities of ``queries``; adds the time of each step to ``seconds``."""
    projected = _timed(seconds, "transform", lambda: model.processor.transform(queries))
    neighbours = _timed(
        seconds,
        "search",
        lambda: find_neighbours(FaissSearcher(model.index), projected, K, model.ids, model.labels),
    )
    return _timed(seconds, "vote", lambda: class_probabilities(neighbours.labels, N_CLASSES))


def _timed(seconds: dict[str, float], step: str, function):
    result, took = timed(function)
    seconds[step] = seconds.get(step, 0.0) + took
    return result


# ----------------------------------------------------------------------------------------- scikit-learn
def paper_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("scaler", MinMaxScaler()),
            ("pca", PCA(n_components=N_COMPONENTS, svd_solver="full")),
            ("threshold", VarianceThreshold(VARIANCE_THRESHOLD)),
            ("knn", KNeighborsClassifier(n_neighbors=K, p=1)),
        ]
    )


# ----------------------------------------------------------------------------------------- agreement
def agreement(vec_probs: np.ndarray, sk_probs: np.ndarray, near_tie: np.ndarray) -> dict[str, float]:
    """Same argmax, same probabilities, ties in the top class and near-tied k-th/(k+1)-th neighbours."""
    same_argmax = vec_probs.argmax(axis=1) == sk_probs.argmax(axis=1)
    same_probs = np.abs(vec_probs - sk_probs).max(axis=1) < 1e-9
    top_ties = (vec_probs == vec_probs.max(axis=1, keepdims=True)).sum(axis=1) > 1
    return {
        "compared": len(vec_probs),
        "same_argmax": float(same_argmax.mean()),
        "same_probs": float(same_probs.mean()),
        "n_diff_probs": int((~same_probs).sum()),
        "n_diff_probs_near_tie": int((~same_probs & near_tie).sum()),
        "n_diff_argmax": int((~same_argmax).sum()),
        "n_top_class_ties": int(top_ties.sum()),
        "n_near_tie": int(near_tie.sum()),
    }


def near_tied_boundary(model: VecClassifier, queries: np.ndarray, relative: float = 1e-5) -> np.ndarray:
    """Queries whose k-th and (k+1)-th L1 distances differ by less than ``relative`` (float32 order noise)."""
    distances, _ = search(model.index, model.processor.transform(queries), K + 1)
    kth, next_ = distances[:, K - 1], distances[:, K]
    return (next_ - kth) <= relative * np.maximum(kth, 1e-30)


# ----------------------------------------------------------------------------------------- main steps
def time_fits(data: ClusteredEmbeddings, sizes: Sizes, report: Report):
    labelled, labels = data.sample(sizes.labelled, stream=0)
    log(f"fitting on {sizes.labelled:,} labelled vectors")
    vec_model, vec_seconds = timed(lambda: fit_vec(labelled, labels))
    sk_model, sk_seconds = timed(lambda: paper_pipeline().fit(labelled.astype(np.float64), labels))
    fit_seconds = {"vec": vec_seconds, "sklearn": sk_seconds}
    report.raw["fit_seconds"] = fit_seconds
    return vec_model, sk_model, fit_seconds


def time_subset(vec_model, sk_model, subset: np.ndarray, repeats: int, report: Report):
    """Interleaved repeats of both methods on the same queries -> (seconds, vec probs, sklearn probs)."""
    outputs: dict[str, np.ndarray] = {}

    def run_vec() -> float:
        seconds: dict[str, float] = {}
        outputs["vec"] = vec_probabilities(vec_model, subset, seconds)
        return sum(seconds.values())

    def run_sklearn() -> float:
        as_float64 = subset.astype(np.float64)  # what vec's post-processor computes in, outside the timing
        outputs["sklearn"], seconds = timed(lambda: sk_model.predict_proba(as_float64))
        return seconds

    log(f"vec and scikit-learn on the same {len(subset):,} queries")
    seconds = interleaved({"sklearn": run_sklearn, "vec": run_vec}, repeats)
    report.raw["subset_seconds"] = seconds
    return seconds, outputs["vec"], outputs["sklearn"]


def time_all_queries(data: ClusteredEmbeddings, vec_model, sizes: Sizes, report: Report) -> dict[str, float]:
    """vec over every query, generated chunk by chunk (generation not timed)."""
    seconds: dict[str, float] = {}
    for start in range(0, sizes.queries, sizes.chunk):
        queries, _ = data.sample(min(sizes.chunk, sizes.queries - start), stream=1 + start // sizes.chunk)
        vec_probabilities(vec_model, queries, seconds)
        if (start // sizes.chunk) % 4 == 0:
            log(f"  vec: {start + len(queries):,} / {sizes.queries:,} queries, {sum(seconds.values()):.1f} s")
    report.raw["all_queries_seconds"] = seconds
    return seconds


def throughput_table(sizes, fit_seconds, subset_seconds, all_seconds, sk_method, repeats) -> Table:
    sk_time, vec_time = best(subset_seconds["sklearn"]), best(subset_seconds["vec"])
    all_time = sum(all_seconds.values())
    sk_rate = sizes.compared / sk_time
    table = Table(
        f"kNN classification: {sizes.labelled:,} labelled (12 classes), {sizes.queries:,} queries, "
        f"{DIM}-d synthetic clustered; scikit-learn on a {sizes.compared:,}-query subset, extrapolated",
        ["method", "queries timed", "seconds", "CCDs/s", f"time for {sizes.queries:,}", "speed vs sklearn"],
    )
    table.add(
        f"scikit-learn Pipeline predict_proba ({sk_method})", f"{sizes.compared:,}", secs(sk_time),
        rate(sizes.compared, sk_time), f"{secs(sizes.queries / sk_rate)} s (extrapolated)", "1.00x",
    )  # fmt: skip
    table.add(
        "vec FAISS path, same subset", f"{sizes.compared:,}", secs(vec_time), rate(sizes.compared, vec_time),
        "-", ratio(sk_time, vec_time),
    )  # fmt: skip
    table.add(
        "vec FAISS path, all queries", f"{sizes.queries:,}", secs(all_time), rate(sizes.queries, all_time),
        f"{secs(all_time)} s (measured)", ratio(sizes.queries / sk_rate, all_time),
    )  # fmt: skip
    steps = ", ".join(f"{step} {secs(value)} s" for step, value in all_seconds.items())
    table.notes += [
        f"subset timings: best of {repeats} interleaved repeats; all queries: one pass in chunks of "
        f"{sizes.chunk:,} (query generation not timed)",
        f"vec steps over all queries: {steps}",
        f"fit (not in the rates): vec post-processor + Flat index {secs(fit_seconds['vec'])} s, "
        f"scikit-learn Pipeline.fit {secs(fit_seconds['sklearn'])} s",
        f"scikit-learn chose algorithm={sk_method!r} (algorithm='auto', n_jobs=None: one core); "
        "FAISS uses both cores; both get float64 input (vec's post-processor computes in float64)",
    ]
    return table


def agreement_table(result: dict[str, float]) -> Table:
    table = Table(
        f"kNN agreement, vec vs scikit-learn on the same {result['compared']:,} queries", ["measure", "value"]
    )
    table.add("same predicted class (argmax)", percent(result["same_argmax"]))
    table.add("identical probabilities (|diff| < 1e-9)", percent(result["same_probs"]))
    table.add("queries with different probabilities", result["n_diff_probs"])
    table.add("  of which 7th/8th neighbour near-tied", result["n_diff_probs_near_tie"])
    table.add("queries with different argmax", result["n_diff_argmax"])
    table.add("queries with a tied top class", result["n_top_class_ties"])
    table.add("queries with 7th/8th neighbour near-tied", result["n_near_tie"])
    table.notes += [
        "tied top class (e.g. 3-3-1 votes): both take the lowest class index (numpy argmax), so they agree",
        "near-tied: 7th and 8th L1 distances within 1e-5 relative; float32 (FAISS) vs float64 (sklearn) "
        "may then pick a different 7th neighbour",
    ]
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    repeats = repeats_for(args, full=3, quick=1)
    report = Report(
        "knn_bench",
        args,
        {**sizes.__dict__, "dim": DIM, "classes": N_CLASSES, "k": K, "blobs_per_class": BLOBS_PER_CLASS,
         "centre_scale": CENTRE_SCALE, "repeats": repeats},
    )  # fmt: skip
    data = ClusteredEmbeddings(seed=0)
    vec_model, sk_model, fit_seconds = time_fits(data, sizes, report)
    subset, _ = data.sample(sizes.compared, stream=10_000)
    subset_seconds, vec_probs, sk_probs = time_subset(vec_model, sk_model, subset, repeats, report)
    result = agreement(vec_probs, sk_probs, near_tied_boundary(vec_model, subset))
    report.raw["agreement"] = result
    log(f"vec over all {sizes.queries:,} queries")
    all_seconds = time_all_queries(data, vec_model, sizes, report)
    sk_method = sk_model.named_steps["knn"]._fit_method
    report.tables.append(
        throughput_table(sizes, fit_seconds, subset_seconds, all_seconds, sk_method, repeats)
    )
    report.tables.append(agreement_table(result))
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

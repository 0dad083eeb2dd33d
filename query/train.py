"""``vec train``: the paper's training set, the post-processor and the reference index.

1. Labelled bad CCDs (one category each, see :mod:`query.labels`) are split 70/30 **by exposure**
   (seeded, stratified by each exposure's main category), so no exposure sits in both splits — the
   predecessor split by CCD and leaked exposures across.
2. The largest classes are down-sampled in the *training* split only (Clouds to 1/3, Ghost_Scatter to 1/2,
   NObjects to 3/4) and get matching weights in the vote; the test split keeps the natural mix so that
   evaluation measures what the classifier will meet.
3. Good CCDs, as many as bad ones per split (``good_per_bad``), come from exposures with no label at all,
   not cut by legacypipe's ``ccd_cuts``, and with E(B-V) below ``max_ebv`` where the catalog knows it;
   good exposures are split 70/30 too.
4. The post-processor is fitted on the training CCDs; the reference index holds them; both, with the
   settings, become a new model version (``models/<version>``, ``models`` and ``splits`` tables).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ingest.categories import CATEGORIES
from query.labels import GOOD, labelled_expnums, resolve_ccd_categories
from vecstore.config import Config
from vecstore.errors import VecError
from vecstore.index import validate_spec
from vecstore.models import ReferenceSet, write_model
from vecstore.postprocess import fit_postprocessor
from vecstore.store import Store


@dataclass(frozen=True)
class TrainingSet:
    train_ids: np.ndarray
    train_labels: list[str]
    test_ids: np.ndarray
    test_labels: list[str]
    expnum_of: dict[int, int]
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        return {"train": dict(Counter(self.train_labels)), "test": dict(Counter(self.test_labels))}


@dataclass(frozen=True)
class TrainResult:
    version: str
    training: TrainingSet
    classes: tuple[str, ...]
    class_weights: tuple[float, ...]
    settings: dict


# --------------------------------------------------------------------------------------------- the split
def split_exposures(
    expnum_category: dict[int, str], test_fraction: float, rng: np.random.Generator
) -> tuple[set[int], set[int]]:
    """Exposures -> (train, test), stratified by category; each category with 2+ exposures gets 1+ test."""
    train, test = set(), set()
    by_category: dict[str, list[int]] = {}
    for expnum, category in sorted(expnum_category.items()):
        by_category.setdefault(category, []).append(expnum)
    for category in sorted(by_category):
        expnums = rng.permutation(by_category[category]).tolist()
        n_test = int(round(test_fraction * len(expnums)))
        if len(expnums) >= 2:
            n_test = min(max(n_test, 1), len(expnums) - 1)
        test.update(expnums[:n_test])
        train.update(expnums[n_test:])
    return train, test


def _main_category(categories: list[str]) -> str:
    counts = Counter(categories)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return min(counts, key=lambda c: (-counts[c], order.get(c, len(order))))


def _downsample(ids: list[int], labels: list[str], ratios: dict[str, float], rng) -> tuple[list, list]:
    keep_ids, keep_labels = [], []
    for category in sorted(set(labels)):
        members = [i for i, label in zip(ids, labels, strict=True) if label == category]
        ratio = ratios.get(category, 1.0)
        if ratio < 1.0:
            n_keep = max(1, int(round(ratio * len(members))))
            members = sorted(rng.choice(members, size=n_keep, replace=False).tolist())
        keep_ids += members
        keep_labels += [category] * len(members)
    return keep_ids, keep_labels


def _good_candidates(store: Store, max_ebv: float) -> dict[int, list[int]]:
    """expnum -> ccd_ids of CCDs that may serve as 'good': unlabelled exposure, no cut bit, low E(B-V)."""
    labelled = set(labelled_expnums(store).tolist())
    rows = store.query(
        "SELECT ccd_id, expnum FROM ccds WHERE coalesce(ccd_cuts, 0) = 0 AND (ebv IS NULL OR ebv < ?) "
        "ORDER BY ccd_id",
        [max_ebv],
    ).to_pydict()
    candidates: dict[int, list[int]] = {}
    for ccd_id, expnum in zip(rows["ccd_id"], rows["expnum"], strict=True):
        if expnum not in labelled:
            candidates.setdefault(expnum, []).append(ccd_id)
    return candidates


def _draw_good(candidates: dict[int, list[int]], expnums: list[int], n: int, rng) -> list[int]:
    pool = [ccd for expnum in expnums for ccd in candidates[expnum]]
    if n >= len(pool):
        return sorted(pool)
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def build_training_set(store: Store, config: Config) -> TrainingSet:
    """The paper's balanced training and test sets for this store (deterministic for a seed)."""
    cfg = config.train
    rng = np.random.default_rng(cfg.seed)
    bad = resolve_ccd_categories(store)
    if not bad:
        raise VecError(
            f"store {store.path} has no labelled ingested CCDs: import labels (`vec labels import`) for "
            "exposures you ingested"
        )
    expnum_of = dict(zip(*store.query("SELECT ccd_id, expnum FROM ccds").to_pydict().values(), strict=True))
    per_exposure: dict[int, list[str]] = {}
    for ccd_id, category in bad.items():
        per_exposure.setdefault(expnum_of[ccd_id], []).append(category)
    train_exp, test_exp = split_exposures(
        {e: _main_category(c) for e, c in per_exposure.items()}, cfg.test_fraction, rng
    )
    ordered = sorted(bad)
    train_ids = [i for i in ordered if expnum_of[i] in train_exp]
    test_ids = [i for i in ordered if expnum_of[i] in test_exp]
    train_ids, train_labels = _downsample(train_ids, [bad[i] for i in train_ids], cfg.downsample, rng)
    test_labels = [bad[i] for i in test_ids]

    candidates = _good_candidates(store, cfg.max_ebv)
    good_exp = rng.permutation(sorted(candidates)).tolist()
    n_good_test = int(round(cfg.test_fraction * len(good_exp)))
    if len(good_exp) >= 2:
        n_good_test = min(max(n_good_test, 1), len(good_exp) - 1)
    good_train = _draw_good(
        candidates, good_exp[n_good_test:], int(round(cfg.good_per_bad * len(train_ids))), rng
    )
    good_test = _draw_good(
        candidates, good_exp[:n_good_test], int(round(cfg.good_per_bad * len(test_ids))), rng
    )
    notes = []
    if len(good_train) < cfg.good_per_bad * len(train_ids):
        notes.append(f"only {len(good_train)} good training CCDs available for {len(train_ids)} bad ones")
    training = TrainingSet(
        train_ids=np.array(train_ids + good_train, dtype=np.int64),
        train_labels=train_labels + [GOOD] * len(good_train),
        test_ids=np.array(test_ids + good_test, dtype=np.int64),
        test_labels=test_labels + [GOOD] * len(good_test),
        expnum_of={i: expnum_of[i] for i in [*train_ids, *test_ids, *good_train, *good_test]},
        notes=notes,
    )
    check_no_leak(training)
    return training


def check_no_leak(training: TrainingSet) -> None:
    """No exposure may have CCDs in both splits (a user-facing guarantee, so not an assert)."""
    train = {training.expnum_of[int(i)] for i in training.train_ids}
    test = {training.expnum_of[int(i)] for i in training.test_ids}
    shared = sorted(train & test)
    if shared:
        raise VecError(f"exposures {shared[:5]} are in both the training and the test split")


# --------------------------------------------------------------------------------------------- training
def class_table(labels: list[str], weights: dict[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Classes in a fixed order (good first, then the paper's order) with their vote weights."""
    present = set(labels)
    classes = tuple(c for c in (GOOD, *CATEGORIES) if c in present)
    return classes, tuple(float(weights.get(c, 1.0)) for c in classes)


def train(store: Store, config: Config, *, tune: bool = False, n_iter: int = 40) -> TrainResult:
    """Build the training set, optionally tune, fit, index and save a new model version."""
    for spec in (config.index.reference, config.index.corpus):
        validate_spec(spec)  # refuse a bad index before minutes of fitting
    training = build_training_set(store, config)
    n_components, threshold, k = (
        config.postprocess.n_components,
        config.postprocess.variance_threshold,
        config.classify.k,
    )
    tuning = None
    if tune:
        from query.tune import tune_hyperparameters

        tuning = tune_hyperparameters(store, training, seed=config.train.seed, n_iter=n_iter)
        n_components, threshold, k = (
            tuning["applied"]["n_components"],
            tuning["applied"]["variance_threshold"],
            tuning["applied"]["k"],
        )
    _, train_vectors = store.load_embeddings(training.train_ids)
    order = np.argsort(training.train_ids)
    labels_sorted = [training.train_labels[i] for i in order]
    blocks = json.loads(store.meta().get("blocks", "null"))
    processor = fit_postprocessor(train_vectors, n_components, threshold, blocks=blocks)
    classes, weights = class_table(training.train_labels, config.train.class_weights)
    code = {c: i for i, c in enumerate(classes)}
    reference = ReferenceSet(
        ids=np.sort(training.train_ids),
        labels=np.array([code[c] for c in labels_sorted], dtype=np.int64),
        classes=classes,
        class_weights=weights,
    )
    if len(reference.ids) < k:
        raise VecError(f"only {len(reference.ids)} training CCDs: need at least k={k}")
    settings = {
        "n_components": n_components,
        "variance_threshold": threshold,
        "output_dim": processor.output_dim,
        "k": k,
        "prob_cut": config.classify.prob_cut,
        "min_bad_ccds": config.classify.min_bad_ccds,
        "downsample": config.train.downsample,
        "test_fraction": config.train.test_fraction,
        "seed": config.train.seed,
        "good_per_bad": config.train.good_per_bad,
        "max_ebv": config.train.max_ebv,
        "counts": training.counts(),
        "notes": training.notes,
        "tuning": tuning,
        "blocks": blocks,
    }
    version = write_model(
        store,
        processor,
        reference,
        settings,
        reference_spec=config.index.reference,
        corpus_spec=config.index.corpus,
        ef_construction=config.index.hnsw_ef_construction,
    )
    _record_model(store, version, training, settings, dict(zip(classes, weights, strict=True)))
    return TrainResult(version, training, classes, weights, settings)


def _record_model(store: Store, version: str, training: TrainingSet, settings: dict, weights: dict) -> None:
    import pyarrow as pa

    rows = {
        "version": [version] * (len(training.train_ids) + len(training.test_ids)),
        "ccd_id": np.concatenate([training.train_ids, training.test_ids]),
        "split": ["train"] * len(training.train_ids) + ["test"] * len(training.test_ids),
        "category": training.train_labels + training.test_labels,
    }
    rows["weight"] = [weights.get(c, 1.0) for c in rows["category"]]
    table = pa.table(rows)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO models VALUES (?, current_timestamp, ?, ?, ?, (SELECT count(*) FROM ccds))",
            [version, json.dumps(settings, default=str), len(training.train_ids), len(training.test_ids)],
        )
        con.register("split_rows", table)
        con.execute("INSERT INTO splits SELECT version, ccd_id, split, category, weight FROM split_rows")
        con.unregister("split_rows")

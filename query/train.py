"""``vec train``: the reference set the k-NN votes with, its post-processor, and the decision rule.

Two rules (``classify.rule``, or ``vec train --rule``); the rule is a property of the model version.

**calibrated** (the default). The deployed model uses every labelled exposure: all labelled bad CCDs
(never down-sampled) and good CCDs (``good_per_bad`` per bad CCD) drawn from exposures known to be good
(``--good-from``) or, by default, from exposures with no label, not cut by ``ccd_cuts`` and with E(B-V)
below ``max_ebv``. Its quality, and its thresholds ``(t, f)`` (:mod:`query.vote`), come from K-fold
cross-validation grouped by exposure (:func:`cross_validate`): each fold fits the post-processor and the
reference set on the other folds and classifies its exposures as ``vec classify`` would.

**paper** (Luo et al.), unchanged from vec's first version:

1. Labelled bad CCDs are split 70/30 **by exposure** (seeded, stratified by each exposure's main
   category), so no exposure sits in both splits.
2. The largest classes are down-sampled in the *training* split only (Clouds to 1/3, Ghost_Scatter to 1/2,
   NObjects to 3/4; never below k CCDs) and get matching weights in the vote.
3. Good CCDs, as many as bad ones per split (``good_per_bad``), come from the good pool above; good
   exposures are split 70/30 too.
4. The post-processor is fitted on the training CCDs; the reference index holds them.

Both write a new model version (``models/<version>``, ``models`` and ``splits`` tables).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from query.crossval import LabelledPool, cross_validate, make_fitter, reference_set
from query.good_set import classified_later, draw_good, good_candidates
from query.labels import resolve_ccd_categories
from query.vote import RULES, single_ccd_clause
from vecstore.config import Config
from vecstore.errors import TrainingError
from vecstore.models import ReferenceSet, write_model
from vecstore.postprocess import candidate_methods, fit_postprocessor, orientation_pairs, view_methods
from vecstore.provenance import VectorLayout
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, GOOD, expnum_of


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


def _downsample(
    ids: list[int], labels: list[str], ratios: dict[str, float], rng, k: int
) -> tuple[list, list]:
    """Keep ``ratio`` of each down-sampled class, never fewer than k CCDs (a class below k never wins)."""
    keep_ids, keep_labels = [], []
    for category in sorted(set(labels)):
        members = [i for i, label in zip(ids, labels, strict=True) if label == category]
        ratio = ratios.get(category, 1.0)
        if ratio < 1.0:
            n_keep = max(min(k, len(members)), int(round(ratio * len(members))))
            members = sorted(rng.choice(members, size=n_keep, replace=False).tolist())
        keep_ids += members
        keep_labels += [category] * len(members)
    return keep_ids, keep_labels


def build_training_set(store: Store, config: Config, good_from: str = "") -> TrainingSet:
    """The paper's balanced training and test sets for this store (deterministic for a seed)."""
    cfg = config.train
    rng = np.random.default_rng(cfg.seed)
    bad = resolve_ccd_categories(store)
    if not bad:
        raise TrainingError(
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
    train_ids, train_labels = _downsample(
        train_ids, [bad[i] for i in train_ids], cfg.downsample, rng, config.classify.k
    )
    test_labels = [bad[i] for i in test_ids]

    candidates = good_candidates(store, cfg.max_ebv, good_from)
    good_exp = rng.permutation(sorted(candidates)).tolist()
    n_good_test = int(round(cfg.test_fraction * len(good_exp)))
    if len(good_exp) >= 2:
        n_good_test = min(max(n_good_test, 1), len(good_exp) - 1)
    good_train = draw_good(
        candidates, good_exp[n_good_test:], int(round(cfg.good_per_bad * len(train_ids))), rng
    )
    good_test = draw_good(
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
        raise TrainingError(f"exposures {shared[:5]} are in both the training and the test split")


# --------------------------------------------------------------------------------------------- training
def class_table(labels: list[str], weights: dict[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Classes in a fixed order (good first, then the paper's order) with their vote weights."""
    present = set(labels)
    classes = tuple(c for c in (GOOD, *CATEGORIES) if c in present)
    return classes, tuple(float(weights.get(c, 1.0)) for c in classes)


def train(
    store: Store,
    config: Config,
    *,
    rule: str | None = None,
    good_from: str | None = None,
    tune: bool = False,
    n_iter: int | None = None,
) -> TrainResult:
    """A new model version for ``rule`` (default ``classify.rule``); see the module docstring.

    ``n_iter``: candidates drawn by ``tune`` (default ``train.tune_iterations``)."""
    rule = rule or config.classify.rule
    if rule not in RULES:
        raise TrainingError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    good_from = config.train.good_from if good_from is None else good_from
    if rule == "paper":
        n_iter = n_iter or config.train.tune_iterations
        return _train_paper(store, config, good_from, tune=tune, n_iter=n_iter)
    if tune:
        raise TrainingError("--tune searches the paper's space: use it with --rule paper")
    return _train_calibrated(store, config, good_from)


def _labelled_bad(store: Store) -> dict[int, str]:
    bad = resolve_ccd_categories(store)
    if not bad:
        raise TrainingError(
            f"store {store.path} has no labelled ingested CCDs: import labels (`vec labels import`) for "
            "exposures you ingested"
        )
    return bad


def unmapped_exposures(store: Store) -> int:
    """Ingested exposures whose every label has a reason no rule maps: left out of training."""
    return int(
        store.scalar(
            "SELECT count(DISTINCT expnum) FROM labels WHERE category IS NULL "
            "AND expnum IN (SELECT expnum FROM ccds) "
            "AND expnum NOT IN (SELECT expnum FROM labels WHERE category IS NOT NULL)"
        )
    )


def _common_notes(store: Store) -> list[str]:
    n = unmapped_exposures(store)
    if not n:
        return []
    return [
        f"{n:,} labelled exposure(s) left out: their reasons map to no category "
        "(`vec labels summary` lists them; add rules to configs/categories.toml)"
    ]


def _classify_members(store: Store, expnums, classify_cfg) -> dict[int, np.ndarray]:
    """expnum -> the CCD ids ``vec classify`` draws for it (same seed, same count)."""
    from query.classify import exposure_members, sample_ids

    members = exposure_members(store, sorted(expnums))
    return {
        e: sample_ids([i for i, _ in members[e]], classify_cfg.ccds_per_exposure, classify_cfg.seed, e)
        for e in members
    }


def _pool(store: Store, config: Config, good_from: str) -> LabelledPool:
    bad = _labelled_bad(store)
    good = good_candidates(store, config.train.max_ebv, good_from)
    if good_from and not good:
        raise TrainingError(f"--good-from {good_from!r} names no ingested exposure with usable CCDs")
    expnums = {expnum_of(i) for i in bad} | set(good)
    members = _classify_members(store, expnums, config.classify)
    cache = _VectorCache(store, np.concatenate([np.fromiter(bad, np.int64), *members.values()]))
    return LabelledPool(bad=bad, good=good, members=members, vectors=cache.get)


class _VectorCache:
    """Raw vectors of a known set of CCDs read once (the folds ask for overlapping subsets)."""

    def __init__(self, store: Store, ids: np.ndarray):
        self.ids, self.vectors = store.load_embeddings(np.unique(ids))

    def get(self, ids: np.ndarray) -> np.ndarray:
        return self.vectors[np.searchsorted(self.ids, ids)]


def _train_calibrated(store: Store, config: Config, good_from: str) -> TrainResult:
    pool = _pool(store, config, good_from)
    layout = VectorLayout.of(store.provenance())
    method, fit, cv, scores = _cross_validated_postprocessor(layout, config, pool)
    rng = np.random.default_rng([config.train.seed, 1])
    ref_ids, ref_labels = reference_set(
        pool, set(pool.bad_expnums()), sorted(pool.good), config.train.good_per_bad, rng
    )
    processors = fit(pool.vectors(ref_ids))  # one per space the model votes in, its own first
    notes = _common_notes(store) + _good_notes(store, ref_ids, ref_labels, good_from)
    training = TrainingSet(
        train_ids=ref_ids,
        train_labels=ref_labels,
        test_ids=np.empty(0, np.int64),
        test_labels=[],
        expnum_of={int(i): int(expnum_of(i)) for i in ref_ids},
        notes=notes,
    )
    settings = {
        "rule": "calibrated",
        "threshold": cv.chosen["threshold"],
        "fraction": cv.chosen["fraction"],
        "local_threshold": cv.chosen["local_threshold"],
        "local_classes": list(cv.local_classes),
        "objective": config.train.objective,
        "unknown_distance": cv.unknown_distance,
        "unknown_quantile": config.train.unknown_quantile,
        "cv": cv.summary(),
        "postprocess_method": method if isinstance(method, str) else list(method),
        "postprocess_steps": list(processors[0].steps),
        "postprocess_cv": scores,
        "good_from": good_from,
    }
    if len(processors) > 1:
        settings["vote_spaces"] = list(view_methods(method))
        settings["vote_space_steps"] = [list(p.steps) for p in processors]
    return _save(store, config, training, processors[0], settings, {}, layout.block_list, processors[1:])


def _cross_validated_postprocessor(layout: VectorLayout, config: Config, pool: LabelledPool):
    """Cross-validate the rule with each candidate post-processor on the same folds; keep the best.

    Returns (method, its fitter, its cross-validation, every candidate's score by method name). Ties go
    to the first candidate (``candidate_methods`` lists its best guess first).
    """
    blocks = layout.block_list
    pairs = orientation_pairs(layout.feature_names, config.postprocess.orientation)
    best, scores = None, {}
    for method in candidate_methods(config.postprocess.method, layout.embedder, blocks):
        fit = make_fitter(config.postprocess, method, blocks, pairs)
        cv = cross_validate(pool, config.train, config.classify, fit, config.train.seed)
        scores["+".join(method) if isinstance(method, tuple) else method] = round(cv.chosen["score"], 6)
        if best is None or cv.chosen["score"] > best[2].chosen["score"]:
            best = (method, fit, cv)
    return (*best, scores)


def _good_notes(store: Store, ref_ids, ref_labels, good_from: str) -> list[str]:
    good_exp = sorted(
        {int(expnum_of(i)) for i, label in zip(ref_ids, ref_labels, strict=True) if label == GOOD}
    )
    n_later = classified_later(store, good_exp)
    source = f"--good-from {good_from}" if good_from else "unlabelled exposures (no --good-from)"
    note = f"good references: {len(good_exp):,} exposures from {source}"
    if n_later:
        note += (
            f"; {n_later:,} of them carry no label, so `vec classify --all` will also classify them "
            "(never with their own CCDs as neighbours)"
        )
    return [note]


def _save(
    store, config, training: TrainingSet, processor, extra: dict, weights: dict, blocks, more_spaces=()
) -> TrainResult:
    """Write the model version and its catalog rows; shared by both rules. ``blocks``: the vectors'
    blocks (:class:`VectorLayout`), recorded in the settings; ``more_spaces``: the post-processors of the
    other spaces a two-space vote uses."""
    classes, class_weights = class_table(training.train_labels, weights)
    code = {c: i for i, c in enumerate(classes)}
    order = np.argsort(training.train_ids)
    reference = ReferenceSet(
        ids=np.sort(training.train_ids),
        labels=np.array([code[training.train_labels[i]] for i in order], dtype=np.int64),
        classes=classes,
        class_weights=class_weights,
    )
    k = extra.get("k", config.classify.k)
    if len(reference.ids) < k:
        raise TrainingError(f"only {len(reference.ids)} training CCDs: need at least k={k}")
    settings = {
        "n_components": config.postprocess.n_components,
        "variance_threshold": config.postprocess.variance_threshold,
        "output_dim": processor.output_dim,
        "k": k,
        "prob_cut": config.classify.prob_cut,
        "min_bad_ccds": config.classify.min_bad_ccds,
        "seed": config.train.seed,
        "good_per_bad": config.train.good_per_bad,
        "max_ebv": config.train.max_ebv,
        "counts": training.counts(),
        "notes": training.notes,
        "blocks": blocks,
        **extra,
    }
    version = write_model(
        store,
        processor,
        reference,
        settings,
        reference_spec=config.index.reference,
        corpus_spec=config.index.corpus,
        ef_construction=config.index.hnsw_ef_construction,
        more_spaces=tuple(more_spaces),
    )
    _record_model(store, version, training, settings, dict(zip(classes, class_weights, strict=True)))
    return TrainResult(version, training, classes, class_weights, settings)


def _train_paper(store: Store, config: Config, good_from: str, *, tune: bool, n_iter: int) -> TrainResult:
    """The paper's training set, optionally tuned, fitted and indexed as in vec's first version."""
    training = build_training_set(store, config, good_from)
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
    blocks = VectorLayout.of(store.provenance()).block_list
    processor = fit_postprocessor(train_vectors, n_components, threshold, blocks=blocks)
    settings = {
        "rule": "paper",
        "n_components": n_components,
        "variance_threshold": threshold,
        "k": k,
        "downsample": config.train.downsample,
        "test_fraction": config.train.test_fraction,
        "tuning": tuning,
        "good_from": good_from,
    }
    training = dataclasses.replace(training, notes=_common_notes(store) + training.notes)
    return _save(store, config, training, processor, settings, config.train.class_weights, blocks)


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


def scores_line(scores: dict[str, float]) -> str:
    """Each candidate post-processor's cross-validated score, as ``vec train`` prints them."""
    return ", ".join(f"{method} {score:.3f}" for method, score in scores.items())


def describe_training(result: TrainResult) -> str:
    """What ``vec train`` prints: the model, its reference classes and, for the calibrated rule, the
    thresholds cross-validation chose and the quality it measured."""
    counts = result.training.counts()
    s = result.settings
    n_train, n_test = sum(counts["train"].values()), sum(counts["test"].values())
    split = f", {n_test:,} test CCDs" if n_test else ""
    lines = [
        f"model {result.version} ({s['rule']} rule): {n_train:,} reference CCDs{split}, "
        f"{s['output_dim']} dimensions after post-processing"
    ]
    for label, weight in zip(result.classes, result.class_weights, strict=True):
        test = f"  test {counts['test'].get(label, 0):>7,}" if n_test else ""
        lines.append(f"  {label:<22} train {counts['train'].get(label, 0):>7,}{test}  weight {weight:.3g}")
    if s["rule"] == "calibrated":
        cv = s["cv"]
        lines.append(
            f"  calibrated by {cv['folds']}-fold cross-validation grouped by exposure on "
            f"{cv['bad_exposures']:,} bad and {cv['good_exposures']:,} good exposures ({s['objective']}):"
        )
        alone = single_ccd_clause(s.get("local_classes", ()), s.get("local_threshold"))
        lines.append(
            f"  CCD flagged at p_bad >= {s['threshold']:g}; exposure bad when >= {s['fraction']:.0%} of its "
            f"CCDs are flagged{alone} -> accuracy {cv['accuracy']:.3f}, bad precision {cv['precision']:.3f}, "
            f"recall {cv['recall']:.3f}"
        )
        if s.get("vote_space_steps"):
            lines.append(f"  votes averaged over {len(s['vote_space_steps'])} spaces:")
            for name, steps in zip(s["vote_spaces"], s["vote_space_steps"], strict=True):
                lines.append(f"    {name}: {' -> '.join(steps)}")
        else:
            lines.append(f"  post-processor: {' -> '.join(s['postprocess_steps'])}")
        if len(s.get("postprocess_cv", {})) > 1:
            lines.append(
                f"  chosen by cross-validation ({s['objective']}): {scores_line(s['postprocess_cv'])}"
            )
    if s.get("tuning"):
        lines.append(f"  tuning chose {s['tuning']['best_params']}")
    return "\n".join(lines)

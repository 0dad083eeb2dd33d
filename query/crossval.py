"""K-fold cross-validation grouped by exposure: the calibrated rule's ``(t, f)`` and its quality.

Folds are drawn over exposures, separately for bad and good ones (so each fold holds both), seeded.
Each fold: the reference set is the other folds' labelled bad CCDs plus good CCDs drawn from the other
folds' good exposures; the post-processor (one per space of a two-space vote) is fitted on it; every
held-out exposure is classified as ``vec classify`` would (its CCDs drawn with the same seed, k L1
neighbours in each space, uniform votes averaged over the spaces) and keeps the
``p_bad`` of each CCD (and its probability of the CCD-level classes, :func:`ccd_level_categories`). The
grid search (:mod:`query.calibrate`) then runs on all folds' exposures at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from query.calibrate import GridScores, calibrate
from query.good_set import draw_good
from query.knn import vote_in_spaces
from query.vote import p_bad_of, p_local_of
from vecstore.errors import TrainingError
from vecstore.exact_l1 import ExactL1Index, ExactL1Searcher
from vecstore.postprocess import fit_postprocessor, view_methods
from vecstore.vocabulary import CATEGORIES, GOOD, expnum_of


@dataclass(frozen=True)
class LabelledPool:
    """Everything cross-validation and the deployed reference set draw from."""

    bad: dict[int, str]  # ccd_id -> category of each labelled bad CCD
    good: dict[int, list[int]]  # good expnum -> its candidate good CCD ids
    members: dict[int, np.ndarray]  # expnum -> the CCD ids classify would use for that exposure
    vectors: Callable[[np.ndarray], np.ndarray]  # sorted ccd_ids -> raw vectors (float32)

    def bad_expnums(self) -> list[int]:
        return sorted({expnum_of(i) for i in self.bad})


def ccd_level_categories(pool: LabelledPool) -> tuple[str, ...]:
    """The labelled categories whose labels name single CCDs rather than whole exposures, in vec's order:
    those for which, in most labelled exposures, some of the CCDs ``vec classify`` draws carry no label of
    theirs (DELVE's per-CCD lists and ``ccd_cuts``; decam-bad_expid names whole exposures, every CCD)."""
    labelled: dict[tuple[int, str], set[int]] = {}
    for ccd_id, category in pool.bad.items():
        labelled.setdefault((int(expnum_of(ccd_id)), category), set()).add(int(ccd_id))
    partial: dict[str, list[bool]] = {}
    for (expnum, category), ids in labelled.items():
        members = {int(i) for i in pool.members.get(expnum, ())}
        partial.setdefault(category, []).append(bool(members - ids))
    return tuple(c for c in CATEGORIES if c in partial and np.mean(partial[c]) > 0.5)


@dataclass(frozen=True)
class CrossValidation:
    grid: GridScores
    chosen: dict  # threshold, fraction, local_threshold (None = off), score, precision, recall, accuracy
    folds: int
    n_bad_exposures: int
    n_good_exposures: int
    unknown_distance: float  # the unknown_quantile of held-out CCDs' k-th neighbour distances
    local_classes: tuple[str, ...] = ()  # the CCD-level categories of the single-CCD rule
    local_thresholds: tuple = ()  # the t_l axis searched (None = off)
    local_scores: tuple = ()  # the best (t, f) score at each

    def summary(self) -> dict:
        return {
            **self.chosen,
            "local_classes": list(self.local_classes),
            "local_thresholds": list(self.local_thresholds),
            "local_scores": [round(float(x), 6) for x in self.local_scores],
            "folds": self.folds,
            "bad_exposures": self.n_bad_exposures,
            "good_exposures": self.n_good_exposures,
            "unknown_distance": self.unknown_distance,
            "thresholds": self.grid.thresholds.tolist(),
            "fractions": self.grid.fractions.tolist(),
            "score_grid": np.round(self.grid.score, 6).tolist(),
            "precision_grid": np.round(self.grid.precision, 6).tolist(),
            "recall_grid": np.round(self.grid.recall, 6).tolist(),
        }


def assign_folds(expnums: list[int], n_folds: int, rng: np.random.Generator) -> dict[int, int]:
    """expnum -> fold, round-robin over a seeded permutation (fold sizes differ by at most one)."""
    order = rng.permutation(sorted(expnums)).tolist()
    return {int(e): i % n_folds for i, e in enumerate(order)}


def reference_set(
    pool: LabelledPool, bad_expnums: set[int], good_expnums: list[int], good_per_bad: float, rng
) -> tuple[np.ndarray, list[str]]:
    """Sorted reference ids and their labels: the bad CCDs of ``bad_expnums`` and drawn good CCDs."""
    bad_ids = [i for i in sorted(pool.bad) if expnum_of(i) in bad_expnums]
    good_ids = draw_good(pool.good, good_expnums, int(round(good_per_bad * len(bad_ids))), rng)
    labels = {**{i: pool.bad[i] for i in bad_ids}, **{i: GOOD for i in good_ids}}
    ids = np.array(sorted(labels), dtype=np.int64)
    return ids, [labels[int(i)] for i in ids]


def class_codes(labels: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Classes in vec's fixed order (good first) and each label's integer code."""
    classes = tuple(c for c in (GOOD, *CATEGORIES) if c in set(labels))
    code = {c: i for i, c in enumerate(classes)}
    return classes, np.array([code[c] for c in labels], dtype=np.int64)


def _fold_p_bad(
    pool, ref_ids, ref_labels, queries: list[int], k: int, fit, device: str = "cpu", local_classes=()
) -> tuple[dict, dict, np.ndarray]:
    """Each held-out exposure's CCD ``p_bad`` and CCD-level probability, and every held-out CCD's k-th
    neighbour distance (in the first space). ``fit`` gives one post-processor per space; the class
    probabilities are the mean of the spaces' votes, as ``vec classify`` takes them."""
    ref_vectors = pool.vectors(ref_ids)
    spaces = [
        (processor, ExactL1Searcher(ExactL1Index.build(processor.transform(ref_vectors)), ref_ids))
        for processor in fit(ref_vectors)
    ]
    classes, codes = class_codes(ref_labels)
    query_ids = np.sort(np.concatenate([pool.members[e] for e in queries]))
    probs, neighbours = vote_in_spaces(
        spaces,
        pool.vectors(query_ids),
        k,
        ref_ids,
        codes,
        len(classes),
        reference_expnums=expnum_of(ref_ids),
        query_expnums=expnum_of(query_ids),
        device=device,
    )
    p_bad, p_local = p_bad_of(probs, classes), p_local_of(probs, classes, local_classes)
    of = expnum_of(query_ids)
    return (
        {e: p_bad[of == e] for e in queries},
        {e: p_local[of == e] for e in queries},
        neighbours.distances[:, -1],
    )


def cross_validate(pool: LabelledPool, train_cfg, classify_cfg, fit, seed: int) -> CrossValidation:
    """Grouped K-fold CV of the calibrated rule; ``fit(vectors) -> PostProcessor``."""
    bad_exp, good_exp = pool.bad_expnums(), sorted(pool.good)
    n_folds = min(train_cfg.folds, len(bad_exp), len(good_exp))
    if n_folds < 2:
        raise TrainingError(
            f"calibrating the rule needs at least 2 labelled bad and 2 good exposures (have {len(bad_exp)} "
            f"bad, {len(good_exp)} good): label more exposures, give --good-from, or train --rule paper"
        )
    rng = np.random.default_rng(seed)
    fold_of = {**assign_folds(bad_exp, n_folds, rng), **assign_folds(good_exp, n_folds, rng)}
    local_classes = ccd_level_categories(pool) if train_cfg.single_ccd_rule else ()
    p_bad: dict[int, np.ndarray] = {}
    p_local: dict[int, np.ndarray] = {}
    kth: list[np.ndarray] = []
    for fold in range(n_folds):
        held = [e for e in (*bad_exp, *good_exp) if fold_of[e] == fold]
        ref_ids, ref_labels = reference_set(
            pool,
            {e for e in bad_exp if fold_of[e] != fold},
            [e for e in good_exp if fold_of[e] != fold],
            train_cfg.good_per_bad,
            rng,
        )
        fold_p_bad, fold_p_local, fold_kth = _fold_p_bad(
            pool, ref_ids, ref_labels, held, classify_cfg.k, fit, classify_cfg.knn_device, local_classes
        )
        p_bad.update(fold_p_bad)
        p_local.update(fold_p_local)
        kth.append(fold_kth)
    expnums = sorted(p_bad)
    bad_set = set(bad_exp)
    calibration = calibrate(
        [p_bad[e] for e in expnums],
        [p_local[e] for e in expnums] if local_classes else None,
        np.array([e in bad_set for e in expnums]),
        train_cfg.grid_step,
        train_cfg.objective,
        train_cfg.precision_target,
    )
    # A CCD farther from its k-th reference neighbour than this share of held-out labelled CCDs is
    # "unknown": it looks like nothing the labels describe (a new kind of artifact, or a new survey).
    unknown = float(np.quantile(np.concatenate(kth), train_cfg.unknown_quantile))
    off = calibration.chosen["local_threshold"] is None
    return CrossValidation(
        calibration.grid,
        calibration.chosen,
        n_folds,
        len(bad_exp),
        len(good_exp),
        unknown,
        () if off else local_classes,
        tuple(calibration.local_thresholds),
        tuple(float(x) for x in calibration.local_scores),
    )


def make_fitter(postprocess_cfg, method, blocks, magnitude_pairs=None) -> Callable[[np.ndarray], tuple]:
    """The post-processors (one per space, :func:`vecstore.postprocess.view_methods`) fitted for every
    fold and for the deployed model."""

    def fit(vectors: np.ndarray) -> tuple:
        return tuple(
            fit_postprocessor(
                vectors,
                postprocess_cfg.n_components,
                postprocess_cfg.variance_threshold,
                blocks=blocks,
                method=view,
                magnitude_pairs=magnitude_pairs,
            )
            for view in view_methods(method)
        )

    return fit

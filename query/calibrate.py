"""Choosing the calibrated rule's thresholds ``(t, f)`` from cross-validated CCD scores (pure functions).

Each cross-validated exposure comes with the ``p_bad`` of its classified CCDs and whether it is truly bad.
For every ``t`` (CCD flagged when ``p_bad >= t``) and ``f`` (exposure bad when a fraction >= f of its CCDs
are flagged, and at least one) on a grid, the objective is computed over the exposures:

- ``accuracy``: share of exposures called right;
- ``f1``: F1 of the bad class;
- ``recall_at_precision``: recall where precision reaches ``precision_target``; cells below the target
  score ``precision - target`` (negative), so the closest miss wins when none reaches it.

Many cells usually tie at the maximum (k = 7 makes ``p_bad`` a multiple of 1/7, so t = 0.30 and t = 0.40
flag the same CCDs). The chosen cell is the centre of the largest connected plateau of maximal cells:
the point farthest from its edges, where a small shift of the data moves the score least.

:func:`calibrate` looks for that plateau in the objective **averaged over each cell's 3 x 3
neighbourhood** (cells beyond the grid count as 0): a maximal cell whose neighbours score worse — a ridge
one grid step wide, or a corner such as t = 0.05 (one bad neighbour in 7 flags a CCD) — is where a
small change of the data changes the verdicts most. Measured on four simulated stores
(``bench/classify_bench.py``'s protocol), it kept held-out accuracy where the raw maximum had chosen such
a corner and lost 0.04 of precision.

The single-CCD rule's ``t_l`` (:mod:`query.vote`) is a third axis: for each ``t_l`` on the same grid, and
"off", exposures with a CCD whose CCD-level probability reaches ``t_l`` are called bad whatever ``(t, f)``
say, and the ``(t, f)`` cell is found as above. The ``t_l`` kept is the middle of the longest run of
grid values whose best averaged score is the maximum, "off" counting as the value after 1.0 (so a tie
between 1.0 and off, where no CCD reaches 1.0 alone, is settled by the run, not by the order of the loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from query.vote import flags_needed
from vecstore.errors import ConfigError

OBJECTIVES = ("accuracy", "f1", "recall_at_precision")


def default_grid(step: float) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds t in (0, 1] and fractions f in [0, 1] spaced by ``step``."""
    n = int(round(1.0 / step))
    return np.round(np.arange(1, n + 1) * step, 6), np.round(np.arange(0, n + 1) * step, 6)


@dataclass(frozen=True)
class GridScores:
    thresholds: np.ndarray  # (T,)
    fractions: np.ndarray  # (F,)
    score: np.ndarray  # (T, F) the objective
    precision: np.ndarray
    recall: np.ndarray
    accuracy: np.ndarray

    def at(self, i: int, j: int) -> dict[str, float]:
        return {
            "threshold": float(self.thresholds[i]),
            "fraction": float(self.fractions[j]),
            "score": float(self.score[i, j]),
            "precision": float(self.precision[i, j]),
            "recall": float(self.recall[i, j]),
            "accuracy": float(self.accuracy[i, j]),
        }


def exposures_called_bad(p_bad: list[np.ndarray], threshold: float, fraction: float) -> np.ndarray:
    """(n_exposures,) the calibrated rule's verdicts for one (t, f)."""
    return np.array(
        [len(p) > 0 and int((p >= threshold).sum()) >= flags_needed(len(p), fraction) for p in p_bad],
        dtype=bool,
    )


def _objective(tp, fp, fn, tn, objective: str, precision_target: float) -> tuple[float, float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    accuracy = (tp + tn) / max(tp + fp + fn + tn, 1)
    if objective == "accuracy":
        score = accuracy
    elif objective == "f1":
        score = 2 * tp / max(2 * tp + fp + fn, 1)
    elif objective == "recall_at_precision":
        score = recall if precision >= precision_target else precision - precision_target
    else:
        raise ConfigError(f"objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    return score, precision, recall, accuracy


def score_grid(
    p_bad: list[np.ndarray],
    truth_bad: np.ndarray,
    thresholds: np.ndarray,
    fractions: np.ndarray,
    objective: str = "accuracy",
    precision_target: float = 0.95,
    forced: np.ndarray | None = None,
) -> GridScores:
    """The objective (and precision, recall, accuracy) of every (t, f) over the exposures; ``forced``
    marks exposures called bad whatever (t, f) (the single-CCD rule)."""
    truth = np.asarray(truth_bad, dtype=bool)
    forced = np.zeros(len(truth), dtype=bool) if forced is None else np.asarray(forced, dtype=bool)
    shape = (len(thresholds), len(fractions))
    out = {name: np.zeros(shape) for name in ("score", "precision", "recall", "accuracy")}
    for i, t in enumerate(thresholds):
        # Flagged share per exposure is all that f needs: one pass over the CCDs per threshold.
        flagged = [int((p >= t).sum()) for p in p_bad]
        sizes = [len(p) for p in p_bad]
        for j, f in enumerate(fractions):
            called = forced | np.array(
                [n > 0 and k >= flags_needed(n, f) for k, n in zip(flagged, sizes, strict=True)], dtype=bool
            )
            tp, fp = int((called & truth).sum()), int((called & ~truth).sum())
            fn, tn = int((~called & truth).sum()), int((~called & ~truth).sum())
            values = _objective(tp, fp, fn, tn, objective, precision_target)
            for name, value in zip(("score", "precision", "recall", "accuracy"), values, strict=True):
                out[name][i, j] = value
    return GridScores(np.asarray(thresholds), np.asarray(fractions), **out)


def plateau_centre(score: np.ndarray, tolerance: float = 1e-9) -> tuple[int, int]:
    """(i, j) of the cell deepest inside the largest connected region of maximal cells.

    Depth is the chessboard distance to the nearest cell outside the region (the grid's edge counts as
    outside: the grid ends there, the data do not); ties go to the cell nearest the region's centroid,
    then to the smaller (t, f).
    """
    best = score >= np.nanmax(score) - tolerance
    regions, n = ndimage.label(best)
    sizes = ndimage.sum(best, regions, index=np.arange(1, n + 1))
    region = regions == (1 + int(np.argmax(sizes)))
    depth = ndimage.distance_transform_cdt(np.pad(region, 1), metric="chessboard")[1:-1, 1:-1]
    cells = np.argwhere(region)
    centroid = cells.mean(axis=0)
    key = [(-depth[i, j], float(np.hypot(*(np.array([i, j]) - centroid))), i, j) for i, j in cells]
    _, _, i, j = min(key)
    return int(i), int(j)


@dataclass(frozen=True)
class Calibration:
    """The chosen thresholds, the (t, f) grid at the chosen ``t_l``, and the best score at every ``t_l``."""

    grid: GridScores
    chosen: dict[str, float | None]  # threshold, fraction, local_threshold, score, precision, ...
    local_thresholds: list[float | None]  # the t_l axis (None = off, last)
    local_scores: np.ndarray  # best score of the (t, f) grid at each t_l


def calibrate(
    p_bad: list[np.ndarray],
    p_local: list[np.ndarray] | None,
    truth_bad: np.ndarray,
    step: float,
    objective: str = "accuracy",
    precision_target: float = 0.95,
) -> Calibration:
    """Choose ``(t, f, t_l)`` on the grid of ``step`` (see the module docstring). ``p_local`` None or all
    zero (no CCD-level class among the labels): the single-CCD rule stays off."""
    thresholds, fractions = default_grid(step)
    peak = [float(np.max(p, initial=0.0)) for p in p_local] if p_local is not None else []
    axis: list[float | None] = [*(float(t) for t in thresholds), None] if any(peak) else [None]
    grids, averaged = [], []
    for t_l in axis:
        forced = None if t_l is None else np.array([m >= t_l - 1e-9 for m in peak], dtype=bool)
        grids.append(score_grid(p_bad, truth_bad, thresholds, fractions, objective, precision_target, forced))
        averaged.append(neighbourhood_mean(grids[-1].score))
    best = np.array([float(a.max()) for a in averaged])
    k = _middle_of_longest_run(best >= best.max() - 1e-9)
    grid = grids[k]
    chosen = {**grid.at(*plateau_centre(averaged[k])), "local_threshold": axis[k]}
    return Calibration(grid, chosen, axis, np.array([float(np.nanmax(g.score)) for g in grids]))


def neighbourhood_mean(score: np.ndarray) -> np.ndarray:
    """Each cell's mean over its 3 x 3 neighbourhood, cells beyond the grid counting as 0."""
    return ndimage.uniform_filter(np.nan_to_num(np.asarray(score, dtype=np.float64)), size=3, mode="constant")


def _middle_of_longest_run(mask: np.ndarray) -> int:
    """Index of the middle of the longest run of True (the first such run; the upper middle of an even
    run, toward the more conservative threshold)."""
    best_start, best_len, start = 0, 0, None
    for i, value in enumerate([*mask.tolist(), False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    return best_start + best_len // 2

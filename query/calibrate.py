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
) -> GridScores:
    """The objective (and precision, recall, accuracy) of every (t, f) over the exposures."""
    truth = np.asarray(truth_bad, dtype=bool)
    shape = (len(thresholds), len(fractions))
    out = {name: np.zeros(shape) for name in ("score", "precision", "recall", "accuracy")}
    for i, t in enumerate(thresholds):
        # Flagged share per exposure is all that f needs: one pass over the CCDs per threshold.
        flagged = [int((p >= t).sum()) for p in p_bad]
        sizes = [len(p) for p in p_bad]
        for j, f in enumerate(fractions):
            called = np.array(
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

"""From class probabilities to verdicts: the 0.9 cut per CCD and the vote per exposure (pure functions).

A CCD is bad when its largest non-good class probability is at least ``prob_cut``; its label is then that
class, otherwise "good". An exposure is bad when at least ``min_bad_ccds`` of its classified CCDs are bad;
its category is the one most bad CCDs share (a tie goes to the higher mean probability, then to the
category listed first).

Which ``min_bad_ccds``: the paper's text says 10 of 20 CCDs; the authors' code flagged an exposure when
more than 2 of its 20 CCDs were bad, i.e. 3. vec's default is 3 because the per-CCD cut is already strict
(with k=7 and uniform weights, p >= 0.9 means all 7 neighbours agree) and because several categories live
on a few CCDs only (Bad_CCD, Noise, a ghost near one edge): 10 of 20 would miss them by construction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

GOOD = "good"


@dataclass(frozen=True)
class CCDVerdict:
    label: str  # the bad category, or "good"
    prob: float  # probability of that label
    is_bad: bool


@dataclass(frozen=True)
class ExposureVerdict:
    is_bad: bool
    category: str  # most frequent category among bad CCDs, or "good"
    n_bad: int
    n_ccds: int
    mean_prob: float  # mean probability of the chosen category over the CCDs that voted for it


def ccd_verdicts(probs: np.ndarray, classes: tuple[str, ...], prob_cut: float) -> list[CCDVerdict]:
    """Apply the cut to each row of (n, n_classes) probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    bad_columns = [i for i, c in enumerate(classes) if c != GOOD]
    good_column = classes.index(GOOD) if GOOD in classes else None
    verdicts = []
    for row in probs:
        best = bad_columns[int(np.argmax(row[bad_columns]))] if bad_columns else None
        if best is not None and row[best] >= prob_cut:
            verdicts.append(CCDVerdict(classes[best], float(row[best]), True))
        else:
            p_good = float(row[good_column]) if good_column is not None else 0.0
            verdicts.append(CCDVerdict(GOOD, p_good, False))
    return verdicts


def exposure_vote(
    verdicts: list[CCDVerdict], min_bad_ccds: int, category_order: tuple[str, ...] = ()
) -> ExposureVerdict:
    """The exposure-level decision from its CCDs' verdicts."""
    bad = [v for v in verdicts if v.is_bad]
    if len(bad) < max(1, min_bad_ccds):
        return ExposureVerdict(False, GOOD, len(bad), len(verdicts), 0.0)
    counts = Counter(v.label for v in bad)
    mean_prob = {c: float(np.mean([v.prob for v in bad if v.label == c])) for c in counts}
    order = {c: i for i, c in enumerate(category_order)}
    category = min(counts, key=lambda c: (-counts[c], -mean_prob[c], order.get(c, len(order)), c))
    return ExposureVerdict(True, category, len(bad), len(verdicts), mean_prob[category])

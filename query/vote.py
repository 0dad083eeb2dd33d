"""From class probabilities to verdicts, per CCD and per exposure (pure functions), for both rules.

**calibrated** (vec's default). Per CCD ``p_bad = 1 - P(good)``: the bad classes do not split the vote, so
a CCD whose neighbours are 3 Ghost_Scatter, 2 PSF and 2 good is 5/7 bad, and an artifact kind never
labelled still lands among bad neighbours. A CCD is flagged when ``p_bad >= t``; an exposure is bad when
at least a fraction ``f`` of its classified CCDs are flagged, and at least one. ``(t, f)`` are chosen by
``vec train`` with cross-validation (:mod:`query.calibrate`). A fraction, not a count, so the rule means
the same on a 4-CCD cutout, the paper's 20 drawn CCDs and a whole 61-CCD exposure. The category is the
bad class with the largest summed probability over the flagged CCDs.

One CCD can also make an exposure bad **on its own**: for the *CCD-level* categories — those whose labels
name single CCDs, not whole exposures (DELVE's per-CCD lists: Bad_CCD, Noise, Ghost_Scatter), found by
``vec train`` from the labels themselves (:func:`query.crossval.ccd_level_categories`) — a CCD whose
probability of those classes reaches ``t_l`` (also cross-validated; ``None`` = off) is flagged, and the
exposure is bad. A dead amplifier on one CCD
of 20 is a bad exposure, but no fraction of 1/20 could be told apart from the odd good CCD whose
neighbours happen to be bad: the fraction rule pools evidence for exposure-wide artifacts (clouds, PSF,
focus), the single-CCD rule judges artifacts that are CCD-sized by nature. Its category is the CCD-level
class with the largest summed probability over those CCDs.

**paper** (the reproduction of Luo et al.). A CCD is bad when its largest non-good class probability is
at least ``prob_cut``; its label is then that class, otherwise "good". An exposure is bad when at least
``min_bad_ccds`` of its classified CCDs are bad; its category is the one most bad CCDs share (a tie goes
to the higher mean probability, then to the category listed first). The paper's text says 10 of 20 CCDs;
the authors' code flagged an exposure when more than 2 of its 20 CCDs were bad, i.e. 3 (vec's default).

Every CCD verdict also carries ``p_bad`` and its top bad class with that class's probability, so a person
sees "good, but 3/7 of its neighbours are Ghost_Scatter" whichever rule decided.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from vecstore.vocabulary import GOOD

RULES = ("calibrated", "paper")


@dataclass(frozen=True)
class CCDVerdict:
    label: str  # the bad category, or "good"
    prob: float  # probability of that label
    is_bad: bool
    p_bad: float = 0.0  # 1 - P(good)
    top_bad: str = ""  # the most probable bad class, even when the CCD is called good
    top_bad_prob: float = 0.0
    p_local: float = 0.0  # probability of the CCD-level classes (calibrated rule)
    alone: bool = False  # flagged by the single-CCD rule: makes its exposure bad on its own


@dataclass(frozen=True)
class ExposureVerdict:
    is_bad: bool
    category: str  # the exposure's bad category, or "good"
    n_bad: int  # CCDs flagged bad
    n_ccds: int
    mean_prob: float  # mean probability of the chosen category over the flagged CCDs


def _bad_columns(classes: tuple[str, ...]) -> list[int]:
    return [i for i, c in enumerate(classes) if c != GOOD]


def p_bad_of(probs: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """(n, n_classes) probabilities -> (n,) probability that the CCD is bad, of any kind."""
    probs = np.asarray(probs, dtype=np.float64)
    if GOOD not in classes:
        return np.ones(len(probs))
    return 1.0 - probs[:, classes.index(GOOD)]


def _top_bad(
    row: np.ndarray, bad_columns: list[int], classes: tuple[str, ...]
) -> tuple[int | None, str, float]:
    if not bad_columns:
        return None, "", 0.0
    best = bad_columns[int(np.argmax(row[bad_columns]))]  # ties: the first column (the paper's order)
    return best, classes[best], float(row[best])


def ccd_verdicts(probs: np.ndarray, classes: tuple[str, ...], prob_cut: float) -> list[CCDVerdict]:
    """The paper's cut on each row of (n, n_classes) probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    bad_columns = _bad_columns(classes)
    good_column = classes.index(GOOD) if GOOD in classes else None
    verdicts = []
    for row, p_bad in zip(probs, p_bad_of(probs, classes), strict=True):
        best, top, top_prob = _top_bad(row, bad_columns, classes)
        if best is not None and top_prob >= prob_cut:
            verdicts.append(CCDVerdict(top, top_prob, True, float(p_bad), top, top_prob))
        else:
            p_good = float(row[good_column]) if good_column is not None else 0.0
            verdicts.append(CCDVerdict(GOOD, p_good, False, float(p_bad), top, top_prob))
    return verdicts


def _local_columns(classes: tuple[str, ...], local_classes) -> list[int]:
    return [i for i in _bad_columns(classes) if classes[i] in set(local_classes)]


def p_local_of(probs: np.ndarray, classes: tuple[str, ...], local_classes) -> np.ndarray:
    """(n, n_classes) probabilities -> (n,) probability of the CCD-level classes."""
    columns = _local_columns(classes, local_classes)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    return probs[:, columns].sum(axis=1) if columns else np.zeros(len(probs))


def single_ccd_clause(local_classes, local_threshold: float | None) -> str:
    """The single-CCD rule in words, to append to the fraction rule's; empty when it is off."""
    if local_threshold is None or not local_classes:
        return ""
    return f", or when one CCD has p({'+'.join(local_classes)}) >= {local_threshold:g}"


def calibrated_ccd_verdicts(
    probs: np.ndarray,
    classes: tuple[str, ...],
    threshold: float,
    local_classes: tuple[str, ...] = (),
    local_threshold: float | None = None,
) -> list[CCDVerdict]:
    """A CCD is flagged when ``p_bad >= threshold``, or alone when its CCD-level classes' probability is
    ``>= local_threshold``; its label is then its top bad class (its top CCD-level class when alone)."""
    probs = np.asarray(probs, dtype=np.float64)
    bad_columns = _bad_columns(classes)
    local_columns = _local_columns(classes, local_classes)
    p_local = p_local_of(probs, classes, local_classes)
    verdicts = []
    for row, p_bad, p_loc in zip(probs, p_bad_of(probs, classes), p_local, strict=True):
        _, top, top_prob = _top_bad(row, bad_columns, classes)
        alone = local_threshold is not None and bool(local_columns) and p_loc >= local_threshold - 1e-9
        if alone:
            _, label, prob = _top_bad(row, local_columns, classes)
            verdicts.append(CCDVerdict(label, prob, True, float(p_bad), top, top_prob, float(p_loc), True))
        elif top and p_bad >= threshold:
            verdicts.append(CCDVerdict(top, top_prob, True, float(p_bad), top, top_prob, float(p_loc)))
        else:
            verdicts.append(
                CCDVerdict(GOOD, float(1.0 - p_bad), False, float(p_bad), top, top_prob, float(p_loc))
            )
    return verdicts


def exposure_vote(
    verdicts: list[CCDVerdict], min_bad_ccds: int, category_order: tuple[str, ...] = ()
) -> ExposureVerdict:
    """The paper's exposure-level decision: at least ``min_bad_ccds`` bad CCDs."""
    bad = [v for v in verdicts if v.is_bad]
    if len(bad) < max(1, min_bad_ccds):
        return ExposureVerdict(False, GOOD, len(bad), len(verdicts), 0.0)
    counts = Counter(v.label for v in bad)
    mean_prob = {c: float(np.mean([v.prob for v in bad if v.label == c])) for c in counts}
    order = {c: i for i, c in enumerate(category_order)}
    category = min(counts, key=lambda c: (-counts[c], -mean_prob[c], order.get(c, len(order)), c))
    return ExposureVerdict(True, category, len(bad), len(verdicts), mean_prob[category])


def flags_needed(n_ccds: int, fraction: float) -> int:
    """Flagged CCDs that make an exposure of ``n_ccds`` bad: ceil(f * n), at least 1."""
    # The small epsilon keeps f = 0.25 of 4 CCDs at exactly 1 despite binary floating point.
    return max(1, math.ceil(fraction * n_ccds - 1e-9))


def fraction_vote(
    verdicts: list[CCDVerdict],
    probs: np.ndarray,
    classes: tuple[str, ...],
    fraction: float,
    category_order: tuple[str, ...] = (),
) -> ExposureVerdict:
    """The calibrated exposure-level decision from its CCDs' :func:`calibrated_ccd_verdicts` and their
    (n_ccds, n_classes) probabilities (for the category): bad when a CCD is flagged alone, or when at
    least the share ``fraction`` of its CCDs are flagged."""
    flagged = np.array([v.is_bad for v in verdicts], dtype=bool)
    alone = np.array([v.alone for v in verdicts], dtype=bool)
    n_flagged = int(flagged.sum())
    by_fraction = len(verdicts) > 0 and n_flagged >= flags_needed(len(verdicts), fraction)
    if not (by_fraction or alone.any()):
        return ExposureVerdict(False, GOOD, n_flagged, len(verdicts), 0.0)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    if by_fraction:
        rows, bad_columns = flagged, _bad_columns(classes)
    else:  # bad through the single-CCD rule only: what made those CCDs alone names the category
        local = {v.label for v, is_alone in zip(verdicts, alone, strict=True) if is_alone}
        rows, bad_columns = alone, [i for i, c in enumerate(classes) if c in local]
    sums = probs[rows][:, bad_columns].sum(axis=0)
    order = {c: i for i, c in enumerate(category_order)}
    # Sums rounded so that float noise does not decide a tie; a tie goes to the category listed first.
    best = min(
        range(len(bad_columns)),
        key=lambda j: (-round(float(sums[j]), 9), order.get(classes[bad_columns[j]], len(order))),
    )
    column = bad_columns[best]
    return ExposureVerdict(True, classes[column], n_flagged, len(verdicts), float(probs[rows, column].mean()))

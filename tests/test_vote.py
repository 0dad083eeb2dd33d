"""The vote as pure functions on hand-made neighbour tables: thresholds, ties, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from query.knn import class_probabilities
from query.vote import CCDVerdict, ccd_verdicts, exposure_vote

CLASSES = ("good", "Clouds_Transparency", "Ghost_Scatter", "PSF")


def test_uniform_probabilities_are_neighbour_shares():
    labels = np.array([[1, 1, 1, 1, 1, 1, 1], [0, 0, 2, 2, 2, 3, 3]])
    probs = class_probabilities(labels, 4)
    np.testing.assert_allclose(probs[0], [0, 1, 0, 0])
    np.testing.assert_allclose(probs[1], [2 / 7, 0, 3 / 7, 2 / 7])


def test_class_weights_multiply_votes_then_normalise():
    # 5 Clouds neighbours (weight 3) and 2 good (weight 1): 15 / (15 + 2)
    probs = class_probabilities(np.array([[1, 1, 1, 1, 1, 0, 0]]), 4, np.array([1.0, 3.0, 2.0, 1.0]))
    assert probs[0, 1] == pytest.approx(15 / 17)
    assert probs[0, 0] == pytest.approx(2 / 17)
    assert probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("row", "cut", "expected"),
    [
        ([0.0, 1.0, 0.0, 0.0], 0.9, ("Clouds_Transparency", True)),
        ([1 / 7, 6 / 7, 0.0, 0.0], 0.9, ("good", False)),  # 6 of 7 is 0.857 < 0.9
        ([0.1, 0.9, 0.0, 0.0], 0.9, ("Clouds_Transparency", True)),  # the cut is inclusive
        ([1 / 7, 6 / 7, 0.0, 0.0], 0.8, ("Clouds_Transparency", True)),
        ([0.0, 0.5, 0.5, 0.0], 0.5, ("Clouds_Transparency", True)),  # tie between bad classes: first column
    ],
)
def test_ccd_cut(row, cut, expected):
    verdict = ccd_verdicts(np.array([row]), CLASSES, cut)[0]
    assert (verdict.label, verdict.is_bad) == expected


def _bad(label, prob=1.0):
    return CCDVerdict(label, prob, True)


GOOD = CCDVerdict("good", 1.0, False)


def test_exposure_needs_min_bad_ccds():
    verdicts = [_bad("PSF")] * 2 + [GOOD] * 18
    assert not exposure_vote(verdicts, 3).is_bad
    vote = exposure_vote(verdicts + [_bad("PSF")], 3)
    assert (vote.is_bad, vote.category, vote.n_bad, vote.n_ccds) == (True, "PSF", 3, 21)
    assert not exposure_vote([_bad("PSF")] * 9 + [GOOD] * 11, 10).is_bad  # the paper's text: 10 of 20


def test_exposure_category_is_the_most_frequent_then_most_probable():
    verdicts = [_bad("PSF", 0.9)] * 2 + [_bad("Ghost_Scatter", 1.0)] * 3
    assert exposure_vote(verdicts, 3).category == "Ghost_Scatter"
    tie = [_bad("PSF", 0.95)] * 2 + [_bad("Ghost_Scatter", 1.0)] * 2
    assert exposure_vote(tie, 3).category == "Ghost_Scatter"
    exact_tie = [_bad("PSF", 1.0)] * 2 + [_bad("Ghost_Scatter", 1.0)] * 2
    assert exposure_vote(exact_tie, 3, ("PSF", "Ghost_Scatter")).category == "PSF"


def test_no_ccds_is_good_not_an_error():
    assert not exposure_vote([], 3).is_bad


def test_cut_sweep_counts_bad_calls_at_each_cut():
    from query.evaluate import cut_sweep

    probs = np.array([[0.0, 1.0, 0.0, 0.0], [0.3, 0.7, 0.0, 0.0], [0.4, 0.0, 0.6, 0.0], [0.8, 0.2, 0.0, 0.0]])
    truth = ["Clouds_Transparency", "Clouds_Transparency", "good", "good"]
    rows = {
        line.split()[0]: line.split()[1:3]
        for line in cut_sweep(truth, probs, CLASSES, (0.5, 0.9)).splitlines()[2:]
    }
    assert rows["0.50"] == ["0.67", "1.00"]  # three called bad (one wrongly), both bad ones found
    assert rows["0.90"] == ["1.00", "0.50"]  # only the unanimous one

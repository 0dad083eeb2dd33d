"""The calibrated rule: (t, f) chosen on a plateau, the fraction vote, no self-votes, clean good sets, and
the paper rule pinned to vec's first version's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from query.calibrate import plateau_centre, score_grid
from query.classify import classify_exposures
from query.train import train
from query.vote import calibrated_ccd_verdicts, flags_needed, fraction_vote
from tests.querydata import make_store
from vecstore.config import ClassifyConfig, Config, TrainConfig
from vecstore.errors import NotTrainedError, TrainingError
from vecstore.models import Model

GOLDEN = Path(__file__).parent / "data" / "golden" / "paper_rule.json"
PAPER = Config(classify=ClassifyConfig(rule="paper"))
CLASSES = ("good", "PSF", "Ghost_Scatter")


# ------------------------------------------------------------------------------------------ plateau
def test_plateau_centre_is_the_deepest_cell_of_the_largest_plateau():
    score = np.zeros((9, 9))
    score[1:8, 2:7] = 0.9  # a 7 x 5 plateau of the best score...
    score[0, 8] = 0.9  # ...and a lone cell with the same score: a spike, not a plateau
    score[4, 4] = 0.89  # a dent: its neighbours are 1 step from the plateau's edge
    assert plateau_centre(score) in {(2, 4), (6, 4)}  # 2 steps from every edge, dent included
    score[4, 4] = 0.9
    assert plateau_centre(score) == (4, 4)


def test_plateau_touching_the_grid_edge_prefers_the_interior():
    score = np.zeros((5, 7))
    score[:, :4] = 1.0  # the best region runs into the f = 0 edge
    i, j = plateau_centre(score)
    assert (i, j) == (2, 1) or (i, j) == (2, 2)
    assert j > 0


def test_score_grid_counts_exposures_at_each_threshold_and_fraction():
    p_bad = [np.array([0.9, 0.9, 0.1, 0.1]), np.array([0.6, 0.1, 0.1, 0.1]), np.array([0.2, 0.1, 0.1, 0.1])]
    truth = np.array([True, True, False])
    grid = score_grid(p_bad, truth, np.array([0.5, 0.95]), np.array([0.0, 0.5]))
    # t = 0.5, f = 0: both bad exposures have a flagged CCD, the good one none
    assert grid.accuracy[0, 0] == 1.0 and grid.recall[0, 0] == 1.0
    # t = 0.5, f = 0.5: the second exposure has 1 of 4 flagged, not 2
    assert grid.recall[0, 1] == 0.5
    # t = 0.95: nothing flagged, nothing called bad
    assert grid.recall[1, 0] == 0.0 and grid.precision[1, 0] == 1.0


def test_recall_at_precision_prefers_cells_that_reach_the_target():
    p_bad = [np.array([0.9]), np.array([0.6]), np.array([0.7])]
    truth = np.array([True, True, False])
    grid = score_grid(p_bad, truth, np.array([0.5, 0.8]), np.array([0.0]), "recall_at_precision", 0.9)
    assert grid.score[1, 0] == 0.5  # t = 0.8: precision 1, recall 0.5
    assert grid.score[0, 0] < 0  # t = 0.5: precision 2/3, below the target
    assert plateau_centre(grid.score) == (1, 0)


# ------------------------------------------------------------------------------------------ the vote
@pytest.mark.parametrize(("n_ccds", "needed"), [(4, 1), (8, 2), (20, 5), (61, 16)])
def test_fraction_vote_scales_with_the_number_of_ccds(n_ccds, needed):
    fraction = 0.25
    assert flags_needed(n_ccds, fraction) == needed
    bad_row, good_row = [0.2, 0.5, 0.3], [0.9, 0.05, 0.05]
    for n_bad, expected in ((needed - 1, False), (needed, True)):
        probs = np.array([bad_row] * n_bad + [good_row] * (n_ccds - n_bad))
        verdicts = calibrated_ccd_verdicts(probs, CLASSES, 0.5)
        vote = fraction_vote(verdicts, probs, CLASSES, fraction)
        assert vote.is_bad == expected and vote.n_bad == n_bad and vote.n_ccds == n_ccds
        assert vote.category == ("PSF" if expected else "good")


def test_fraction_zero_still_needs_one_flagged_ccd():
    probs = np.array([[1.0, 0.0, 0.0]] * 4)
    verdicts = calibrated_ccd_verdicts(probs, CLASSES, 0.5)
    assert not fraction_vote(verdicts, probs, CLASSES, 0.0).is_bad
    assert not fraction_vote([], np.empty((0, 3)), CLASSES, 0.0).is_bad


def test_bad_classes_do_not_split_the_vote_and_good_ccds_show_their_top_bad_class():
    # 3 PSF + 2 Ghost + 2 good neighbours: no bad class has a majority, but the CCD is 5/7 bad
    probs = np.array([[2 / 7, 3 / 7, 2 / 7], [5 / 7, 0.0, 2 / 7]])
    flagged, called_good = calibrated_ccd_verdicts(probs, CLASSES, 0.6)
    assert flagged.is_bad and flagged.label == "PSF" and flagged.p_bad == pytest.approx(5 / 7)
    assert not called_good.is_bad and called_good.top_bad == "Ghost_Scatter"
    assert called_good.top_bad_prob == pytest.approx(2 / 7)


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "store"
    store, truth = make_store(path, spread=2.0, n_good=30)
    with store:
        result = train(store, Config())
    return path, truth, result


def _open(path):
    from vecstore.store import Store

    return Store.open(path)


def test_calibrated_model_uses_every_labelled_exposure_and_stores_its_thresholds(calibrated):
    path, truth, result = calibrated
    s = result.settings
    assert s["rule"] == "calibrated" and 0 < s["threshold"] <= 1 and 0 <= s["fraction"] <= 1
    bad_exposures = {e for e, c in truth.items() if c != "good"}
    reference_exposures = {int(i) // 100 for i in result.training.train_ids}
    assert bad_exposures <= reference_exposures  # nothing held out of the deployed model
    assert s["cv"]["bad_exposures"] == len(bad_exposures) and s["cv"]["folds"] == 5
    assert np.array(s["cv"]["score_grid"]).shape == (len(s["cv"]["thresholds"]), len(s["cv"]["fractions"]))
    with _open(path) as store:
        assert Model.current(store).rule == "calibrated"


def test_calibrated_rule_calls_the_labelled_exposures_right_without_their_own_votes(calibrated):
    path, truth, _ = calibrated
    with _open(path) as store:
        results = classify_exposures(store, Model.current(store), sorted(truth), ClassifyConfig())
    called = {r.expnum: r.verdict for r in results}
    correct = sum(called[e].is_bad == (c != "good") for e, c in truth.items())
    assert correct / len(truth) >= 0.95


def test_no_ccd_is_classified_by_its_own_exposure(calibrated):
    path, truth, result = calibrated
    reference_exposures = sorted({int(i) // 100 for i in result.training.train_ids})
    with _open(path) as store:
        results = classify_exposures(store, Model.current(store), reference_exposures, ClassifyConfig())
    assert results and all(len(c.neighbours) == 7 for r in results for c in r.ccds)
    for r in results:
        for c in r.ccds:
            assert all(n["expnum"] != r.expnum for n in c.neighbours), (r.expnum, c.neighbours)
            assert all(n["distance"] > 0 for n in c.neighbours)


def test_json_has_rule_and_p_bad_for_every_ccd(calibrated):
    path, truth, _ = calibrated
    with _open(path) as store:
        result = classify_exposures(store, Model.current(store), [min(truth)], ClassifyConfig())[0]
    data = result.as_dict()
    assert data["rule"]["rule"] == "calibrated" and "threshold" in data["rule"]
    assert all({"p_bad", "top_bad", "top_bad_prob"} <= set(c) for c in data["ccds"])


def test_good_from_file_takes_good_references_only_from_those_exposures(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=2.0, n_good=30)
    good = sorted(e for e, c in truth.items() if c == "good")[:12]
    listing = tmp_path / "good.txt"
    listing.write_text("# inspected by hand\n" + "\n".join(f"{e}  ok" for e in good) + "\n")
    with store:
        result = train(store, Config(), good_from=str(listing))
    good_refs = {
        int(i) // 100
        for i, c in zip(result.training.train_ids, result.training.train_labels, strict=True)
        if c == "good"
    }
    assert good_refs and good_refs <= set(good)
    assert result.settings["cv"]["good_exposures"] == len(good)
    assert any("good references: 12 exposures" in n for n in result.training.notes)


def test_good_from_sql_and_a_bad_spec(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=2.0, n_good=30)
    good = sorted(e for e, c in truth.items() if c == "good")
    with store:
        result = train(store, Config(), good_from=f"expnum <= {good[9]}")
        with pytest.raises(TrainingError, match="no ingested exposure"):
            train(store, Config(), good_from="expnum < 0")
        from vecstore.errors import BadInputError

        with pytest.raises(BadInputError, match="not a file, not release:TAG"):
            train(store, Config(), good_from="no_such_column = 3")
    assert result.settings["cv"]["good_exposures"] == 10


def test_too_few_exposures_to_calibrate_is_a_clear_error(tmp_path):
    store, _ = make_store(tmp_path / "s", exposures_per_class=1, n_good=1)
    with store, pytest.raises(TrainingError, match="at least 2 labelled bad and 2 good"):
        train(store, Config(train=TrainConfig(folds=5)))


def test_rule_selects_the_newest_model_trained_for_it(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=2.0)
    with store:
        paper = train(store, PAPER).version
        calibrated = train(store, Config()).version
        assert Model.for_rule(store, "paper").version == paper
        assert Model.for_rule(store, None).version == calibrated
    store2, _ = make_store(tmp_path / "t", spread=2.0)
    with store2:
        train(store2, Config())
        with pytest.raises(NotTrainedError, match="vec train --rule paper"):
            Model.for_rule(store2, "paper")


# ------------------------------------------------------------------------------------------ the paper rule
def _paper_fields(result: dict) -> dict:
    keep = ("expnum", "is_bad", "category", "n_bad", "n_ccds", "mean_prob")
    ccd_keep = ("ccd_id", "ccdname", "label", "prob", "is_bad", "probs", "neighbours")
    return {**{k: result[k] for k in keep}, "ccds": [{k: c[k] for k in ccd_keep} for c in result["ccds"]]}


def test_paper_rule_reproduces_vec_first_version_bit_for_bit(tmp_path):
    """tests/data/golden/paper_rule.json was written by vec's first version (the 0.9 cut, >= 3 of 20
    CCDs, 70/30 split with down-sampling and class weights) on this synthetic store."""
    golden = json.loads(GOLDEN.read_text())
    store, _ = make_store(tmp_path / "s", spread=6.0, seed=3)
    with store:
        train(store, PAPER)
        model = Model.current(store)
        expnums = [r["expnum"] for r in golden["results"]]
        results = classify_exposures(store, model, expnums, PAPER.classify)
    assert [_paper_fields(r.as_dict()) for r in results] == [_paper_fields(r) for r in golden["results"]]
    assert any(0 < c["prob"] < 1 for r in golden["results"] for c in r["ccds"])  # not a trivial case


def test_a_ccd_unlike_every_reference_is_flagged_unknown(tmp_path):
    from query.classify import classify_exposures as classify

    store, truth = make_store(tmp_path / "s", spread=2.0, n_good=30)
    with store:
        result = train(store, Config())
        limit = result.settings["unknown_distance"]
        assert limit > 0
        rows = [
            {
                "ccd_id": 399999 * 100 + n,
                "expnum": 399999,
                "ccdnum": n,
                "ccdname": f"S{n}",
                "filter": "r",
                "exptime": 90.0,
                "release": "test",
                "path": "/none/399999.fits.fz",
                "hdu": f"S{n}",
            }
            for n in range(1, 5)
        ]
        vectors = np.random.default_rng(9).normal(40.0, 1.0, (4, 48)).astype(np.float32)  # far from all
        store.commit_batch(None, rows, vectors)
        model = Model.current(store)
        odd = classify(store, model, [399999], ClassifyConfig())[0]
        usual = classify(store, model, sorted(truth), ClassifyConfig())
    assert all(c.unknown and c.kth_distance > limit for c in odd.ccds)
    assert odd.as_dict()["n_unknown"] == 4 and all(c["unknown"] for c in odd.as_dict()["ccds"])
    flagged = sum(c.unknown for r in usual for c in r.ccds) / sum(len(r.ccds) for r in usual)
    assert flagged < 0.05  # about 1 % of labelled CCDs by construction (the 0.99 quantile)

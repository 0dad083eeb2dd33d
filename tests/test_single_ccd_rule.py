"""The calibrated rule's single-CCD part: one CCD of a CCD-level category (labels that name single CCDs)
makes its exposure bad; which categories are CCD-level comes from the labels; cross-validation picks t_l."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from query.analysts import add_label
from query.calibrate import _middle_of_longest_run, calibrate
from query.classify import Rule, classify_exposures
from query.crossval import LabelledPool, ccd_level_categories
from query.evaluate import cross_validation_text
from query.train import train
from query.vote import calibrated_ccd_verdicts, fraction_vote
from tests.querydata import CCDS, DIM
from vecstore.cli import app
from vecstore.config import ClassifyConfig, Config, TrainConfig
from vecstore.models import Model
from vecstore.provenance import Provenance
from vecstore.store import Store

CLASSES = ("good", "PSF", "Bad_CCD")
LOCAL = ("Bad_CCD",)


# ------------------------------------------------------------------------------------------ the vote
def _exposure(n_ccds: int, odd_row: list[float]) -> np.ndarray:
    """n_ccds CCDs whose neighbours are all good, but one."""
    return np.array([odd_row] + [[1.0, 0.0, 0.0]] * (n_ccds - 1))


@pytest.mark.parametrize("n_ccds", [4, 20, 61])
def test_one_ccd_level_ccd_makes_any_exposure_bad(n_ccds):
    probs = _exposure(n_ccds, [3 / 7, 0.0, 4 / 7])
    verdicts = calibrated_ccd_verdicts(probs, CLASSES, 0.9, LOCAL, 0.5)
    vote = fraction_vote(verdicts, probs, CLASSES, 0.5)
    assert vote.is_bad and vote.category == "Bad_CCD" and vote.n_bad == 1
    assert verdicts[0].alone and verdicts[0].label == "Bad_CCD"
    assert verdicts[0].p_local == pytest.approx(4 / 7)
    assert not any(v.is_bad for v in verdicts[1:])
    # the same exposure under the fraction rule alone: one CCD of n is too few
    plain = calibrated_ccd_verdicts(probs, CLASSES, 0.9)
    assert not fraction_vote(plain, probs, CLASSES, 0.5).is_bad


def test_an_exposure_wide_class_never_makes_a_ccd_alone():
    # 6/7 PSF neighbours and 1/7 Bad_CCD: p_bad is high, but PSF is not CCD-level and 1/7 < t_l
    probs = _exposure(20, [0.0, 6 / 7, 1 / 7])
    verdicts = calibrated_ccd_verdicts(probs, CLASSES, 0.9, LOCAL, 0.5)
    assert verdicts[0].is_bad and not verdicts[0].alone  # flagged by p_bad, but one of 20 is too few
    assert not fraction_vote(verdicts, probs, CLASSES, 0.5).is_bad


def test_category_through_the_single_ccd_rule_is_its_ccd_level_class():
    # 4/7 PSF and 3/7 Bad_CCD: the CCD is alone (t_l = 3/7) for Bad_CCD, though PSF has more votes
    probs = _exposure(20, [0.0, 4 / 7, 3 / 7])
    verdicts = calibrated_ccd_verdicts(probs, CLASSES, 0.9, LOCAL, 0.4)
    assert verdicts[0].alone and verdicts[0].label == "Bad_CCD" and verdicts[0].top_bad == "PSF"
    assert fraction_vote(verdicts, probs, CLASSES, 0.5).category == "Bad_CCD"


def test_without_ccd_level_classes_or_threshold_nothing_is_alone():
    probs = _exposure(4, [0.0, 0.0, 1.0])
    assert not any(v.alone for v in calibrated_ccd_verdicts(probs, CLASSES, 0.5, (), 0.1))
    assert not any(v.alone for v in calibrated_ccd_verdicts(probs, CLASSES, 0.5, LOCAL, None))


# ------------------------------------------------------------------------------------------ calibration
def test_middle_of_longest_run():
    assert _middle_of_longest_run(np.array([1, 0, 1, 1, 1, 0], bool)) == 3
    assert _middle_of_longest_run(np.array([0, 1, 1, 0], bool)) == 2  # even run: the upper middle
    assert _middle_of_longest_run(np.array([1, 0, 0, 0], bool)) == 0


def test_calibrate_picks_a_local_threshold_between_good_and_bad_peaks():
    rng = np.random.default_rng(0)
    p_bad, p_local, truth = [], [], []
    for bad in [True] * 10 + [False] * 20:
        p_bad.append(rng.uniform(0.0, 0.3, 20))  # nothing for the fraction rule to find
        local = np.zeros(20)
        local[3] = 0.8 if bad else rng.choice([0.0, 1 / 7, 2 / 7])  # good CCDs: at most 2 of 7 votes
        p_local.append(local)
        truth.append(bad)
    cal = calibrate(p_bad, p_local, np.array(truth), 0.05)
    assert 2 / 7 < cal.chosen["local_threshold"] <= 0.8 and cal.chosen["accuracy"] == 1.0
    assert cal.local_thresholds[-1] is None and len(cal.local_scores) == len(cal.local_thresholds)
    # the fraction rule alone cannot do it: the best (t, f) without t_l is worse
    off = calibrate(p_bad, None, np.array(truth), 0.05)
    assert off.chosen["local_threshold"] is None and off.local_thresholds == [None]
    assert off.chosen["accuracy"] < 1.0


def test_calibrate_turns_the_rule_off_when_it_only_adds_false_alarms():
    p_bad = [np.full(8, 0.9)] * 5 + [np.zeros(8)] * 5  # the fraction rule is perfect
    p_local = [np.zeros(8)] * 5 + [np.r_[1.0, np.zeros(7)]] * 5  # only good exposures peak
    cal = calibrate(p_bad, p_local, np.array([True] * 5 + [False] * 5), 0.05)
    assert cal.chosen["local_threshold"] is None and cal.chosen["accuracy"] == 1.0


# ------------------------------------------------------------------------------------------ which classes
def _pool(labels: dict[int, str], members: dict[int, list[int]]) -> LabelledPool:
    return LabelledPool(
        bad=labels, good={}, members={e: np.array(m) for e, m in members.items()}, vectors=lambda i: i
    )


def test_ccd_level_categories_come_from_how_the_labels_name_ccds():
    members = {e: [e * 100 + n for n in range(8)] for e in (1, 2, 3, 4, 5)}
    labels = {
        **{i: "PSF" for e in (1, 2) for i in members[e]},  # whole exposures
        300: "Bad_CCD",  # one CCD of exposure 3
        400: "Ghost_Scatter",
        401: "Ghost_Scatter",  # two CCDs of exposure 4...
        **{i: "Ghost_Scatter" for i in members[5]},  # ...and all of exposure 5: still mostly CCD-level?
    }
    # Ghost_Scatter: 1 partial of 2 exposures is not "most", so it counts as exposure-level
    assert ccd_level_categories(_pool(labels, members)) == ("Bad_CCD",)
    labels[500] = "Bad_CCD"
    del labels[501]  # now exposure 5 is partial too
    assert ccd_level_categories(_pool(labels, members)) == ("Ghost_Scatter", "Bad_CCD")


# ------------------------------------------------------------------------------------------ end to end
def _store_with_one_bad_ccd(path) -> tuple[Store, dict[int, str]]:
    """Good exposures, PSF exposures (every CCD off-centre) and Bad_CCD exposures (one CCD far off,
    labelled by an analyst at CCD level), all with CCDS CCDs. One good exposure in four has one CCD that
    looks like PSF ones (what an odd good CCD does to its neighbours): one flagged CCD in ten is then
    no sign of a bad exposure, unless it is of a CCD-level kind."""
    rng = np.random.default_rng(3)
    good, psf, bad_ccd = rng.normal(0, 3, (3, DIM))
    store = Store.create(path)
    store.ensure_provenance(Provenance("synthetic", "none", DIM, "seed:3"))
    truth = {}
    for expnum in range(500000, 500060):
        kind = ("good", "good", "PSF", "Bad_CCD")[expnum % 4]
        truth[expnum] = kind
        vectors = (psf if kind == "PSF" else good) + 0.6 * rng.standard_normal((CCDS, DIM))
        if kind == "Bad_CCD":
            vectors[0] = bad_ccd + 0.6 * rng.standard_normal(DIM)
        if kind == "good" and expnum % 8 == 1:
            vectors[0] = psf + 0.6 * rng.standard_normal(DIM)
        rows = [
            {"ccd_id": expnum * 100 + n, "expnum": expnum, "ccdnum": n, "ccdname": f"S{n}", "filter": "r",
             "exptime": 90.0, "release": "test", "path": f"/none/{expnum}.fits.fz", "hdu": f"S{n}"}
            for n in range(1, CCDS + 1)
        ]  # fmt: skip
        store.commit_batch(None, rows, vectors.astype(np.float32))
        if kind == "PSF":
            add_label(store, str(expnum), "PSF", "ana")
        elif kind == "Bad_CCD":
            add_label(store, f"{expnum}/S1", "Bad_CCD", "ana")
    return store, truth


def _trained(root, single_ccd_rule: bool):
    store, truth = _store_with_one_bad_ccd(root / "store")
    good = root / "good.txt"
    good.write_text("".join(f"{e}\n" for e, c in truth.items() if c == "good"))
    with store:
        result = train(store, Config(train=TrainConfig(single_ccd_rule=single_ccd_rule)), good_from=str(good))
        model = Model.current(store)
        results = classify_exposures(store, model, sorted(truth), ClassifyConfig())
        rule = Rule.of(model, ClassifyConfig())
    wrong = [r.expnum for r in results if r.verdict.is_bad != (truth[r.expnum] != "good")]
    return root / "store", truth, result, rule, results, wrong


@pytest.fixture(scope="module")
def with_rule(tmp_path_factory):
    return _trained(tmp_path_factory.mktemp("single-ccd"), True)


def test_training_finds_the_ccd_level_class_and_the_rule_catches_one_bad_ccd(with_rule):
    _, truth, result, rule, results, wrong = with_rule
    assert result.settings["local_classes"] == ["Bad_CCD"]
    assert rule.single_ccd and "or when one CCD has p(Bad_CCD)" in rule.describe()
    assert wrong == []
    assert all(r.verdict.category == "Bad_CCD" for r in results if truth[r.expnum] == "Bad_CCD")
    assert results[0].as_dict()["rule"]["local_threshold"] == result.settings["local_threshold"]
    assert f"single-CCD rule (Bad_CCD): t_l = {result.settings['local_threshold']:g}" in (
        cross_validation_text(result.settings)
    )


def test_without_the_single_ccd_rule_one_bad_ccd_in_ten_is_not_enough(tmp_path):
    _, _, result, rule, _, wrong = _trained(tmp_path, False)
    assert result.settings["local_threshold"] is None and not rule.single_ccd
    # one flagged CCD in ten: either the odd good exposures are false alarms or Bad_CCD is missed
    assert wrong


def test_local_threshold_above_one_turns_the_single_ccd_rule_off(with_rule):
    path, truth, _, _, _, _ = with_rule
    with Store.open(path) as store:
        model = Model.current(store)
        assert Rule.of(model, ClassifyConfig()).single_ccd
        off = Rule.of(model, ClassifyConfig(local_threshold=2.0))
        assert not off.single_ccd and "one CCD" not in off.describe()
    one_bad_ccd = str(min(e for e, c in truth.items() if c == "Bad_CCD"))
    on = CliRunner().invoke(app, ["--store", str(path), "classify", one_bad_ccd, "--json"])
    off = CliRunner().invoke(
        app, ["--store", str(path), "classify", one_bad_ccd, "--json", "--local-threshold", "2"]
    )
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    on_rule, off_rule = json.loads(on.output)[0]["rule"], json.loads(off.output)[0]["rule"]
    assert on_rule["local_classes"] == ["Bad_CCD"] and on_rule["local_threshold"] is not None
    on_ccds = json.loads(on.output)[0]["ccds"]
    assert [c["ccdname"] for c in on_ccds if c["alone"]] == ["S1"]  # the CCD the analyst labelled
    assert all(c["p_local"] >= on_rule["local_threshold"] for c in on_ccds if c["alone"])
    assert not any(c["alone"] for c in json.loads(off.output)[0]["ccds"])
    assert off_rule["local_threshold"] is None and off_rule["local_classes"] == []


def test_a_one_cell_wide_ridge_at_the_grid_edge_loses_to_a_broad_plateau():
    from query.calibrate import neighbourhood_mean, plateau_centre

    score = np.full((20, 21), 0.80)
    score[0, 12:17] = 0.95  # t = 0.05: the raw maximum, one step wide, on the edge
    score[8:13, 3:8] = 0.94  # a broad plateau just below it
    assert plateau_centre(score)[0] == 0
    assert plateau_centre(neighbourhood_mean(score)) == (10, 5)

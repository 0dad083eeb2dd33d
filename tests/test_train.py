"""vec train: split by exposure, balancing, and probabilities equal to scikit-learn's pipeline."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.feature_selection import VarianceThreshold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from query.classify import classify_vectors
from query.train import build_training_set, train
from tests.querydata import make_store
from vecstore.config import ClassifyConfig, Config, TrainConfig
from vecstore.errors import VecError
from vecstore.models import Model

# These tests pin the paper rule's training (split, down-sampling, weights); the rest: tests/test_calibrate.py
PAPER = Config(classify=ClassifyConfig(rule="paper"))
UNIFORM = Config(train=TrainConfig(downsample={}, class_weights={}), classify=ClassifyConfig(rule="paper"))


def test_no_exposure_in_both_splits_and_good_ccds_balance_bad(tmp_path):
    store, truth = make_store(tmp_path / "s")
    with store:
        training = build_training_set(store, UNIFORM)
    train_exp = {training.expnum_of[int(i)] for i in training.train_ids}
    test_exp = {training.expnum_of[int(i)] for i in training.test_ids}
    assert not train_exp & test_exp
    train_counts = Counter(training.train_labels)
    assert train_counts["good"] == sum(n for c, n in train_counts.items() if c != "good")
    for category in ("PSF", "Ghost_Scatter", "Clouds_Transparency", "Out_of_Focus"):
        exposures = {e for e in test_exp if truth[e] == category}
        assert len(exposures) == 2  # 30 % of 6 exposures, per category (stratified)
    assert all(
        truth[training.expnum_of[int(i)]] == label
        for i, label in zip(training.train_ids, training.train_labels, strict=True)
    )


def test_downsampling_and_class_weights_as_configured(tmp_path):
    store, _ = make_store(tmp_path / "s", exposures_per_class=10)
    with store:
        result = train(store, PAPER)
        counts = result.training.counts()["train"]
        weights = dict(zip(result.classes, result.class_weights, strict=True))
    # 7 training exposures x 10 CCDs per class; Clouds kept at 1/3, Ghost_Scatter at 1/2
    assert counts["PSF"] == 70 and counts["Out_of_Focus"] == 70
    assert counts["Clouds_Transparency"] == round(70 / 3) and counts["Ghost_Scatter"] == 35
    assert weights == pytest.approx(
        {"good": 1.0, "PSF": 1.0, "Ghost_Scatter": 2.0, "Clouds_Transparency": 3.0, "Out_of_Focus": 1.0}
    )


def test_uniform_probabilities_equal_scikit_learn_pipeline(tmp_path):
    store, _ = make_store(tmp_path / "s", spread=2.5)  # overlapping classes: probabilities between 0 and 1
    with store:
        result = train(store, UNIFORM)
        model = Model.current(store)
        test_ids = np.sort(result.training.test_ids)
        _, test_vectors = store.load_embeddings(test_ids)
        train_ids = result.training.train_ids
        order = np.argsort(train_ids)
        _, train_vectors = store.load_embeddings(train_ids)  # sorted by id
        train_labels = np.array(result.training.train_labels)[order]
        _, probs, _ = classify_vectors(store, model, test_vectors, UNIFORM.classify)
    reference = Pipeline(
        [
            ("scaler", MinMaxScaler()),
            ("pca", PCA(15, svd_solver="full")),
            ("threshold", VarianceThreshold(0.001)),
            ("knn", KNeighborsClassifier(n_neighbors=7, p=1)),
        ]
    ).fit(train_vectors.astype(np.float64), train_labels)
    expected = reference.predict_proba(test_vectors.astype(np.float64))
    columns = [list(reference.classes_).index(c) for c in model.classes]
    assert (expected > 0).sum(axis=1).max() > 0 and ((expected > 0) & (expected < 1)).any()
    np.testing.assert_allclose(probs, expected[:, columns], atol=1e-9)


def test_model_version_and_settings_in_catalog(tmp_path):
    store, _ = make_store(tmp_path / "s")
    with store:
        first = train(store, UNIFORM).version
        second = train(store, replace(UNIFORM, train=replace(UNIFORM.train, seed=3))).version
        rows = store.query("SELECT version, n_train, n_test FROM models ORDER BY version").to_pylist()
        splits = store.query("SELECT version, count(*) AS n FROM splits GROUP BY version ORDER BY version")
    assert (first, second) == ("v0001", "v0002")
    assert [r["version"] for r in rows] == ["v0001", "v0002"]
    assert splits.column("n").to_pylist() == [rows[0]["n_train"] + rows[0]["n_test"]] * 1 + [
        rows[1]["n_train"] + rows[1]["n_test"]
    ]


def test_training_without_labels_is_a_clear_error(tmp_path):
    from vecstore.store import Store

    with Store.create(tmp_path / "s") as store, pytest.raises(VecError, match="no labelled ingested CCDs"):
        train(store, UNIFORM)


@pytest.mark.parametrize(("orientation", "paired"), [("magnitude", True), ("components", False)])
def test_training_pairs_the_stores_named_ellipticity_components(tmp_path, orientation, paired):
    """A store whose components are named (the qa embedder) has psf_e1/psf_e2 entered as their magnitude
    by the calibrated rule's post-processor, recorded in the model; ``components`` keeps them."""
    from tests.querydata import DIM

    names = ("psf_e1", "psf_e2", *(f"stat_{i}" for i in range(DIM - 2)))
    config = Config(postprocess=replace(Config().postprocess, method="robust", orientation=orientation))
    store, _ = make_store(tmp_path / "s", feature_names=names, config=config)
    with store:
        result = train(store, config)
        processor = Model(store, result.version).postprocessor
    assert any(step.startswith("orientation") for step in result.settings["postprocess_steps"]) == paired
    elongated = np.zeros((2, DIM))
    elongated[0, 0], elongated[1, 1] = 0.4, -0.4  # the same elongation along x and along a diagonal
    projected = processor.transform(elongated)
    assert np.allclose(projected[0], projected[1]) == paired


def test_auto_on_a_qa_store_votes_in_the_robust_and_the_quantile_space(tmp_path):
    """``auto`` on a qa store deploys the two-space vote: the model keeps both post-processors, and a
    CCD's probabilities are the mean of its k-neighbour votes in each space (the neighbours shown are the
    first space's)."""
    from query.classify import Rule, classify_vectors
    from query.knn import class_probabilities, find_neighbours
    from query.train import describe_training
    from tests.querydata import DIM

    names = tuple(f"stat_{i}" for i in range(DIM))
    store, _ = make_store(tmp_path / "s", feature_names=names, embedder="qa")
    with store:
        result = train(store, Config())
        model = Model(store, result.version)
        _, stored = store.load_embeddings(store.query("SELECT ccd_id FROM ccds").column("ccd_id").to_numpy())
        # Halfway between two stored CCDs: where the two spaces' neighbours can differ.
        raw = (stored + stored[np.random.default_rng(0).permutation(len(stored))]) / 2
        cfg = Config().classify
        _, probs, shown = classify_vectors(store, model, raw, cfg)
        ref_ids, ref_labels = model.reference_labels()
        spaces = [(model.postprocessor, model.reference_searcher()), *model.more_spaces()]
        found = [find_neighbours(s, p.transform(raw), cfg.k, ref_ids, ref_labels) for p, s in spaces]
        votes = [class_probabilities(f.labels, len(model.classes)) for f in found]
        rule = Rule.of(model, cfg)
    assert result.settings["postprocess_method"] == "robust+quantile"
    assert result.settings["vote_spaces"] == ["robust", "quantile"] and len(spaces) == 2
    assert any("RobustScaler" in step for step in result.settings["postprocess_steps"])  # its own space
    assert any("QuantileTransformer" in step for step in result.settings["vote_space_steps"][1])
    assert not np.allclose(votes[0], votes[1])  # the spaces disagree somewhere, so the mean is tested
    assert np.allclose(probs, (votes[0] + votes[1]) / 2)
    assert np.array_equal(shown.ids, found[0].ids)
    assert rule.spaces == ("robust", "quantile") and "robust and quantile spaces" in rule.describe()
    described = describe_training(result)
    assert "votes averaged over 2 spaces" in described
    assert "robust: " in described and "quantile: " in described


def test_a_two_space_model_missing_its_second_space_says_to_retrain(tmp_path):
    import shutil

    from tests.querydata import DIM
    from vecstore.errors import InconsistentStoreError

    names = tuple(f"stat_{i}" for i in range(DIM))
    store, _ = make_store(tmp_path / "s", feature_names=names, embedder="qa")
    with store:
        result = train(store, Config())
        shutil.rmtree(store.models_dir() / result.version / "space-1")
        with pytest.raises(InconsistentStoreError, match=r"space-1 is missing.*vec train"):
            Model(store, result.version).more_spaces()


def test_an_explicit_post_processor_is_cross_validated_alone(tmp_path):
    from tests.querydata import DIM

    config = Config(postprocess=replace(Config().postprocess, method="robust"))
    names = tuple(f"stat_{i}" for i in range(DIM))
    store, _ = make_store(tmp_path / "s", feature_names=names, embedder="qa", config=config)
    with store:
        result = train(store, config)
    assert list(result.settings["postprocess_cv"]) == ["robust"]
    assert result.settings["postprocess_cv"]["robust"] == pytest.approx(
        result.settings["cv"]["score"], abs=1e-6
    )

"""The stored post-processor equals scikit-learn's fitted pipeline and loads without pickle."""

from __future__ import annotations

import numpy as np
import pytest

from vecstore.errors import VecError
from vecstore.postprocess import PostProcessor, fit_postprocessor, sklearn_pipeline


@pytest.fixture(scope="module")
def embeddings():
    rng = np.random.default_rng(3)
    # correlated, anisotropic, with one constant column (MinMaxScaler's zero-range case)
    base = rng.standard_normal((600, 40)) @ rng.standard_normal((40, 768)) * 0.1
    base[:, 5] = 2.5
    return base.astype(np.float32), (rng.standard_normal((100, 40)) @ rng.standard_normal((40, 768))).astype(
        np.float32
    )


def test_transform_equals_sklearn_pipeline(embeddings):
    train, query = embeddings
    processor = fit_postprocessor(train, 15, 0.001)
    reference = sklearn_pipeline(15, 0.001).fit(train.astype(np.float64))
    np.testing.assert_allclose(
        processor.transform(query), reference.transform(query.astype(np.float64)), atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(
        processor.transform(train), reference.transform(train.astype(np.float64)), atol=1e-6, rtol=0
    )


def test_variance_threshold_drops_components(embeddings):
    train, _ = embeddings
    variances = np.sort(fit_postprocessor(train, 15, 0.0).transform(train).astype(np.float64).var(axis=0))
    threshold = float((variances[6] + variances[7]) / 2)  # between the 7th and 8th smallest variance
    processor = fit_postprocessor(train, 15, threshold)
    assert processor.output_dim == 8
    assert processor.transform(train).shape == (len(train), processor.output_dim)


def test_save_load_roundtrip_without_pickle(tmp_path, embeddings):
    train, query = embeddings
    processor = fit_postprocessor(train)
    processor.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "postprocess.npz", allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)
    loaded = PostProcessor.load(tmp_path / "m")
    assert loaded.transform(query).tobytes() == processor.transform(query).tobytes()


def test_too_few_vectors_is_a_clear_error():
    with pytest.raises(VecError, match="cannot fit PCA"):
        fit_postprocessor(np.random.rand(10, 768))


def test_wrong_dimension_is_refused(embeddings):
    processor = fit_postprocessor(embeddings[0])
    with pytest.raises(VecError, match="expects"):
        processor.transform(np.zeros((2, 64)))


def test_blocks_are_balanced_to_equal_total_variance():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((400, 200))  # a wide block...
    small = rng.standard_normal((400, 4)) * np.array([5.0, 1.0, 1.0, 1.0])  # ...and a narrow one
    x = np.hstack([big, small]).astype(np.float32)
    processor = fit_postprocessor(x, 10, 0.0, blocks=[("vit", 200), ("qa", 4)])
    scaled = (x.astype(np.float64) * processor.scale + processor.offset) * processor.column_weights
    assert scaled[:, :200].var(axis=0).sum() == pytest.approx(1.0)
    assert scaled[:, 200:].var(axis=0).sum() == pytest.approx(1.0)
    # the narrow block now shapes the leading component; unbalanced, 200 columns would drown it
    assert (
        np.abs(processor.pca_components[0, 200:]).sum()
        > np.abs(fit_postprocessor(x, 10, 0.0).pca_components[0, 200:]).sum()
    )


def test_block_weights_survive_save_and_load(tmp_path):
    x = np.random.default_rng(1).standard_normal((100, 30)).astype(np.float32)
    processor = fit_postprocessor(x, 5, 0.0, blocks=[("a", 20), ("b", 10)])
    processor.save(tmp_path)
    assert PostProcessor.load(tmp_path).transform(x).tobytes() == processor.transform(x).tobytes()


def test_blocks_must_cover_the_vector():
    with pytest.raises(VecError, match="add up to"):
        fit_postprocessor(np.random.rand(50, 30), 5, 0.0, blocks=[("a", 20)])


def test_auto_is_robust_scaling_for_qa_quantile_in_a_hybrid_and_the_paper_pipeline_for_vits():
    from vecstore.postprocess import resolve_methods

    assert resolve_methods("auto", "qa", None) == "robust"
    assert resolve_methods("auto", "dinov2", None) == "paper"
    assert resolve_methods("auto", "dinov2+qa", [("dinov2", 768), ("qa", 27)]) == ("paper", "quantile")
    assert resolve_methods("quantile", "qa", None) == "quantile"  # an explicit method wins
    with pytest.raises(VecError, match="expected auto or one of"):
        resolve_methods("pca", "qa", None)


def test_auto_votes_in_both_heavy_tail_spaces_only_for_qa():
    from vecstore.postprocess import candidate_methods

    assert candidate_methods("auto", "qa", None) == ["robust+quantile"]  # the two-space vote
    assert candidate_methods("robust", "qa", None) == ["robust"]  # an explicit method is not second-guessed
    assert candidate_methods("auto", "dinov2", None) == ["paper"]
    assert candidate_methods("auto", "dinov2+qa", [("dinov2", 768), ("qa", 27)]) == [("paper", "quantile")]


def test_a_two_space_vote_fits_robust_then_quantile_and_anything_else_one_space():
    from vecstore.postprocess import view_methods

    assert view_methods("robust+quantile") == ("robust", "quantile")  # the model's own space first
    assert view_methods("robust") == ("robust",)
    assert view_methods(("paper", "quantile")) == (("paper", "quantile"),)  # per block: one space


def test_robust_scaling_keeps_how_far_an_outlier_lies():
    """(x - median) / IQR, as scikit-learn's RobustScaler, with no PCA: an artifact 100 IQRs out stays
    100 units out (a quantile transform would put it at the edge of [0, 1], beside a mild outlier)."""
    from sklearn.preprocessing import RobustScaler

    rng = np.random.default_rng(0)
    good = rng.lognormal(0.0, 0.5, size=(500, 3))
    processor = fit_postprocessor(good, 15, 0.0, method="robust")
    iqr = np.subtract(*np.percentile(good[:, 1], [75, 25]))
    queries = np.array([[1.0, 1.0, 1.0], [1.0, 100.0 * iqr, 1.0]])
    np.testing.assert_allclose(processor.transform(queries), RobustScaler().fit(good).transform(queries))
    near, far = processor.transform(queries)
    assert abs(far[1] - near[1]) > 90


def test_orientation_pairs_are_the_named_e1_e2_features():
    from ingest.embedders.qa_features import QA_FEATURE_NAMES
    from vecstore.postprocess import orientation_pairs

    e1, e2 = QA_FEATURE_NAMES.index("psf_e1"), QA_FEATURE_NAMES.index("psf_e2")
    assert orientation_pairs(QA_FEATURE_NAMES) == [(e1, e2)]
    assert orientation_pairs(("a_e1", "b_e2", "c")) == []  # components of two different quantities
    assert orientation_pairs(QA_FEATURE_NAMES, "components") == []
    assert orientation_pairs(None) == []  # unnamed components (a ViT) have no ellipticity to find
    with pytest.raises(VecError, match="postprocess.orientation 'angle': expected one of magnitude"):
        orientation_pairs(QA_FEATURE_NAMES, "angle")


def _round_and_elongated(tmp_path, method: str, pairs):
    """Good CCDs with round PSFs (e1, e2 near 0, a tiny IQR), and four query CCDs: round, and elongated
    0.3 along x, along y and along a diagonal. Returns the fitted (and saved, reloaded) processor's
    output for the queries."""
    rng = np.random.default_rng(1)
    good = np.column_stack([rng.normal(4.5, 0.3, 400), rng.normal(0, 0.01, (400, 2))])
    processor = fit_postprocessor(good, 15, 0.0, method=method, magnitude_pairs=pairs)
    processor.save(tmp_path / method)
    reloaded = PostProcessor.load(tmp_path / method)
    queries = np.array([[4.5, 0.0, 0.0], [4.5, 0.3, 0.0], [4.5, -0.3, 0.0], [4.5, 0.0, 0.3]])
    np.testing.assert_array_equal(reloaded.transform(queries), processor.transform(queries))
    return reloaded, reloaded.transform(queries).astype(np.float64)


@pytest.mark.parametrize("method", ["robust", "quantile"])
def test_an_ellipticity_enters_the_distance_as_its_magnitude(tmp_path, method):
    """Stars elongated along x and along y (e1 = +0.3 and -0.3) are the same kind of bad PSF: as pairs they
    land on one point, far from the round good CCD; as measured they lie farther from each other than
    from it, which is what let a round good CCD outvote other bad PSFs."""
    processor, (round_, along_x, along_y, diagonal) = _round_and_elongated(tmp_path, method, [(1, 2)])
    np.testing.assert_allclose(along_x, along_y)
    np.testing.assert_allclose(along_x, diagonal)
    assert np.abs(along_x - round_).sum() > 0.5
    assert processor.steps[0].startswith("orientation") and processor.output_dim == 2  # e2's slot dropped
    _, (round_, along_x, along_y, _) = _round_and_elongated(tmp_path, method, None)
    assert np.abs(along_x - along_y).sum() > np.abs(along_x - round_).sum()


def test_the_paper_pipeline_ignores_magnitude_pairs(embeddings):
    train, query = embeddings
    expected = sklearn_pipeline(15, 0.001).fit(train.astype(np.float64)).transform(query.astype(np.float64))
    processor = fit_postprocessor(train, 15, 0.001, method="paper", magnitude_pairs=[(0, 1)])
    np.testing.assert_allclose(processor.transform(query), expected, atol=1e-6, rtol=0)
    assert processor.magnitude_pairs is None


def test_magnitude_pairs_outside_the_vector_are_refused():
    with pytest.raises(VecError, match=r"magnitude pairs \[\[2, 5\]\] outside the 3 columns"):
        fit_postprocessor(np.ones((10, 3)), method="robust", magnitude_pairs=[(2, 5)])

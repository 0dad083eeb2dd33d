"""FAISS L1 indexes against brute force, and the factory strings vec refuses."""

from __future__ import annotations

import numpy as np
import pytest

from vecstore import index as vindex
from vecstore.errors import IndexSpecError


def _brute_force_l1(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    distances = np.abs(queries[:, None, :].astype(np.float64) - base[None, :, :]).sum(-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(7)
    base = rng.random((4000, 15), dtype=np.float32)
    queries = rng.random((200, 15), dtype=np.float32)
    ids = rng.choice(10**12, size=4000, replace=False).astype(np.int64)  # ids unrelated to row order
    return base, queries, ids


def test_flat_l1_equals_numpy_brute_force(dataset):
    base, queries, ids = dataset
    index = vindex.build_index(base, ids, "Flat")
    distances, found = vindex.search(index, queries, 10)
    expected_d, expected_rows = _brute_force_l1(base, queries, 10)
    np.testing.assert_array_equal(found, ids[expected_rows])
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6)


def test_hnsw_recall_at_10(dataset):
    base, queries, ids = dataset
    index = vindex.build_index(base, ids, "HNSW32,Flat")
    vindex.set_search_params(index, 128)
    _, found = vindex.search(index, queries, 10)
    _, expected_rows = _brute_force_l1(base, queries, 10)
    recall = np.mean([len(set(f) & set(ids[e])) / 10 for f, e in zip(found, expected_rows, strict=True)])
    assert recall >= 0.95, recall


def test_ivf_flat_with_all_lists_probed_is_exact(dataset):
    base, queries, ids = dataset
    index = vindex.build_index(base, ids, "IVF16,Flat")
    vindex.set_search_params(index, nprobe=16)
    _, found = vindex.search(index, queries[:20], 5)
    np.testing.assert_array_equal(found, ids[_brute_force_l1(base, queries[:20], 5)[1]])


def test_save_load_keeps_ids_and_answers(tmp_path, dataset):
    base, queries, ids = dataset
    index = vindex.build_index(base, ids, "HNSW16")
    vindex.save_index(index, tmp_path / "x.faiss")
    loaded = vindex.load_index(tmp_path / "x.faiss")
    np.testing.assert_array_equal(vindex.index_ids(loaded), ids)
    assert not (tmp_path / "x.faiss.tmp").exists()
    np.testing.assert_array_equal(vindex.search(loaded, queries, 3)[1], vindex.search(index, queries, 3)[1])


@pytest.mark.parametrize(
    "spec",
    [
        "HNSW32,SQ8",
        "SQ8",
        "PQ4",
        "IVF16,PQ4",
        "IVF16,SQ4",
        "HNSW32,PQ8",
        "LSH",
        "OPQ4,IVF16,PQ4",
        "IVF16,RaBitQ",
    ],
)
def test_quantisers_refused_before_faiss(spec):
    with pytest.raises(IndexSpecError, match="quantiser"):
        vindex.build_index(np.zeros((10, 8), np.float32), np.arange(10), spec)


@pytest.mark.parametrize("spec", ["", "Flatt", "HNSW", "IVF,Flat", "IDMap,Flat", "HNSW0", "PCA4,Flat"])
def test_malformed_specs_refused(spec):
    with pytest.raises(IndexSpecError, match="is not one of|at least 1"):
        vindex.validate_spec(spec)


@pytest.mark.parametrize("spec", ["Flat", "HNSW32", "HNSW32,Flat", "IVF64,Flat"])
def test_supported_specs(spec):
    assert vindex.validate_spec(spec) == spec


def test_exact_l1_index_equals_scikit_learn_and_faiss_flat():
    from sklearn.neighbors import KDTree

    from vecstore.exact_l1 import ExactL1Index, ExactL1Searcher
    from vecstore.index import FaissSearcher, build_index

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, 15)) * 3
    refs = (centres[rng.integers(0, 6, 5000)] + rng.normal(size=(5000, 15))).astype(np.float32)
    queries = (centres[rng.integers(0, 6, 700)] + rng.normal(size=(700, 15))).astype(np.float32)
    ids = np.arange(5000, dtype=np.int64) * 100 + 7
    exact = ExactL1Searcher(ExactL1Index.build(refs), ids)
    assert len(np.unique(np.diff(exact.index.starts))) > 1  # several cells: the pruning is exercised
    d, found = exact.search(queries, 9)
    sk_d, sk_rows = KDTree(refs.astype(np.float64), metric="manhattan").query(queries.astype(np.float64), 9)
    np.testing.assert_array_equal(found, ids[sk_rows])
    np.testing.assert_allclose(d, sk_d, rtol=0, atol=1e-12)
    f_d, f_ids = FaissSearcher(build_index(refs, ids, "Flat")).search(queries, 9)
    np.testing.assert_array_equal(found, f_ids)
    np.testing.assert_allclose(d, f_d, rtol=1e-5)


def test_exact_l1_ties_go_to_the_lower_row_and_k_is_capped():
    from vecstore.exact_l1 import ExactL1Index

    refs = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] * 3, dtype=np.float32)
    distances, rows = ExactL1Index.build(refs).search(np.array([[0.5, 0.5]]), 5)
    assert rows.tolist() == [[0, 1, 2, 3, 4]] and distances.tolist() == [[1.0] * 5]
    _, rows = ExactL1Index.build(refs[:3]).search(np.zeros((1, 2)), 7)
    assert rows.shape == (1, 3)


def test_exact_l1_index_round_trips_through_a_file(tmp_path):
    from vecstore.exact_l1 import ExactL1Index

    refs = np.random.default_rng(1).normal(size=(3000, 6)).astype(np.float32)
    index = ExactL1Index.build(refs)
    index.save(tmp_path / "x.npz")
    again = ExactL1Index.load(tmp_path / "x.npz")
    q = refs[:50] + 0.01
    assert [a.tolist() for a in index.search(q, 4)] == [a.tolist() for a in again.search(q, 4)]

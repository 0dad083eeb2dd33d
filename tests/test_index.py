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

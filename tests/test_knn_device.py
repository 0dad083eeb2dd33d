"""The exact L1 k-NN off the numba index: torch's searcher (run here on the CPU; no GPU is measured or
needed) gives the same ids and distances as vecstore.exact_l1, ties included, and ``[classify]
knn_device`` picks where the search runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from query import knn  # noqa: E402
from query.knn_torch import TorchL1Searcher  # noqa: E402
from vecstore.config import ClassifyConfig, Config, load_config  # noqa: E402
from vecstore.errors import ConfigError  # noqa: E402
from vecstore.exact_l1 import ExactL1Index, ExactL1Searcher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _clustered(n: int, m: int, dim: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)) * 3
    refs = (centres[rng.integers(0, 8, n)] + rng.normal(size=(n, dim))).astype(np.float32)
    queries = centres[rng.integers(0, 8, m)] + rng.normal(size=(m, dim))  # float64, as the transform gives
    return refs, queries


def _grid(copies: int = 3, seed: int = 0):
    """Integer points of a 10^3 grid, each ``copies`` times, shuffled: every query has many exact ties,
    spread over several k-means cells."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3)
    refs = np.concatenate([grid] * copies)[rng.permutation(copies * len(grid))].astype(np.float32)
    queries = rng.integers(0, 10, size=(300, 3)).astype(np.float64)
    return refs, queries


def _brute(refs, queries, k):
    """float64 L1 distances, ties by lower row (a stable sort)."""
    full = np.abs(refs[None].astype(np.float64) - queries[:, None]).sum(-1)
    rows = np.argsort(full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, rows, 1), rows


@pytest.mark.parametrize("block_bytes", [None, 1 << 16])  # default blocks; many small reference blocks
def test_torch_searcher_equals_the_numba_index_on_random_data(block_bytes):
    refs, queries = _clustered(6000, 900)
    ids = np.arange(len(refs), dtype=np.int64) * 100 + 7
    exact = ExactL1Searcher(ExactL1Index.build(refs), ids)
    assert len(exact.index.starts) > 2  # several cells
    on_torch = TorchL1Searcher.from_exact(exact, "cpu", block_bytes=block_bytes)
    d, found = exact.search(queries, 9)
    t_d, t_found = on_torch.search(queries, 9)
    np.testing.assert_array_equal(t_found, found)
    np.testing.assert_array_equal(t_d, d)  # the same float64 sums, bit for bit


@pytest.mark.parametrize("margin", [None, 0])  # margin 0: every query falls back to the full float64 pass
def test_ties_go_to_the_lower_row_on_both_paths(margin):
    refs, queries = _grid()
    exact = ExactL1Searcher(ExactL1Index.build(refs), np.arange(len(refs)))
    assert len(exact.index.starts) > 2  # ties straddle cells
    want_d, want_rows = _brute(refs, queries, 20)
    d, rows = exact.search(queries, 20)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(d, want_d)
    on_torch = TorchL1Searcher.from_exact(exact, "cpu", block_bytes=1 << 14, margin=margin)
    t_d, t_rows = on_torch.search(queries, 20)
    np.testing.assert_array_equal(t_rows, want_rows)
    np.testing.assert_array_equal(t_d, want_d)


def test_k_is_capped_and_empty_queries_answer_empty():
    refs, queries = _clustered(5, 3, dim=4)
    searcher = TorchL1Searcher(refs, np.arange(5) + 10, "cpu")
    d, ids = searcher.search(queries, 9)
    assert d.shape == ids.shape == (3, 5) and sorted(ids[0]) == list(range(10, 15))
    d, ids = searcher.search(np.empty((0, 4)), 3)
    assert d.shape == ids.shape == (0, 3)


# ------------------------------------------------------------------------------------------ selection
def test_selection_without_cuda_is_the_numba_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert knn.knn_device("auto", 10**6) == "cpu"
    assert knn.knn_device("cpu", 10**6) == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        knn.knn_device("cuda", 10)
    refs, _ = _clustered(100, 1)
    exact = ExactL1Searcher(ExactL1Index.build(refs), np.arange(100))
    assert knn.on_device(exact, "auto", 10**6) is exact


def test_selection_with_cuda_takes_the_gpu_for_large_searches(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert knn.knn_device("auto", knn.AUTO_MIN_QUERIES) == "cuda"
    assert knn.knn_device("auto", knn.AUTO_MIN_QUERIES - 1) == "cpu"  # one exposure: not worth CUDA
    assert knn.knn_device(" CUDA:1 ", 5) == "cuda:1"
    assert knn.knn_device("cpu", 10**6) == "cpu"
    copies = []
    monkeypatch.setattr(knn, "device_copy", lambda searcher, device: copies.append(device) or searcher)
    refs, _ = _clustered(100, 1)
    exact = ExactL1Searcher(ExactL1Index.build(refs), np.arange(100))
    knn.on_device(exact, "auto", knn.AUTO_MIN_QUERIES)
    assert copies == ["cuda"]


def test_faiss_searchers_stay_where_they_are(monkeypatch):
    from vecstore.index import FaissSearcher, build_index

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    refs, _ = _clustered(50, 1)
    faiss_searcher = FaissSearcher(build_index(refs, np.arange(50), "Flat"))
    assert knn.on_device(faiss_searcher, "cuda", 10**6) is faiss_searcher


def test_device_copy_is_made_once_per_searcher():
    refs, _ = _clustered(100, 1)
    exact = ExactL1Searcher(ExactL1Index.build(refs), np.arange(100))
    first = knn.device_copy(exact, "cpu")
    assert isinstance(first, TorchL1Searcher) and knn.device_copy(exact, "cpu") is first


def test_auto_does_not_import_torch_without_a_gpu_driver():
    if sys.platform != "linux" or any(Path(p).exists() for p in knn.GPU_DRIVER_FILES):
        pytest.skip("a GPU driver is present (or not Linux): auto asks torch")
    code = (
        "import sys; from query.knn import knn_device; "
        "print(knn_device('auto', 10**6), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", "False"]


def test_the_knob_is_checked_at_load(tmp_path):
    assert ClassifyConfig().knn_device == "auto"
    path = tmp_path / "c.toml"
    path.write_text('[classify]\nknn_device = "cuda:0"\n')
    assert load_config(path).classify.knn_device == "cuda:0"
    path.write_text('[classify]\nknn_device = "gpu"\n')
    with pytest.raises(ConfigError, match="knn_device"):
        load_config(path)


# ------------------------------------------------------------------------------------------ end to end
def test_training_and_classify_on_the_torch_path_equal_the_numba_path(tmp_path, monkeypatch):
    """knn_device = "cuda" with CUDA faked and the torch searcher run on the CPU: the cross-validation's
    (t, f) and every verdict and neighbour equal those of knn_device = "cpu"."""
    from query.classify import classify_exposures
    from query.train import train
    from tests.querydata import make_store
    from vecstore.models import Model

    real_copy = knn.device_copy
    used = []

    def fake_gpu(searcher, device):
        used.append(device)
        return real_copy(searcher, "cpu")

    outcomes = {}
    for device in ("cpu", "cuda"):
        if device == "cuda":
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            monkeypatch.setattr(knn, "device_copy", fake_gpu)
        config = Config(classify=ClassifyConfig(knn_device=device))
        store, truth = make_store(tmp_path / device, spread=2.0, n_good=30)
        with store:
            settings = train(store, config).settings
            results = classify_exposures(store, Model.current(store), sorted(truth), config.classify)
        outcomes[device] = (
            settings["threshold"],
            settings["fraction"],
            [(r.expnum, r.verdict.is_bad, r.verdict.category) for r in results],
            [[(c.ccd_id, n["ccd_id"], n["distance"]) for n in c.neighbours] for r in results for c in r.ccds],
        )
    assert used and set(used) == {"cuda"}
    assert outcomes["cuda"] == outcomes["cpu"]


def test_the_knn_device_option_of_classify(tmp_path, monkeypatch):
    """--knn-device cpu gives the default's verdicts; cuda on a host without one, or a word that is no
    device, is refused with a message that names the option's knob and what it accepts."""
    from typer.testing import CliRunner

    from query.train import train
    from tests.querydata import make_store
    from vecstore.cli.app import app

    store, truth = make_store(tmp_path / "store", spread=2.0, n_good=12, exposures_per_class=3)
    with store:
        train(store, Config())
    expnum = str(min(truth))
    runner = CliRunner()

    def classify(*extra):
        return runner.invoke(app, ["--store", str(tmp_path / "store"), "classify", expnum, "--json", *extra])

    default, on_cpu = classify(), classify("--knn-device", "cpu")
    assert default.exit_code == 0 and on_cpu.exit_code == 0, default.output + on_cpu.output
    assert on_cpu.output == default.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    no_gpu = classify("--knn-device", "cuda")
    assert no_gpu.exit_code != 0 and "no CUDA device" in no_gpu.output
    wrong = classify("--knn-device", "gpu")  # not a device at all: a usage error, as Click's own
    assert wrong.exit_code == 2 and "knn_device" in wrong.output and "cuda:N" in wrong.output

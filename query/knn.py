"""k-nearest-neighbour class probabilities on the L1 reference index.

With uniform class weights the probability of class c for a CCD is the share of its k neighbours labelled
c — scikit-learn's ``KNeighborsClassifier(weights="uniform").predict_proba``. The paper down-sampled its
three largest classes and "upweighted" them in the vote by the same factor; vec's rule for that
(pinned by a test): each neighbour votes with its class's weight, and votes are normalised,

    p_c = w_c * n_c / sum_j (w_j * n_j).

Ties in distance: FAISS and scikit-learn may order equidistant neighbours differently; with continuous
embeddings exact ties are rare, and the tests use tie-free data. vec's own exact searchers (numba on the
CPU, torch on a GPU) both put the lower reference row (the lower ccd_id) first.

Where the exact search runs (``[classify] knn_device``): ``cpu`` is the numba index
(:mod:`vecstore.exact_l1`); ``cuda``/``cuda:N`` is :class:`query.knn_torch.TorchL1Searcher` on that GPU,
the same neighbours and distances; ``auto`` takes the GPU when torch sees one and a search has at least
:data:`AUTO_MIN_QUERIES` queries (one exposure's 20 CCDs would spend longer starting CUDA than searching).
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vecstore.errors import ConfigError, TrainingError
from vecstore.exact_l1 import ExactL1Searcher

AUTO_MIN_QUERIES = 1000  # `auto` moves a search to the GPU from this many queries on
# Files that exist where a GPU driver is loaded (NVIDIA, ROCm, WSL). Without any, torch.cuda.is_available()
# is False, and `auto` does not import torch (seconds, and hundreds of MB of RSS) to hear it say so.
GPU_DRIVER_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


@dataclass(frozen=True)
class Neighbours:
    """The k nearest reference CCDs of each query: ids, L1 distances and integer labels (n, k)."""

    ids: np.ndarray
    distances: np.ndarray
    labels: np.ndarray


def find_neighbours(
    searcher,
    queries: np.ndarray,
    k: int,
    reference_ids: np.ndarray,
    reference_labels: np.ndarray,
    *,
    reference_expnums: np.ndarray | None = None,
    query_expnums: np.ndarray | None = None,
    device: str = "cpu",
) -> Neighbours:
    """Search the reference set and attach each neighbour's label (by id, never by row).

    ``searcher`` has ``size`` and ``search(queries, n) -> (distances, ccd_ids)``: vec's exact L1 index
    (:class:`vecstore.exact_l1.ExactL1Searcher`) or a FAISS index (:class:`vecstore.index.FaissSearcher`).
    ``device`` (``[classify] knn_device``) says where an exact L1 index searches: see :func:`on_device`.

    With ``reference_expnums`` and ``query_expnums``, no CCD is classified by reference CCDs of its own
    exposure: the search asks for k plus as many extra neighbours as the query's exposure has reference
    CCDs, then drops those. A CCD voting for itself (distance 0) would make every reference look right.
    """
    extra = _own_exposure_references(reference_expnums, query_expnums)
    searcher = on_device(searcher, device, len(queries))
    n_search = min(k + extra, searcher.size)
    distances, ids = searcher.search(queries, n_search)
    if (ids < 0).any() or n_search < k:
        raise TrainingError(
            f"the reference index holds fewer than k={k} usable neighbours; lower -k or label more exposures"
        )
    order = np.argsort(reference_ids)
    positions = order[np.searchsorted(reference_ids, ids, sorter=order)]
    if extra:
        keep = reference_expnums[positions] != np.asarray(query_expnums)[:, None]
        if (keep.sum(axis=1) < k).any():
            raise TrainingError(f"fewer than k={k} reference CCDs lie outside the query's own exposure")
        # Stable: the first k kept columns of each row, in distance order.
        columns = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        ids, distances, positions = (
            np.take_along_axis(a, columns, axis=1) for a in (ids, distances, positions)
        )
    return Neighbours(ids=ids, distances=distances, labels=reference_labels[positions])


def vote_in_spaces(
    spaces,
    raw_queries: np.ndarray,
    k: int,
    reference_ids: np.ndarray,
    reference_labels: np.ndarray,
    n_classes: int,
    class_weights: np.ndarray | None = None,
    *,
    reference_expnums: np.ndarray | None = None,
    query_expnums: np.ndarray | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, Neighbours]:
    """Class probabilities (n, n_classes) of raw query vectors, the mean of their k-neighbour votes in each
    space of ``spaces`` ((post-processor, reference searcher) pairs, the model's own first), and the
    neighbours found in that first space: those ``vec classify`` shows and the unknown distance uses."""
    votes, first = [], None
    for processor, searcher in spaces:
        found = find_neighbours(
            searcher,
            processor.transform(raw_queries),
            k,
            reference_ids,
            reference_labels,
            reference_expnums=reference_expnums,
            query_expnums=query_expnums,
            device=device,
        )
        votes.append(class_probabilities(found.labels, n_classes, class_weights))
        first = found if first is None else first
    return (votes[0] if len(votes) == 1 else np.mean(votes, axis=0)), first


def cuda_available() -> bool:
    """Whether torch sees a CUDA (or ROCm) device; False without importing torch where no driver is."""
    if "torch" not in sys.modules and sys.platform == "linux":
        if not any(Path(p).exists() for p in GPU_DRIVER_FILES):
            return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def knn_device(setting: str, n_queries: int) -> str:
    """Where an exact L1 search of ``n_queries`` runs: ``"cpu"`` (numba) or a torch CUDA device.

    ``setting`` is ``[classify] knn_device``: auto | cpu | cuda | cuda:N. An explicit ``cuda`` on a host
    where torch sees no GPU is refused (:class:`ConfigError`), not quietly run on the CPU.
    """
    choice = setting.strip().lower()
    if choice == "cpu":
        return "cpu"
    if choice == "auto":
        return "cuda" if n_queries >= AUTO_MIN_QUERIES and cuda_available() else "cpu"
    if not cuda_available():
        raise ConfigError(
            f"[classify] knn_device = {setting!r}, but torch sees no CUDA device on this host; "
            'set it to "auto" or "cpu"'
        )
    return choice


def on_device(searcher, setting: str, n_queries: int):
    """``searcher`` itself, or — for vec's exact L1 index when :func:`knn_device` picks a GPU — its
    :class:`query.knn_torch.TorchL1Searcher` copy there (made once per searcher and device). FAISS
    searchers (the paper rule's) stay as they are."""
    if not isinstance(searcher, ExactL1Searcher):
        return searcher
    device = knn_device(setting, n_queries)
    return searcher if device == "cpu" else device_copy(searcher, device)


_COPIES: dict[tuple[int, str], object] = {}


def device_copy(searcher: ExactL1Searcher, device: str):
    """The :class:`query.knn_torch.TorchL1Searcher` of ``searcher`` on ``device`` (``"cpu"`` works too:
    torch on the CPU, for tests), kept while ``searcher`` lives."""
    key = (id(searcher), device)
    if key not in _COPIES:
        from query.knn_torch import TorchL1Searcher

        _COPIES[key] = TorchL1Searcher.from_exact(searcher, device)
        weakref.finalize(searcher, _COPIES.pop, key, None)
    return _COPIES[key]


def _own_exposure_references(reference_expnums, query_expnums) -> int:
    """The most reference CCDs any query's own exposure holds (0 when the queries' exposures hold none)."""
    if reference_expnums is None or query_expnums is None or len(query_expnums) == 0:
        return 0
    expnums, counts = np.unique(reference_expnums, return_counts=True)
    present = np.isin(expnums, np.unique(query_expnums))
    return int(counts[present].max()) if present.any() else 0


def class_probabilities(
    labels: np.ndarray, n_classes: int, class_weights: np.ndarray | None = None
) -> np.ndarray:
    """(n, k) integer neighbour labels -> (n, n_classes) probabilities (weighted votes, normalised)."""
    labels = np.asarray(labels)
    counts = np.zeros((labels.shape[0], n_classes), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(labels.shape[0]), labels.shape[1]), labels.ravel()), 1.0)
    if class_weights is not None:
        counts *= np.asarray(class_weights, dtype=np.float64)[None, :]
    return counts / counts.sum(axis=1, keepdims=True)

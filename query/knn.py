"""k-nearest-neighbour class probabilities on the L1 reference index.

With uniform class weights the probability of class c for a CCD is the share of its k neighbours labelled
c — scikit-learn's ``KNeighborsClassifier(weights="uniform").predict_proba``. The paper down-sampled its
three largest classes and "upweighted" them in the vote by the same factor; vec's rule for that
(pinned by a test): each neighbour votes with its class's weight, and votes are normalised,

    p_c = w_c * n_c / sum_j (w_j * n_j).

Ties in distance: FAISS and scikit-learn may order equidistant neighbours differently; with continuous
embeddings exact ties are rare, and the tests use tie-free data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecstore import index as vindex


@dataclass(frozen=True)
class Neighbours:
    """The k nearest reference CCDs of each query: ids, L1 distances and integer labels (n, k)."""

    ids: np.ndarray
    distances: np.ndarray
    labels: np.ndarray


def find_neighbours(
    index, queries: np.ndarray, k: int, reference_ids: np.ndarray, reference_labels: np.ndarray
):
    """Search the reference index and attach each neighbour's label (by id, never by row)."""
    distances, ids = vindex.search(index, queries, k)
    order = np.argsort(reference_ids)
    positions = order[np.searchsorted(reference_ids, ids, sorter=order)]
    if (ids < 0).any():
        raise ValueError(f"the reference index holds fewer than k={k} vectors")
    return Neighbours(ids=ids, distances=distances, labels=reference_labels[positions])


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

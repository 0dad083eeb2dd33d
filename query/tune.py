"""``vec train --tune``: the paper's hyper-parameter search, grouped by exposure.

HalvingRandomSearchCV (random search with successive halving, as the paper) over scaler, PCA components
(5-100), VarianceThreshold, k and the Minkowski power p, scored by macro F1 with 3-fold cross-validation
whose folds never split an exposure. vec's stored model is always MinMaxScaler + PCA + VarianceThreshold
+ L1 kNN (FAISS indexes are built for L1); the search's PCA size, threshold and k are applied, and if it
prefers another scaler or p = 2 that is recorded and reported, not silently used.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import loguniform, randint
from sklearn.decomposition import PCA
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - registers the class below
from sklearn.feature_selection import VarianceThreshold
from sklearn.model_selection import GroupKFold, HalvingRandomSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from vecstore.errors import TrainingError
from vecstore.store import Store


def largest_pca(n_features: int, n_samples: int) -> int:
    """The paper's upper bound (100), limited by the data: a training fold holds 2/3 of the samples."""
    return max(6, min(100, n_features, int(n_samples * 2 / 3) - 1))


def search_space(n_features: int, n_samples: int) -> dict:
    top = largest_pca(n_features, n_samples)
    return {
        "scaler": [MinMaxScaler(), StandardScaler()],
        "pca__n_components": randint(5, top + 1),
        "threshold__threshold": loguniform(1e-5, 1e-2),
        "knn__n_neighbors": randint(3, 16),
        "knn__p": [1, 2],
    }


def tune_hyperparameters(store: Store, training, *, seed: int, n_iter: int) -> dict:
    ids = np.asarray(training.train_ids)
    order = np.argsort(ids)
    _, vectors = store.load_embeddings(ids)
    labels = np.asarray(training.train_labels)[order]
    groups = np.array([training.expnum_of[int(i)] for i in ids[order]])
    if len(np.unique(groups)) < 3:
        raise TrainingError("--tune needs training CCDs from at least 3 exposures (3 grouped folds)")
    pipeline = Pipeline(
        [
            ("scaler", MinMaxScaler()),
            ("pca", PCA(svd_solver="full")),
            ("threshold", VarianceThreshold()),
            ("knn", KNeighborsClassifier()),
        ]
    )
    # Halving starts on a subset; it must still leave every fold more samples than PCA components.
    min_resources = min(len(vectors), 2 * largest_pca(vectors.shape[1], len(vectors)) + 2)
    search = HalvingRandomSearchCV(
        pipeline,
        search_space(vectors.shape[1], len(vectors)),
        n_candidates=n_iter,
        cv=GroupKFold(3),
        scoring="f1_macro",
        random_state=seed,
        error_score=np.nan,
        n_jobs=1,
        min_resources=min_resources,
    )
    with warnings.catch_warnings():
        # A candidate whose VarianceThreshold drops every component fails its fit and scores NaN: expected.
        warnings.simplefilter("ignore", category=FitFailedWarning)
        warnings.filterwarnings("ignore", message="One or more of the .* scores are non-finite")
        search.fit(vectors.astype(np.float64), labels, groups=groups)
    best = search.best_params_
    applied = {
        "n_components": int(best["pca__n_components"]),
        "variance_threshold": float(best["threshold__threshold"]),
        "k": int(best["knn__n_neighbors"]),
    }
    notes = []
    if not isinstance(best["scaler"], MinMaxScaler):
        notes.append(f"the search preferred {type(best['scaler']).__name__}; vec's model keeps MinMaxScaler")
    if best["knn__p"] != 1:
        notes.append("the search preferred p=2; vec's indexes are L1 (p=1)")
    return {
        "best_params": {
            k: (type(v).__name__ if k == "scaler" else getattr(v, "item", lambda v=v: v)())
            for k, v in best.items()
        },
        "best_score_f1_macro": float(search.best_score_),
        "n_candidates": int(len(search.cv_results_["params"])),
        "applied": applied,
        "notes": notes,
    }

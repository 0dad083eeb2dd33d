"""The label-free corpus space: what ``vec similar`` searches before any model is trained.

Right after an ingest there are no labels, so no trained post-processor and no trained corpus index. This
module fits the store's post-processor (``postprocess.method`` resolved per embedder, as training does)
on every committed CCD, or on a seeded sample of at most ``similar.corpus_sample`` of them, builds the L1
corpus index (``index.corpus``) over every committed CCD, and keeps both under
``<store>/models/unlabelled/`` (written under a temporary name and renamed into place). It is derived state
like a model's corpus index:

- built on first use (:func:`search_space`);
- kept up to date: CCDs committed since it was saved are projected and added when it is loaded, and the
  index file is saved again (atomically);
- fitted again when the store has grown so much that the sample it was fitted on is less than half of the
  sample it would draw now (a post-processor fitted on the first ten CCDs does not describe a survey);
- once a model exists, :func:`search_space` returns the trained model instead: the label-free space is
  then no longer searched (it is kept on disk, and used again only if the models are removed).

Both spaces offer what :func:`query.similar.search_similar` uses: ``postprocessor``, ``corpus_index()``,
and ``space_description`` (what the output says was searched).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import numpy as np

from vecstore import index as vindex
from vecstore.config import Config
from vecstore.errors import TrainingError
from vecstore.models import CORPUS_INDEX, SETTINGS, UNLABELLED_SPACE, Model, add_missing_ccds, current_version
from vecstore.postprocess import (
    PostProcessor,
    fit_postprocessor,
    orientation_pairs,
    resolve_methods,
    view_methods,
)
from vecstore.provenance import VectorLayout
from vecstore.store import Store

LABEL_FREE = "the label-free corpus space (no trained model)"


def space_dir(store: Store) -> Path:
    return store.models_dir() / UNLABELLED_SPACE


def sample_ids(ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of at most ``n`` ids (sorted); ``n`` = 0 keeps every id."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if n <= 0 or len(ids) <= n:
        return ids
    return np.sort(np.random.default_rng([seed, 11]).choice(ids, size=n, replace=False))


class LabelFreeSpace:
    """The label-free post-processor and corpus index of a store, loaded from disk."""

    space_description = LABEL_FREE
    version = None

    def __init__(self, store: Store, directory: Path):
        self.store = store
        self.dir = directory
        self.settings: dict = json.loads((directory / SETTINGS).read_text())
        self.postprocessor = PostProcessor.load(directory)
        self._corpus = None

    def corpus_index(self, ef_search: int | None = None):
        """The corpus index with every committed CCD (catching up with later commits, then saved)."""
        if self._corpus is None:
            self._corpus = vindex.load_index(self.dir / CORPUS_INDEX)
            if self.catch_up():
                vindex.save_index(self._corpus, self.dir / CORPUS_INDEX)
        vindex.set_search_params(self._corpus, ef_search or self.store.config.index.hnsw_ef_search)
        return self._corpus

    def catch_up(self) -> int:
        """Project and add committed CCDs the index lacks (as :meth:`Model.catch_up`); how many."""
        return add_missing_ccds(self.store, self._corpus, self.postprocessor)

    def is_stale(self, config: Config) -> bool:
        """Fitted on less than half the sample it would be fitted on now (or with other settings)."""
        n_now = int(self.store.scalar("SELECT count(*) FROM ccds"))
        wanted = n_now if config.similar.corpus_sample <= 0 else min(n_now, config.similar.corpus_sample)
        return (
            2 * int(self.settings.get("fitted_on", 0)) < wanted
            or self.settings.get("corpus_index") != config.index.corpus
            or self.settings.get("provenance") != self.store.meta().get("embedder")
        )


def build_label_free_space(store: Store, config: Config) -> LabelFreeSpace:
    """Fit the post-processor without labels, index every committed CCD, write the space atomically."""
    from vecstore.models import build_corpus_index  # the same streaming build a model's corpus index uses

    ids = store.committed_ids()
    if len(ids) == 0:
        raise TrainingError(f"store {store.path} has no embedded CCDs yet: run `vec ingest` first")
    fit_ids = sample_ids(ids, config.similar.corpus_sample, config.similar.seed)
    _, vectors = store.load_embeddings(fit_ids)
    layout = VectorLayout.of(store.provenance())
    # One space: a two-space vote (robust+quantile) searches look-alikes in its first, as a model does.
    method = view_methods(resolve_methods(config.postprocess.method, layout.embedder, layout.blocks))[0]
    n_components = min(config.postprocess.n_components, max(1, len(vectors) - 1), vectors.shape[1])
    pairs = orientation_pairs(layout.feature_names, config.postprocess.orientation)
    processor = fit_postprocessor(
        vectors,
        n_components,
        config.postprocess.variance_threshold,
        blocks=layout.blocks,
        method=method,
        magnitude_pairs=pairs,
    )
    root = store.models_dir()
    tmp = root / f".tmp-{UNLABELLED_SPACE}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    processor.save(tmp)
    index = build_corpus_index(store, processor, config.index.corpus, config.index.hnsw_ef_construction)
    vindex.save_index(index, tmp / CORPUS_INDEX)
    settings = {
        "space": "label-free",
        "fitted_on": int(len(fit_ids)),
        "n_ccds": int(len(ids)),
        "corpus_sample": config.similar.corpus_sample,
        "seed": config.similar.seed,
        "postprocess_method": method if isinstance(method, str) else list(method),
        "n_components": n_components,
        "corpus_index": config.index.corpus,
        "provenance": store.meta().get("embedder"),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    (tmp / SETTINGS).write_text(json.dumps(settings, indent=1, default=str))
    _move_into_place(tmp, space_dir(store))
    return LabelFreeSpace(store, space_dir(store))


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an older ``target`` is moved aside first and removed after."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:  # another process put its own space in place meanwhile: use that one
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def label_free_space(store: Store, config: Config) -> LabelFreeSpace:
    """The saved label-free space, built (or fitted again when stale) first when needed."""
    directory = space_dir(store)
    if (directory / SETTINGS).exists():
        space = LabelFreeSpace(store, directory)
        if not space.is_stale(config):
            return space
    return build_label_free_space(store, config)


def search_space(store: Store, config: Config) -> Model | LabelFreeSpace:
    """What ``vec similar`` searches: the current model's corpus space, else the label-free one."""
    if current_version(store) is not None:
        return Model.current(store)
    return label_free_space(store, config)

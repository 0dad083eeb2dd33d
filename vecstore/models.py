"""Model versions: a fitted post-processor, the reference (labelled) index and the corpus index.

``<store>/models/<version>/`` is written under a temporary name and renamed into place, then ``CURRENT``
is replaced atomically to name it. Indexes are derived state: they record the ids they hold, and when the
catalog has committed CCDs a corpus index lacks (an ingest after training), :meth:`Model.corpus_index`
projects and adds them from the raw embeddings — never the other way round.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecstore import index as vindex
from vecstore.errors import InconsistentStoreError, NotFoundError, NotTrainedError
from vecstore.exact_l1 import ExactL1Index, ExactL1Searcher
from vecstore.postprocess import PostProcessor
from vecstore.store import Store

CURRENT = "CURRENT"
REFERENCE_INDEX = "reference.faiss"
CORPUS_INDEX = "corpus.faiss"
REFERENCE_LABELS = "reference_labels.npz"
REFERENCE_EXACT = "reference_exact.npz"  # vec's exact L1 index over the same vectors (Flat specs)
SETTINGS = "model.json"
# A model voting in more than one space keeps each further space's post-processor and the reference
# CCDs' exact L1 index in it under space-N/ (N = 1, 2, ...; the model's own space is the version's root).
SPACE_DIR = "space-{}"
# The label-free corpus space `vec similar` searches before any model (vecstore/corpus_space.py): it lives
# beside the versions, and is not one of them.
UNLABELLED_SPACE = "unlabelled"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def list_versions(store: Store) -> list[str]:
    root = store.models_dir()
    if not root.exists():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != UNLABELLED_SPACE
    )


def current_version(store: Store) -> str | None:
    pointer = store.models_dir() / CURRENT
    return pointer.read_text().strip() if pointer.exists() else None


def next_version(store: Store) -> str:
    numbers = [int(v[1:]) for v in list_versions(store) if v[:1] == "v" and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


@dataclass(frozen=True)
class ReferenceSet:
    """The labelled CCDs the classifier votes with: ids, integer labels, class names and weights."""

    ids: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    class_weights: tuple[float, ...]


def write_model(
    store: Store,
    postprocessor: PostProcessor,
    reference: ReferenceSet,
    settings: dict[str, Any],
    *,
    reference_spec: str,
    corpus_spec: str,
    ef_construction: int,
    more_spaces: tuple[PostProcessor, ...] = (),
) -> str:
    """Build both indexes from the store's embeddings, write a new version and make it CURRENT.
    ``more_spaces``: post-processors of further spaces the reference CCDs vote in (exact L1 each)."""
    version = next_version(store)
    root = store.models_dir()
    tmp = root / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    postprocessor.save(tmp)
    _, ref_vectors = store.load_embeddings(reference.ids)
    projected = postprocessor.transform(ref_vectors)
    vindex.save_index(vindex.build_index(projected, reference.ids, reference_spec), tmp / REFERENCE_INDEX)
    if reference_spec.strip().lower() == "flat":
        ExactL1Index.build(projected).save(tmp / REFERENCE_EXACT)
    np.savez(tmp / REFERENCE_LABELS, ids=reference.ids, labels=reference.labels)
    for n, space in enumerate(more_spaces, start=1):
        directory = tmp / SPACE_DIR.format(n)
        space.save(directory)
        ExactL1Index.build(space.transform(ref_vectors)).save(directory / REFERENCE_EXACT)
    vindex.save_index(
        build_corpus_index(store, postprocessor, corpus_spec, ef_construction), tmp / CORPUS_INDEX
    )
    full = {
        **settings,
        "version": version,
        "classes": list(reference.classes),
        "class_weights": list(reference.class_weights),
        "reference_index": reference_spec,
        "corpus_index": corpus_spec,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "provenance": store.meta(),
    }
    (tmp / SETTINGS).write_text(json.dumps(full, indent=1, default=str))
    os.replace(tmp, root / version)
    _write_atomic(root / CURRENT, version)
    return version


def build_corpus_index(store: Store, postprocessor: PostProcessor, spec: str, ef_construction: int):
    """Every committed CCD, projected and added part by part (bounded memory: never all vectors at once)."""
    index = None
    for ids, vectors in store.iter_embeddings():
        projected = postprocessor.transform(vectors)
        if index is None:
            index = vindex.build_index(projected, ids, spec, ef_construction=ef_construction)
        else:
            vindex.add_vectors(index, projected, ids)
    if index is None:
        index = vindex.build_index(
            np.empty((0, postprocessor.output_dim), np.float32), np.empty(0, np.int64), spec
        )
    return index


def add_missing_ccds(store: Store, index, postprocessor: PostProcessor) -> int:
    """Project and add to a corpus ``index`` the committed CCDs it lacks; returns how many were added."""
    missing = np.setdiff1d(store.committed_ids(), vindex.index_ids(index), assume_unique=True)
    if len(missing):
        ids, vectors = store.load_embeddings(missing)
        vindex.add_vectors(index, postprocessor.transform(vectors), ids)
    return int(len(missing))


class Model:
    """A loaded model version. Indexes load lazily; the corpus index catches up with the catalog."""

    def __init__(self, store: Store, version: str):
        self.store = store
        self.version = version
        self.dir = store.models_dir() / version
        if not (self.dir / SETTINGS).exists():
            raise NotFoundError(f"store {store.path} has no model version {version!r}")
        self.settings: dict[str, Any] = json.loads((self.dir / SETTINGS).read_text())
        self.postprocessor = PostProcessor.load(self.dir)
        self._reference = None
        self._exact = None
        self._corpus = None
        self._reference_sizes: Counter[tuple[int, int]] | None = None
        self._more_spaces: list[tuple[PostProcessor, ExactL1Searcher]] | None = None

    @classmethod
    def current(cls, store: Store) -> Model:
        version = current_version(store)
        if version is None:
            raise NotTrainedError(f"store {store.path} has no trained model; run `vec train` first")
        return cls(store, version)

    @classmethod
    def for_rule(cls, store: Store, rule: str | None = None) -> Model:
        """The current model, or with ``rule`` the newest version trained for that rule."""
        current = cls.current(store)
        if rule is None or current.rule == rule:
            return current
        for version in reversed(list_versions(store)):
            settings = json.loads((store.models_dir() / version / SETTINGS).read_text())
            if settings.get("rule", "paper") == rule:
                return cls(store, version)
        raise NotTrainedError(
            f"store {store.path} has no model trained for the {rule} rule (the current one, "
            f"{current.version}, uses the {current.rule} rule); run `vec train --rule {rule}`"
        )

    @property
    def space_description(self) -> str:
        """What ``vec similar`` says it searched when it searched this model's corpus index."""
        return f"model {self.version}'s space"

    @property
    def rule(self) -> str:
        """The decision rule this version was trained for; versions from before the rule existed: paper."""
        return self.settings.get("rule", "paper")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.settings["classes"])

    @property
    def class_weights(self) -> np.ndarray:
        return np.asarray(self.settings["class_weights"], dtype=np.float64)

    def reference_index(self):
        if self._reference is None:
            self._reference = vindex.load_index(self.dir / REFERENCE_INDEX)
        return self._reference

    def reference_searcher(self):
        """What classification searches: the exact L1 index when the reference set is Flat (built and
        cached for versions written before it existed), else the FAISS index. A paper-rule model keeps
        FAISS: its float32 distances are part of the output the golden test pins (the neighbours are the
        same; the exact index's float64 distances differ in the 7th digit)."""
        if self.rule == "paper" or self.settings.get("reference_index", "Flat").strip().lower() != "flat":
            return vindex.FaissSearcher(self.reference_index())
        if self._exact is None:
            path = self.dir / REFERENCE_EXACT
            if path.exists():
                exact = ExactL1Index.load(path)
                ids = self.reference_labels()[0]
            else:
                ids, vectors = vindex.flat_vectors(self.reference_index())
                exact = ExactL1Index.build(vectors)
            self._exact = ExactL1Searcher(exact, ids)
        return self._exact

    def more_spaces(self) -> list[tuple[PostProcessor, ExactL1Searcher]]:
        """(post-processor, reference searcher) of each further space the model votes in (none for a
        model of one space), loaded once."""
        if self._more_spaces is None:
            ids = self.reference_labels()[0]
            self._more_spaces = []
            for n in range(1, len(self.settings.get("vote_spaces", ()))):
                directory = self.dir / SPACE_DIR.format(n)
                if not (directory / REFERENCE_EXACT).exists():
                    raise InconsistentStoreError(
                        f"model {self.version} votes in {len(self.settings['vote_spaces'])} spaces but "
                        f"{directory} is missing or incomplete; run `vec train` to write a new version"
                    )
                searcher = ExactL1Searcher(ExactL1Index.load(directory / REFERENCE_EXACT), ids)
                self._more_spaces.append((PostProcessor.load(directory), searcher))
        return self._more_spaces

    def reference_labels(self) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.dir / REFERENCE_LABELS, allow_pickle=False) as arrays:
            return arrays["ids"], arrays["labels"]

    def reference_sizes(self) -> Counter[tuple[int, int]]:
        """How many reference CCDs have each (NAXIS1, NAXIS2), read once (empty where none was recorded)."""
        if self._reference_sizes is None:
            self._reference_sizes = Counter(self.store.ccd_sizes(self.reference_labels()[0]).values())
        return self._reference_sizes

    def corpus_index(self, ef_search: int | None = None):
        """The corpus index with every committed CCD, adding what ingests committed since it was saved.

        ``ef_search``: HNSW search breadth (default: the store's ``index.hnsw_ef_search``)."""
        if self._corpus is None:
            self._corpus = vindex.load_index(self.dir / CORPUS_INDEX)
            self.catch_up()
        vindex.set_search_params(self._corpus, ef_search or self.store.config.index.hnsw_ef_search)
        return self._corpus

    def catch_up(self) -> int:
        """Project and add committed CCDs the corpus index lacks; returns how many were added."""
        return add_missing_ccds(self.store, self._corpus, self.postprocessor)

    def add_to_corpus(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add freshly committed raw vectors (an ingest after training) so search sees them at once.

        ``ids`` must be new to the catalog since this model was loaded (what ``commit_batch`` reports as
        added): the index caught up with every earlier commit when it was loaded, so they are not in it.
        """
        index = self.corpus_index()
        if len(ids):
            vindex.add_vectors(index, self.postprocessor.transform(vectors), ids)

    def save_corpus(self) -> None:
        if self._corpus is not None:
            vindex.save_index(self._corpus, self.dir / CORPUS_INDEX)

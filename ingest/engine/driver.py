"""The one ingest driver: what every engine shares, from planning a run to committing its batches.

An engine (:mod:`~ingest.engine.local`, :mod:`~ingest.engine.ray`) only turns the plan's CCD tasks into
:class:`BatchResult` batches; everything around that is here, written once:

* :func:`plan_ingest`: the sources exist, the embedder is built and its provenance (with the vector
  layout) recorded or checked, sources are expanded into CCD tasks and sampled, committed ids are read;
* :class:`CCDDataset`: the per-CCD work every engine maps (header -> skip if committed -> read -> the
  embedder's worker stage), bad CCDs becoming failure rows;
* :func:`run_ingest`: the run row, the source failures, :func:`commit_result` for each batch (failures,
  the commit protocol, the corpus index, compaction once small parts pile up), progress, and the run's
  status at the end, whatever happens.

Only the driver's process touches the store, so the store keeps its single writer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ingest.embedders import Embedder, create_embedder
from ingest.reader import CCDTask, inspect_fits, read_ccd, read_header_meta
from ingest.sources import _split_hdu_suffix, expand_sources
from vecstore.config import IngestConfig
from vecstore.errors import BadInputError
from vecstore.provenance import Provenance
from vecstore.store import Store


@dataclass(frozen=True)
class IngestOptions(IngestConfig):
    """What one ingest run does: the ``[ingest]`` config section (same fields, same defaults) plus what
    belongs to a run rather than to a configuration."""

    release: str | None = None  # release tag stored with every CCD
    image_root: str | None = None  # root of survey-ccds tables' image_filename

    @classmethod
    def from_config(cls, config: IngestConfig, **given: Any) -> IngestOptions:
        """The config section, overridden by the values given (a value of None means "not given")."""
        chosen = {key: value for key, value in given.items() if value is not None}
        return cls(**{**dataclasses.asdict(config), **chosen})


@dataclass
class IngestSummary:
    run_id: int
    ingested: int = 0
    skipped: int = 0  # already committed (resume) or listed twice
    failed: int = 0
    failures: list[tuple[str, str | None, str]] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, float]:
        """What the run's row in ``runs`` records."""
        return {
            "ingested": self.ingested,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
        }

    @property
    def rate(self) -> float:
        return self.ingested / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        return (
            f"ingested {self.ingested:,} CCDs, skipped {self.skipped:,} already in the store, "
            f"failed {self.failed:,} ({self.rate:.1f} CCDs/s, run {self.run_id})"
        )


@dataclass
class BatchResult:
    """What one batch produced, in a form that pickles cheaply between processes."""

    rows: list[dict[str, Any]]
    vectors: np.ndarray
    failures: list[tuple[str, str | None, str]]
    n_skipped: int


@dataclass
class IngestPlan:
    """What a run will do, decided before any pixel is read."""

    sources: list[str]
    embedder: Embedder
    tasks: list[CCDTask]  # the CCDs to embed (after sampling), committed ones included: they are skipped
    source_failures: list[tuple[str, str | None, str]]  # inputs that gave no task (path, hdu, reason)
    committed: np.ndarray  # ccd_ids already in the store


# ----------------------------------------------------------------------------------------------- planning
def build_embedder(options: IngestOptions, device: str = "cpu") -> Embedder:
    """The run's embedder, in the driver and in every worker that builds its own (empty = default)."""
    return create_embedder(
        options.embedder, weights=options.weights or None, preset=options.preset or None, device=device
    )


def embedder_provenance(embedder: Embedder) -> Provenance:
    """What the store records about the embedder's vectors, their layout included."""
    blocks = getattr(embedder, "blocks", None)
    return Provenance(
        embedder=embedder.config.name,
        preset=embedder.preset.key if embedder.preset else "none",
        dim=embedder.dim,
        weights_sha256=embedder.weights_sha256,
        feature_names=tuple(embedder.feature_names) if embedder.feature_names else None,
        blocks=tuple((str(name), int(width)) for name, width in blocks) if blocks else None,
    )


def check_sources_exist(sources: list[str | Path]) -> None:
    """BadInputError naming every source that is not on disk (``FILE[HDU]`` is checked as FILE).

    Entries of a text list or a survey-ccds table are not checked here: those become failure rows.
    """
    missing = [str(s) for s in sources if not os.path.lexists(_split_hdu_suffix(os.fspath(s), None)[0])]
    if missing:
        raise BadInputError(f"no such file or directory: {', '.join(missing)} (nothing was ingested)")


def plan_ingest(
    store: Store, sources: list[str | Path], options: IngestOptions, embedder: Embedder | None = None
) -> IngestPlan:
    """Check the sources, build the embedder and record its provenance, list and sample the CCD tasks.

    BadInputError before any work (no embedder, no run) if a source does not exist.
    """
    check_sources_exist(sources)
    embedder = embedder or build_embedder(options)
    store.ensure_provenance(embedder_provenance(embedder))
    listed = [str(s) for s in sources]
    scan = expand_sources(listed, image_root=options.image_root)
    return IngestPlan(
        sources=listed,
        embedder=embedder,
        tasks=sample_ccds(scan.tasks, options.ccds_per_exposure, options.seed),
        source_failures=[tuple(f) for f in scan.failures],
        committed=store.committed_ids(),
    )


def sample_ccds(tasks: list[CCDTask], per_exposure: int, seed: int) -> list[CCDTask]:
    """The paper's draw: ``per_exposure`` CCDs of each exposure, seeded by (seed, expnum) so the same
    CCDs are drawn whatever order or subset of exposures a run sees."""
    if per_exposure <= 0:
        return tasks
    groups: dict[int, list[CCDTask]] = {}
    expnums: dict[str, int] = {}
    for task in tasks:
        groups.setdefault(_exposure_key(task, expnums), []).append(task)
    chosen: list[CCDTask] = []
    for key, members in groups.items():
        members = sorted(members, key=lambda t: (t.path, str(t.hdu)))
        if len(members) > per_exposure:
            rng = np.random.default_rng([seed, key])
            members = [members[i] for i in sorted(rng.choice(len(members), size=per_exposure, replace=False))]
        chosen += members
    return chosen


def _exposure_key(task: CCDTask, expnums: dict[str, int]) -> int:
    """EXPNUM from the table row, else from the file's primary header (read once per file)."""
    if task.table_meta and task.table_meta.get("expnum") is not None:
        return int(task.table_meta["expnum"])
    if task.path not in expnums:
        try:
            expnum = inspect_fits(task.path).expnum
        except BadInputError:
            expnum = None
        # a file without EXPNUM fails later when read; any stable number keeps its CCDs together meanwhile
        expnums[task.path] = expnum if expnum is not None else zlib.crc32(task.path.encode())
    return expnums[task.path]


# ----------------------------------------------------------------------------------------------- per CCD
class CCDDataset(Dataset):
    """Item i: read task i's header; skip it if committed; else read, check and transform its pixels.

    ``transform`` is the embedder's worker stage (``Embedder.preparer``): a preset's preprocessing for
    torch embedders, the whole embedding for embedders without a model (``qa``). The local engine's
    DataLoader workers and the Ray decode stage both map this.
    """

    def __init__(self, tasks: list[CCDTask], committed: np.ndarray, transform: Callable, release: str | None):
        self.tasks = tasks
        self.committed = np.sort(np.asarray(committed, dtype=np.int64))
        self.transform = transform
        self.release = release

    def __len__(self) -> int:
        return len(self.tasks)

    def _is_committed(self, ccd_id: int) -> bool:
        i = np.searchsorted(self.committed, ccd_id)
        return bool(i < len(self.committed) and self.committed[i] == ccd_id)

    def __getitem__(self, i: int) -> tuple:
        task = self.tasks[i]
        try:
            if self._is_committed(read_header_meta(task, release=self.release).ccd_id):
                return ("skip",)
            meta, pixels = read_ccd(task, release=self.release)
            return ("ok", dataclasses.asdict(meta), self.transform(pixels, dataclasses.asdict(meta)))
        except BadInputError as exc:
            return ("fail", str(task.path), _hdu_of(exc, task), getattr(exc, "reason", str(exc)))


def _hdu_of(exc: BadInputError, task: CCDTask) -> str | None:
    hdu = getattr(exc, "hdu", None)
    return str(hdu if hdu is not None else task.hdu)


# ----------------------------------------------------------------------------------------------- the run
def run_ingest(
    store: Store,
    plan: IngestPlan,
    options: IngestOptions,
    batches: Callable[[], Iterator[BatchResult]],
    *,
    engine: str = "local",
    engine_args: dict[str, Any] | None = None,
    progress: Callable[[int, int, IngestSummary], None] | None = None,
) -> IngestSummary:
    """Run ``plan``: a run row, the source failures, then commit every batch ``batches()`` yields.

    The run ends ``ok``, or ``interrupted`` if anything stops it; either way the corpus index is saved and
    the run's counts recorded. ``progress(done, total, summary)`` counts the plan's tasks.
    """
    args = {"sources": plan.sources, "engine": engine, **(engine_args or {}), **dataclasses.asdict(options)}
    summary = IngestSummary(run_id=store.start_run("ingest", args))
    corpus = CorpusUpdater(store, options.index_save_every_s)
    started = time.monotonic()
    status = "interrupted"
    try:
        record_batch_failures(store, summary, plan.source_failures, options)
        with contextlib.closing(batches()) as results:
            for result in results:
                commit_result(store, summary, result, options, corpus)
                summary.seconds = time.monotonic() - started
                if progress:
                    done = summary.ingested + summary.skipped + summary.failed - len(plan.source_failures)
                    progress(done, len(plan.tasks), summary)
        status = "ok"
    finally:
        summary.seconds = time.monotonic() - started
        corpus.save()
        store.finish_run(summary.run_id, status, {**summary.counts(), "engine": engine})
    return summary


def commit_result(
    store: Store, summary: IngestSummary, result: BatchResult, options: IngestOptions, corpus: CorpusUpdater
) -> None:
    """Make one batch durable and count it: failures, the commit, the corpus index (every engine)."""
    record_batch_failures(store, summary, result.failures, options)
    summary.skipped += result.n_skipped
    if result.rows:
        committed = store.commit_batch(summary.run_id, result.rows, result.vectors)
        summary.ingested += committed.n_added
        summary.skipped += committed.n_already_committed
        new = committed.added
        corpus.add(np.array([r["ccd_id"] for r in result.rows], dtype=np.int64)[new], result.vectors[new])
        store.maybe_compact()  # merges small parts once [store] compact_trigger_parts is passed; else free


def record_batch_failures(
    store: Store, summary: IngestSummary, failures: list[tuple], options: IngestOptions
) -> None:
    """Keep failure rows; with ``--on-bad-ccd error`` stop at the first one (after recording it)."""
    if not failures:
        return
    store.record_failures(summary.run_id, [(path, hdu, None, reason) for path, hdu, reason in failures])
    summary.failed += len(failures)
    summary.failures += failures
    if options.on_bad_ccd == "error":
        path, hdu, reason = failures[0]
        raise BadInputError(f"{path}, HDU {hdu}: {reason} (stopping: --on-bad-ccd error)")


class CorpusUpdater:
    """Keeps the current model's corpus index up to date during an ingest, saving it now and then."""

    def __init__(self, store: Store, save_every_s: float):
        from vecstore.models import Model, current_version

        self.model = Model(store, current_version(store)) if current_version(store) else None
        if self.model is not None:
            self.model.corpus_index()  # load and catch up now, before this run commits anything
        self.save_every_s = save_every_s
        self.last_save = time.monotonic()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.model is None:
            return
        self.model.add_to_corpus(ids, vectors)
        if time.monotonic() - self.last_save > self.save_every_s:
            self.save()

    def save(self) -> None:
        if self.model is not None:
            self.model.save_corpus()
            self.last_save = time.monotonic()

"""Batch embedding: sources -> CCD tasks -> (DataLoader workers: read + preprocess) -> model -> store.

One library function, :func:`ingest`, serves every case:

* one device: the DataLoader's worker processes read FITS and preprocess while the main process runs the
  model and commits each batch through the store's commit protocol;
* several devices (``--devices cuda:0,1`` or ``cpu:2``): one process per device, each with its own
  DataLoader over its share of the tasks, running :func:`embed_shard` — the same generator the
  single-device path runs in-process — and sending finished batches to the main process, which alone
  commits (the store has one writer);
* Ray (:mod:`ingest.engine.ray`) maps the same per-batch work over a cluster.

Resumable: a CCD whose ``ccd_id`` is already committed is skipped after reading its header only.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ingest.embedders import Embedder, create_embedder, resolve_devices
from ingest.reader import CCDTask, inspect_fits, read_ccd, read_header_meta
from ingest.sources import _split_hdu_suffix, expand_sources
from vecstore.errors import BadInputError, VecError
from vecstore.provenance import Provenance
from vecstore.store import Store

_CPU_REPLICAS = re.compile(r"^cpu:(\d+)$")


@dataclass(frozen=True)
class IngestOptions:
    release: str | None = None
    embedder: str = "dinov2_vitb14_reg"
    preset: str | None = None
    weights: str | None = None
    devices: str = "cpu"
    batch_size: int = 16
    workers: int = 2
    ccds_per_exposure: int = 0  # 0 = every CCD
    seed: int = 0
    on_bad_ccd: str = "skip"
    image_root: str | None = None
    index_save_every_s: float = 300.0

    def __post_init__(self) -> None:
        if self.on_bad_ccd not in ("skip", "error"):
            raise VecError(f"on_bad_ccd must be 'skip' or 'error', not {self.on_bad_ccd!r}")
        if self.batch_size < 1 or self.workers < 0 or self.ccds_per_exposure < 0:
            raise VecError("batch_size must be >= 1, workers and ccds_per_exposure >= 0")


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


@dataclass
class BatchResult:
    """What one batch produced, in a form that pickles cheaply between processes."""

    rows: list[dict[str, Any]]
    vectors: np.ndarray
    failures: list[tuple[str, str | None, str]]
    n_skipped: int


# ----------------------------------------------------------------------------------------------- planning
def device_list(spec: str) -> list[str]:
    """``cpu``, ``cpu:N`` (N CPU replicas, e.g. a big CPU node or tests), ``cuda``, ``cuda:0,1``."""
    match = _CPU_REPLICAS.match(spec.strip().lower())
    if match:
        return ["cpu"] * max(1, int(match.group(1)))
    return resolve_devices(spec)


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


# ----------------------------------------------------------------------------------------------- workers
class CCDDataset(Dataset):
    """Item i: read task i's header; skip it if committed; else read, check and transform its pixels.

    ``transform`` runs in the DataLoader worker: a preset's preprocessing for torch embedders, the whole
    embedding for embedders without a model (``qa``).
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


def collate(items: list[tuple]) -> tuple[list[dict], list, list[tuple], int]:
    ok = [item for item in items if item[0] == "ok"]
    failures = [item[1:] for item in items if item[0] == "fail"]
    n_skipped = sum(1 for item in items if item[0] == "skip")
    return [item[1] for item in ok], [item[2] for item in ok], failures, n_skipped


def worker_transform(embedder: Embedder) -> Callable:
    """The per-CCD stage run in DataLoader workers (see ``Embedder.preparer``)."""
    return embedder.preparer()


def embed_shard(
    embedder: Embedder, tasks: list[CCDTask], committed: np.ndarray, options: IngestOptions
) -> Iterator[BatchResult]:
    """Embed ``tasks`` in batches on the embedder's device; the unit of work of every engine."""
    dataset = CCDDataset(tasks, committed, worker_transform(embedder), options.release)
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        num_workers=options.workers,
        collate_fn=collate,
        pin_memory=embedder.device.startswith("cuda"),
        prefetch_factor=4 if options.workers else None,
        persistent_workers=False,
    )
    for rows, payloads, failures, n_skipped in loader:
        yield BatchResult(rows, embedder.embed_prepared(payloads), failures, n_skipped)


def _device_process(rank: int, device: str, tasks, committed, options, queue) -> None:
    """Body of one device process: build the embedder there, embed its shard, send batches home."""
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // _n_devices(options)))
        embedder = create_embedder(options.embedder, weights=options.weights, preset=options.preset).to(
            device
        )
        for result in embed_shard(embedder, tasks, committed, options):
            queue.put(("batch", result))
        queue.put(("done", rank))
    except BaseException as exc:  # report, never hang the parent
        queue.put(("error", f"device {device}: {type(exc).__name__}: {exc}"))


def _n_devices(options: IngestOptions) -> int:
    return len(device_list(options.devices))


def _multi_device_results(
    devices: list[str], tasks: list[CCDTask], committed: np.ndarray, options: IngestOptions
) -> Iterator[BatchResult]:
    # spawn, not fork: CUDA cannot be initialised in a forked child, and a clean child is reproducible.
    context = mp.get_context("spawn")
    queue = context.Queue(maxsize=4 * len(devices))
    processes = [
        context.Process(
            target=_device_process,
            args=(rank, device, tasks[rank :: len(devices)], committed, options, queue),
            daemon=False,
        )
        for rank, device in enumerate(devices)
    ]
    for process in processes:
        process.start()
    try:
        running = len(processes)
        while running:
            kind, value = queue.get()
            if kind == "batch":
                yield value
            elif kind == "done":
                running -= 1
            else:
                raise VecError(f"embedding process failed: {value}")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


# ----------------------------------------------------------------------------------------------- ingest
def ingest(
    store: Store,
    sources: list[str | Path],
    options: IngestOptions,
    *,
    progress: Callable[[int, int, IngestSummary], None] | None = None,
    embedder: Embedder | None = None,
) -> IngestSummary:
    """Embed every CCD of ``sources`` not yet in ``store`` and commit it; returns counts and failures.

    BadInputError before any work (no embedder, no run) if a source does not exist.
    """
    check_sources_exist(sources)
    devices = device_list(options.devices)
    embedder = embedder or create_embedder(options.embedder, weights=options.weights, preset=options.preset)
    store.ensure_provenance(embedder_provenance(embedder))
    record_vector_layout(store, embedder)
    scan = expand_sources([str(s) for s in sources], image_root=options.image_root)
    tasks = sample_ccds(scan.tasks, options.ccds_per_exposure, options.seed)
    run_id = store.start_run("ingest", {"sources": [str(s) for s in sources], **dataclasses.asdict(options)})
    summary = IngestSummary(run_id=run_id)
    source_failures = [tuple(f) for f in scan.failures]
    committed = store.committed_ids()
    corpus = CorpusUpdater(store, options.index_save_every_s)
    started = time.monotonic()
    status = "interrupted"
    try:
        record_batch_failures(store, summary, source_failures, options)
        if len(devices) == 1:
            embedder.to(devices[0])
            results = embed_shard(embedder, tasks, committed, options)
        else:
            results = _multi_device_results(devices, tasks, committed, options)
        for result in results:
            commit_result(store, summary, result, options, corpus)
            summary.seconds = time.monotonic() - started
            if progress:
                progress(
                    summary.ingested + summary.skipped + summary.failed - len(source_failures),
                    len(tasks),
                    summary,
                )
        status = "ok"
    finally:
        summary.seconds = time.monotonic() - started
        corpus.save()
        store.finish_run(run_id, status, summary.counts())
    return summary


def check_sources_exist(sources: list[str | Path]) -> None:
    """BadInputError naming every source that is not on disk (``FILE[HDU]`` is checked as FILE).

    Entries of a text list or a survey-ccds table are not checked here: those become failure rows.
    """
    missing = [str(s) for s in sources if not os.path.lexists(_split_hdu_suffix(os.fspath(s), None)[0])]
    if missing:
        raise BadInputError(f"no such file or directory: {', '.join(missing)} (nothing was ingested)")


def embedder_provenance(embedder: Embedder) -> Provenance:
    return Provenance(
        embedder=embedder.config.name,
        preset=embedder.preset.key if embedder.preset else "none",
        dim=embedder.dim,
        weights_sha256=embedder.weights_sha256,
    )


def record_vector_layout(store: Store, embedder: Embedder) -> None:
    """Store what the vector's components are: feature names (SQL view ``features``) and blocks (the
    post-processor balances them). Written once, with the provenance they belong to."""
    meta = store.meta()
    layout = {}
    if embedder.feature_names and "feature_names" not in meta:
        layout["feature_names"] = json.dumps(list(embedder.feature_names))
    blocks = getattr(embedder, "blocks", None)
    if blocks and "blocks" not in meta:
        layout["blocks"] = json.dumps([list(b) for b in blocks])
    if layout:
        store.set_meta(layout)


def commit_result(
    store: Store, summary: IngestSummary, result: BatchResult, options: IngestOptions, corpus
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

"""The local engine: CCD tasks -> (DataLoader workers: read + preprocess) -> model on this node's devices.

:func:`ingest` serves every case on one node, over the shared driver (:mod:`ingest.engine.driver`):

* one device: the DataLoader's worker processes read FITS and preprocess while the main process runs the
  model and the driver commits each batch through the store's commit protocol;
* several devices (``--devices cuda:0,1`` or ``cpu:2``): one process per device, each with its own
  DataLoader over its share of the tasks, running :func:`embed_shard` — the same generator the
  single-device path runs in-process — and sending finished batches to the main process, which alone
  commits (the store has one writer);
* Ray (:mod:`ingest.engine.ray`) maps the same per-CCD work over a cluster and feeds the same driver.

Resumable: a CCD whose ``ccd_id`` is already committed is skipped after reading its header only.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ingest.embedders import Embedder, resolve_devices
from ingest.engine.driver import (
    BatchResult,
    CCDDataset,
    IngestOptions,
    IngestSummary,
    build_embedder,
    plan_ingest,
    run_ingest,
)
from ingest.reader import CCDTask
from vecstore.errors import EngineError
from vecstore.store import Store

_CPU_REPLICAS = re.compile(r"^cpu:(\d+)$")


# ----------------------------------------------------------------------------------------------- planning
def device_list(spec: str) -> list[str]:
    """``cpu``, ``cpu:N`` (N CPU replicas, e.g. a big CPU node or tests), ``cuda``, ``cuda:0,1``."""
    match = _CPU_REPLICAS.match(spec.strip().lower())
    if match:
        return ["cpu"] * max(1, int(match.group(1)))
    return resolve_devices(spec)


# ----------------------------------------------------------------------------------------------- workers
def collate(items: list[tuple]) -> tuple[list[dict], list, list[tuple], int]:
    ok = [item for item in items if item[0] == "ok"]
    failures = [item[1:] for item in items if item[0] == "fail"]
    n_skipped = sum(1 for item in items if item[0] == "skip")
    return [item[1] for item in ok], [item[2] for item in ok], failures, n_skipped


def embed_shard(
    embedder: Embedder, tasks: list[CCDTask], committed: np.ndarray, options: IngestOptions
) -> Iterator[BatchResult]:
    """Embed ``tasks`` in batches on the embedder's device; the unit of work of every engine."""
    dataset = CCDDataset(tasks, committed, embedder.preparer(), options.release)
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
        embedder = build_embedder(options, device)
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
                raise EngineError(f"embedding process failed: {value}")
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

    BadInputError before any work (no embedder, no run) if a source does not exist; EmbedderError if the
    devices are not there.
    """
    devices = device_list(options.devices)
    plan = plan_ingest(store, sources, options, embedder)

    def batches() -> Iterator[BatchResult]:
        if len(devices) > 1:
            return _multi_device_results(devices, plan.tasks, plan.committed, options)
        plan.embedder.to(devices[0])
        return embed_shard(plan.embedder, plan.tasks, plan.committed, options)

    return run_ingest(store, plan, options, batches, progress=progress)

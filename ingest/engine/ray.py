"""``--engine ray``: the shared ingest driver fed by a Ray Data pipeline on a cluster.

Pipeline (one row per CCD task)::

    driver: plan_ingest (sources -> tasks, sampling, provenance and vector layout), run_ingest (a run row,
      │     source failures)
      │  ray.data.from_items(tasks)
      ▼
    decode stage   map_batches on CPU tasks: header -> skip if committed -> read -> preprocess,
                   i.e. the driver's ``CCDDataset.__getitem__``; bad CCDs become failure rows;
                   ``workers`` tasks at a time per embed actor (the local engine's DataLoader workers)
      ▼
    embed stage    map_batches on a pool of actors that each build the embedder once:
                   one actor per GPU of the cluster (``num_gpus=1``) when ``devices`` asks for CUDA,
                   else a few CPU actors (``cpu`` -> 1, ``cpu:N`` -> N)
      ▼
    driver: iter_batches(batch_size) -> the driver's ``commit_result`` -> ``Store.commit_batch``

Only the driver touches the store, so the store keeps its single writer and both engines commit batches the
same way. Resumable like the local engine: committed ccd_ids are read before the pipeline starts and the
decode stage skips those CCDs after reading their header only; ``commit_batch`` also drops any id that is
already committed, so a Ray task retried after a node failure cannot add a second vector.

Between stages rows hold numpy arrays and text only: the task (pickled ``CCDTask``), the kind of result
(``ok`` / ``skip`` / ``fail``), the CCD's catalog row or its failure as JSON, and the embedder's prepared
payload (``Embedder.preparer``: the preprocessed image for ViTs, the image and the qa features for hybrids)
as flat float32 with its shape(s), or, after the embed stage, the vector.

Every node must see the input files, the weights file and the same Python environment at the same paths
(a shared file system such as Perlmutter's $SCRATCH / CFS, and one venv or conda env). Without a shared
file system run one local ingest per node instead and fold the stores together with ``vec merge``.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.embedders import Embedder
from ingest.engine.driver import (
    BatchResult,
    CCDDataset,
    IngestOptions,
    IngestPlan,
    IngestSummary,
    build_embedder,
    embedder_provenance,
    plan_ingest,
    run_ingest,
)
from ingest.reader import CCDTask
from vecstore.errors import BadInputError, EmbedderError, EngineError, NotInstalledError
from vecstore.provenance import Provenance
from vecstore.store import Store

INSTALL_HINT = "pip install 'vec[distributed]'"

# Ray Data fuses a task stage into the next actor stage when both ask for the same resources; decode would
# then run inside the embed actor, one batch after the other, leaving the other cores idle. Asking for half
# a CPU per decode task keeps the stages apart (the workaround given in ray-project/ray#54433); how many
# decode tasks run at once is capped by :func:`decode_tasks`, not by this number.
DECODE_TASK_CPUS = 0.5
# CPU cores kept for each GPU actor: its Python loop, host-to-device copies and bf16 casts.
GPU_ACTOR_CPUS = 1

OK, SKIP, FAIL = "ok", "skip", "fail"
_RAISED_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")


# ----------------------------------------------------------------------------------------------- Ray access
def import_ray():
    """``ray`` and ``ray.data``, or a VecError that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError as exc:
        raise NotInstalledError(
            f"--engine ray needs Ray Data, which is not installed ({exc}); {INSTALL_HINT}"
        ) from None
    return ray


def connect_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` ('auto', 'HOST:PORT'), or start a local instance with ``num_cpus``.

    A Ray already initialised in this process (a test fixture, a notebook) is used as it is. Returns True
    when this call started Ray, so that the caller shuts down only what it started.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is not None and num_cpus is not None:
        raise BadInputError("num_cpus sizes a local Ray instance; it cannot be combined with address")
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        ray.init(address=address)
    return True


# ----------------------------------------------------------------------------------------------- stages
def encode_task(task: CCDTask) -> dict[str, bytes]:
    """A task as one row; pickled because its HDU is an int or a name and its table row is free-form."""
    return {"task": pickle.dumps(task)}


class DecodeStage:
    """Decode stage (Ray tasks): the driver's per-CCD item (what the local engine's DataLoader maps) for
    each task of a batch.

    Returns per row: ``kind``, ``record`` (the CCD's catalog row for ``ok``, ``[path, hdu, reason]`` for
    ``fail``, empty for ``skip``), and what the embedder's preparer made of the pixels (the preprocessed
    image for ViTs, the vector itself for ``qa``, both for hybrids) as ``payload``, flattened to float32,
    with its ``payload_shape`` as JSON (:func:`pack_payload`). Flat payloads give the column one number of
    axes whatever the embedder, and rows without pixels an empty payload.
    """

    def __init__(self, committed: np.ndarray, transform: Callable, release: str | None):
        self.committed = np.sort(np.asarray(committed, dtype=np.int64))
        self.transform = transform
        self.release = release

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        # DataLoader workers run torch single-threaded; so do these tasks, several of which share a node.
        torch.set_num_threads(1)
        tasks = [pickle.loads(blob) for blob in batch["task"]]
        dataset = CCDDataset(tasks, self.committed, self.transform, self.release)
        rows = [self._row(dataset[i]) for i in range(len(dataset))]
        kinds, records, payloads, shapes = zip(*rows, strict=True) if rows else ((), (), (), ())
        return {
            "kind": np.array(kinds, dtype=str),
            "record": np.array(records, dtype=str),
            "payload": _object_array(list(payloads)),
            "payload_shape": np.array(shapes, dtype=str),
        }

    @staticmethod
    def _row(item: tuple) -> tuple[str, str, np.ndarray, str]:
        if item[0] == OK:
            flat, shapes = pack_payload(item[2])
            return OK, json.dumps(item[1]), flat, shapes
        if item[0] == FAIL:
            return FAIL, json.dumps(list(item[1:])), _NO_PAYLOAD, ""
        return SKIP, "", _NO_PAYLOAD, ""


_NO_PAYLOAD = np.zeros(0, dtype=np.float32)


def pack_payload(payload) -> tuple[np.ndarray, str]:
    """A prepared payload as one flat float32 array and its shape(s) as JSON: ``[3, 112, 56]`` for an
    array, ``[[3, 112, 56], [27]]`` for a tuple of arrays (a hybrid's preprocessed image and qa
    features)."""
    parts = payload if isinstance(payload, tuple) else (payload,)
    arrays = [np.asarray(p.numpy() if hasattr(p, "numpy") else p, dtype=np.float32) for p in parts]
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else _NO_PAYLOAD
    shapes = [list(a.shape) for a in arrays]
    return flat, json.dumps(shapes if isinstance(payload, tuple) else shapes[0])


def unpack_payload(flat: np.ndarray, shapes_json: str):
    """The payload :func:`pack_payload` packed: an array, or a tuple of arrays."""
    shapes = json.loads(shapes_json)
    flat = np.asarray(flat, dtype=np.float32)
    if not shapes or not isinstance(shapes[0], list):
        return flat.reshape(shapes)
    parts, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(flat[start : start + size].reshape(shape))
        start += size
    return tuple(parts)


def _object_array(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array of arrays (Ray Data keeps rows of different lengths as a ragged tensor column)."""
    column = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        column[i] = array
    return column


class EmbedStage:
    """Embed stage (a Ray actor): builds the embedder once, then turns payloads of ``ok`` rows into vectors
    with ``embed_prepared``, as the local engine's device process does.

    Checks that the embedder it built has the driver's provenance, so a node that sees another weights file
    at the same path cannot add vectors that are not comparable.
    """

    def __init__(self, options: IngestOptions, provenance: Provenance, device: str, threads: int):
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.dim = provenance.dim
        self.embedder = build_embedder(options, device)
        built = embedder_provenance(self.embedder)
        if built != provenance:
            raise EmbedderError(
                f"a Ray embed actor built {built.describe()} but the driver built {provenance.describe()}; "
                "every node must see the same weights file at the same path"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds = batch["kind"]
        ok = np.flatnonzero(kinds == OK)
        vectors = np.zeros((len(kinds), self.dim), dtype=np.float32)
        if len(ok):
            payloads = [unpack_payload(batch["payload"][i], batch["payload_shape"][i]) for i in ok]
            vectors[ok] = self.embedder.embed_prepared(payloads)
        return {"kind": kinds, "record": batch["record"], "vector": vectors}


# ----------------------------------------------------------------------------------------------- actors
@dataclass(frozen=True)
class ActorPlan:
    """How the embed stage runs: ``count`` actors on ``device``, each reserving these resources."""

    count: int
    device: str  # "cuda" (Ray gives each actor its own GPU via CUDA_VISIBLE_DEVICES) or "cpu"
    num_gpus: float
    num_cpus: float
    threads: int  # torch threads of a CPU actor


def plan_actors(devices: str, cluster_gpus: float, node_cpus: list[float]) -> ActorPlan:
    """Actors for ``devices``: ``cuda...`` -> one per GPU of the cluster; ``cpu`` -> 1; ``cpu:N`` -> N.

    GPU indices in ``cuda:0,1`` are per node and meaningless on a cluster: Ray assigns the GPUs, so any
    ``cuda`` spec means every GPU Ray can see. A CPU actor runs torch on half the cores of the smallest
    node (shared by the actors on that node), leaving the other half to the decode tasks.
    """
    spec = devices.strip().lower()
    if spec.startswith("cuda"):
        n_gpus = int(cluster_gpus)
        if n_gpus < 1:
            raise EmbedderError(
                f"devices {devices!r} asks for CUDA but the Ray cluster has no GPUs; start the workers with "
                "`ray start --num-gpus=N` on GPU nodes, or use --devices cpu"
            )
        return ActorPlan(count=n_gpus, device="cuda", num_gpus=1, num_cpus=GPU_ACTOR_CPUS, threads=1)
    if spec == "cpu":
        count = 1
    elif spec.startswith("cpu:") and spec[4:].isdigit() and int(spec[4:]) >= 1:
        count = int(spec[4:])
    else:
        raise EmbedderError(f"unknown devices {devices!r} for --engine ray: expected cpu, cpu:N or cuda")
    smallest = min(node_cpus) if node_cpus else 1
    per_node = math.ceil(count / max(1, len(node_cpus)))
    threads = max(1, int(smallest // 2) // per_node)
    return ActorPlan(count=count, device="cpu", num_gpus=0, num_cpus=threads, threads=threads)


def _cluster_shape(ray) -> tuple[float, list[float]]:
    """GPUs of the whole cluster, and CPUs of each live node."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = [float(node["Resources"].get("CPU", 0)) for node in nodes]
    return float(ray.cluster_resources().get("GPU", 0)), [c for c in node_cpus if c > 0]


# ----------------------------------------------------------------------------------------------- pipeline
def decode_tasks(options: IngestOptions, plan: ActorPlan) -> int:
    """Decode tasks running at once: ``--workers`` per embed actor, as the local engine runs ``--workers``
    DataLoader processes per device. The cap also bounds memory: a task holds a batch of raw and
    preprocessed CCDs (~1 GB for 16 full-size CCDs with the ``paper`` preset)."""
    return max(1, options.workers) * plan.count


def build_pipeline(
    tasks: list[CCDTask], committed: np.ndarray, embedder: Embedder, options: IngestOptions, plan: ActorPlan
):
    """The Ray Dataset of embedded rows (lazy: nothing runs until the driver iterates it)."""
    ray = import_ray()
    decode = DecodeStage(committed, embedder.preparer(), options.release)
    items = [encode_task(task) for task in tasks]
    dataset = ray.data.from_items(
        items, override_num_blocks=max(1, math.ceil(len(items) / options.batch_size))
    )
    dataset = dataset.map_batches(
        decode,
        compute=ray.data.TaskPoolStrategy(size=decode_tasks(options, plan)),
        batch_size=options.batch_size,
        batch_format="numpy",
        num_cpus=DECODE_TASK_CPUS,
    )
    return dataset.map_batches(
        EmbedStage,
        fn_constructor_kwargs={
            "options": options,
            "provenance": embedder_provenance(embedder),
            "device": plan.device,
            "threads": plan.threads,
        },
        compute=ray.data.ActorPoolStrategy(size=plan.count),
        batch_size=options.batch_size,
        batch_format="numpy",
        num_gpus=plan.num_gpus or None,
        num_cpus=plan.num_cpus,
    )


def batch_results(dataset, batch_size: int) -> Iterator[BatchResult]:
    """The embedded rows regrouped into the local engine's BatchResult, ``batch_size`` rows at a time."""
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield to_batch_result(batch)


def to_batch_result(batch: dict[str, np.ndarray]) -> BatchResult:
    kinds, records = batch["kind"], batch["record"]
    ok = kinds == OK
    rows = [json.loads(records[i]) for i in np.flatnonzero(ok)]
    failures = [tuple(json.loads(records[i])) for i in np.flatnonzero(kinds == FAIL)]
    vectors = np.asarray(batch["vector"], dtype=np.float32)[ok]
    return BatchResult(rows, vectors, failures, int((kinds == SKIP).sum()))


# ----------------------------------------------------------------------------------------------- ingest
def ingest_ray(
    store: Store,
    sources: list[str | Path],
    options: IngestOptions,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[int, int, IngestSummary], None] | None = None,
) -> IngestSummary:
    """Embed every CCD of ``sources`` not yet in ``store`` on a Ray cluster; same result as ``ingest``.

    ``address``: 'auto' (the cluster this node belongs to, e.g. after ``ray start``), 'HOST:PORT', or None
    for a local Ray instance with ``num_cpus`` CPUs (default: all). Ray is shut down at the end only if this
    call started it.
    """
    import_ray()
    plan = plan_ingest(store, sources, options)
    return run_ingest(
        store,
        plan,
        options,
        lambda: _ray_batches(plan, options, address, num_cpus),
        engine="ray",
        engine_args={"address": address},
        progress=progress,
    )


def _ray_batches(
    plan: IngestPlan, options: IngestOptions, address: str | None, num_cpus: int | None
) -> Iterator[BatchResult]:
    """The plan's batches from the Ray pipeline; Ray is joined (or started) only when there is work."""
    if not plan.tasks:
        return
    started_ray = connect_ray(address, num_cpus)
    ray = import_ray()
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI draws its own bar
        actors = plan_actors(options.devices, *_cluster_shape(ray))
        dataset = build_pipeline(plan.tasks, plan.committed, plan.embedder, options, actors)
        try:
            yield from batch_results(dataset, options.batch_size)
        except ray.exceptions.RayError as exc:
            raise EngineError(f"the Ray pipeline failed: {_error_summary(exc)}") from exc
    finally:
        if started_ray:
            ray.shutdown()


def _error_summary(exc: BaseException) -> str:
    """The line of a remote traceback that names the exception raised in vec's code (``XError: ...``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED_LINE.match(line)]
    ours = [line for line in raised if not line.startswith("ray.")]  # not Ray's wrappers around it
    if ours or raised:
        return (ours or raised)[-1]
    return lines[0] if lines else type(exc).__name__

"""--engine ray: same store as the local engine, and a run killed mid-way completes on re-run.

One local Ray instance (2 CPUs) is shared by the module because starting Ray takes seconds.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'vec[distributed]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'vec[distributed]'")

from ingest.engine.driver import IngestOptions  # noqa: E402 - only once Ray is known to be there
from ingest.engine.local import ingest  # noqa: E402 - only once Ray is known to be there
from ingest.engine.ray import import_ray, ingest_ray, plan_actors  # noqa: E402
from tests.fitsfactory import write_cp_exposure, write_not_fits  # noqa: E402
from vecstore.config import Config, StoreConfig  # noqa: E402
from vecstore.errors import EmbedderError, VecError  # noqa: E402
from vecstore.store import CCD_COLUMNS, Store  # noqa: E402

FLOAT32 = Config(store=StoreConfig(embedding_dtype="float32"))
OPTIONS = IngestOptions(release="test", embedder="test_vit", workers=0, batch_size=2)
CCDS = ("N4", "S4", "N5", "S5")
N_EXPOSURES = 8
N_GOOD_CCDS = N_EXPOSURES * len(CCDS) - 1  # one CCD is all NaN

# The driver killed in test_killed_run_completes_on_rerun: joins the module's Ray instance and ingests.
RAY_DRIVER = """
import sys
from ingest.engine.driver import IngestOptions
from ingest.engine.ray import ingest_ray
from vecstore.config import Config, StoreConfig
from vecstore.store import Store

store_path, data, address = sys.argv[1:4]
options = IngestOptions(release="test", embedder="test_vit", workers=0, batch_size=1)
with Store.create(store_path, config=Config(store=StoreConfig(embedding_dtype="float32"))) as store:
    ingest_ray(store, [data], options, address=address)
"""


@pytest.fixture(scope="module")
def ray_address():
    """The GCS address of a 2-CPU local Ray instance shared by this module's tests."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """8 small exposures of 4 CCDs, one CCD all NaN (a decode failure), one file that is not FITS."""
    directory = tmp_path_factory.mktemp("ray-data")
    for i in range(N_EXPOSURES):
        expnum = 300001 + i
        nan_ccd = {"S5": np.full((64, 32), np.nan, np.float32)} if i == 3 else None
        write_cp_exposure(directory / f"c4d_{expnum}_ooi_r.fits.fz", expnum, CCDS, seed=i, pixels=nan_ccd)
    write_not_fits(directory / "c4d_999999_ooi_r.fits.fz")
    return directory


@pytest.fixture(scope="module")
def local_store(data_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("local") / "store"
    with Store.create(path, config=FLOAT32) as store:
        summary = ingest(store, [data_dir], OPTIONS)
    assert (summary.ingested, summary.failed) == (N_GOOD_CCDS, 2)
    return path


def content(path: Path) -> tuple[np.ndarray, np.ndarray, list[dict], list[tuple]]:
    """(ids, vectors, CCD rows without bookkeeping, failures) of a store, by ccd_id."""
    with Store.open(path) as store:
        ids, vectors = store.load_embeddings()
        rows = store.query(f"SELECT {', '.join(CCD_COLUMNS)} FROM ccds ORDER BY ccd_id").to_pylist()
        failures = store.query("SELECT DISTINCT path, hdu, ccd_id, reason FROM failures ORDER BY ALL")
    return ids, vectors, rows, [tuple(r.values()) for r in failures.to_pylist()]


def assert_same_as_local(path: Path, local: Path) -> None:
    ids, vectors, rows, failures = content(path)
    local_ids, local_vectors, local_rows, local_failures = content(local)
    np.testing.assert_array_equal(ids, local_ids)
    np.testing.assert_allclose(vectors, local_vectors, rtol=0, atol=1e-6)
    assert rows == local_rows
    assert failures == local_failures


def test_ray_engine_builds_the_same_store_as_the_local_engine(ray_address, data_dir, local_store, tmp_path):
    with Store.create(tmp_path / "ray", config=FLOAT32) as store:
        summary = ingest_ray(store, [data_dir], OPTIONS, address=ray_address)
        run = store.query("SELECT status, args FROM runs").to_pylist()
    assert (summary.ingested, summary.skipped, summary.failed) == (N_GOOD_CCDS, 0, 2)
    assert run[0]["status"] == "ok" and '"engine": "ray"' in run[0]["args"]
    assert_same_as_local(tmp_path / "ray", local_store)

    with Store.open(tmp_path / "ray", writable=True, config=FLOAT32) as store:
        again = ingest_ray(store, [data_dir], OPTIONS, address=ray_address)
    assert (again.ingested, again.skipped) == (0, N_GOOD_CCDS)  # resumed: nothing left to embed


@pytest.mark.parametrize(("embedder", "layout_key"), [("qa", "feature_names"), ("test_vit+qa", "blocks")])
def test_ray_store_records_the_vector_layout_as_the_local_engine_does(
    ray_address, tmp_path, embedder, layout_key
):
    """A hybrid store built on Ray balances its blocks and a qa store has its ``features`` view, as built
    locally: both engines go through the driver that records the layout with the provenance."""
    data = tmp_path / "data"
    data.mkdir()
    write_cp_exposure(data / "c4d_310001_ooi_r.fits.fz", 310001, ("N4", "S4"))
    options = dataclasses.replace(OPTIONS, embedder=embedder)
    meta = {}
    for engine in ("local", "ray"):
        with Store.create(tmp_path / engine, config=FLOAT32) as store:
            if engine == "ray":
                ingest_ray(store, [data], options, address=ray_address)
            else:
                ingest(store, [data], options)
            meta[engine] = store.meta()
    assert layout_key in meta["local"]
    assert meta["ray"][layout_key] == meta["local"][layout_key]


def test_killed_run_completes_on_rerun(ray_address, data_dir, local_store, tmp_path):
    path = tmp_path / "killed"
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below, after the driver is gone
    driver = subprocess.Popen(
        [sys.executable, "-c", RAY_DRIVER, str(path), str(data_dir), ray_address],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    try:
        parts_at_kill = wait_for_first_commits(path, driver, timeout_s=60)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    assert parts_at_kill < N_GOOD_CCDS, (tmp_path / "driver.log").read_text()[-2000:]  # one CCD a part

    with Store.open(path, writable=True, config=FLOAT32) as store:
        assert store.scalar("SELECT status FROM runs WHERE run_id = 1") == "running"  # it never finished
        assert 0 < store.counts()["ccds"] < N_GOOD_CCDS
        summary = ingest_ray(store, [data_dir], OPTIONS, address=ray_address)
        verified = store.verify()
        duplicates = store.scalar("SELECT count(*) - count(DISTINCT ccd_id) FROM ccds")
    assert summary.ingested + summary.skipped == N_GOOD_CCDS and summary.ingested > 0
    assert verified == {"vectors": N_GOOD_CCDS, "ccds": N_GOOD_CCDS}
    assert duplicates == 0
    assert_same_as_local(path, local_store)


def wait_for_first_commits(path: Path, driver: subprocess.Popen, timeout_s: float) -> int:
    """Wait until the driver has renamed two parts into place; returns the number of parts seen.

    Parts are written one after the other, each after the previous batch's catalog transaction, so the
    second part proves the first commit is complete. (Polling the catalog itself can starve while the
    writer commits in a tight loop.)
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise AssertionError(f"the Ray driver exited with {driver.returncode} before it was killed")
        n_parts = len(list((path / "embeddings").glob("part-*.parquet"))) if path.exists() else 0
        if n_parts >= 2:
            return n_parts
        time.sleep(0.02)
    raise AssertionError(f"no commit within {timeout_s} s")


def test_actor_plan_follows_devices():
    assert plan_actors("cpu", 0, [2.0]).count == 1
    plan = plan_actors("cpu:3", 0, [64.0, 64.0])
    assert (plan.count, plan.device, plan.num_gpus, plan.threads) == (3, "cpu", 0, 16)  # 2 per node, half
    gpu = plan_actors("cuda", 8, [128.0, 128.0])
    assert (gpu.count, gpu.device, gpu.num_gpus) == (8, "cuda", 1)
    with pytest.raises(EmbedderError, match="no GPUs"):
        plan_actors("cuda:0,1", 0, [2.0])


def test_cuda_without_gpus_in_the_cluster_is_refused(ray_address, data_dir, tmp_path):
    with Store.create(tmp_path / "store", config=FLOAT32) as store:
        with pytest.raises(EmbedderError, match="Ray cluster has no GPUs"):
            ingest_ray(store, [data_dir], dataclasses.replace(OPTIONS, devices="cuda"), address=ray_address)
        assert store.scalar("SELECT status FROM runs") == "interrupted"
        assert store.counts()["ccds"] == 0


def test_missing_ray_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(VecError, match=r"pip install 'vec\[distributed\]'"):
        import_ray()

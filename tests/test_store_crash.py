"""The commit protocol under SIGKILL: nothing lost, duplicated or misaligned; readers never blocked."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vecstore import parts
from vecstore.store import Store

ROOT = Path(__file__).resolve().parents[1]
N_BATCHES, BATCH = 120, 4  # ~35 ms a batch: the clean run and the resumed one take seconds, not minutes


def _start_writer(store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_writer", str(store), str(N_BATCHES), str(BATCH)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _assert_consistent(path: Path) -> int:
    with Store.open(path, writable=True) as store:  # opening for writing runs recovery
        verified = store.verify()
        named = {name for _, name, _ in store.committed_parts()}
        on_disk = {p.name for p in parts.list_part_files(store.parts_dir)}
        assert on_disk == named, f"orphan or missing parts: {on_disk ^ named}"
        assert verified["vectors"] == verified["ccds"] == store.counts()["ccds"]
        return verified["ccds"]


class _Reader(threading.Thread):
    """Runs `vec sql` in a loop in other processes; records failures and every count it saw."""

    def __init__(self, store: Path):
        super().__init__(daemon=True)
        self.store, self.counts, self.errors = store, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vecstore.cli",
                    "--store",
                    str(self.store),
                    "sql",
                    "SELECT count(*) AS n FROM ccds",
                    "--format",
                    "csv",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                self.errors.append(result.stderr.strip())
            else:
                self.counts.append(int(result.stdout.split()[1]))


KILLS = 6  # each lands while the writer commits: every one exercises the protocol


def _wait_until_committing(
    store: Path, writer: subprocess.Popen, committed: int, timeout_s: float = 60
) -> bool:
    """Wait until the writer has committed past ``committed`` CCDs; False if it exited first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if writer.poll() is not None:
            return False
        if len(parts.list_part_files(store / "embeddings")) * BATCH > committed:
            return True
        time.sleep(0.01)
    raise AssertionError(f"the writer committed nothing within {timeout_s} s")


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    killed_store, clean_store = tmp_path / "killed", tmp_path / "clean"
    Store.create(killed_store).close()
    Store.create(clean_store).close()
    rng = random.Random(1234)
    reader = _Reader(killed_store)
    reader.start()
    kills, seen = 0, 0
    while kills < KILLS:
        writer = _start_writer(killed_store)
        # Kill only once the writer commits (not while Python imports), at a random moment after that.
        if not _wait_until_committing(killed_store, writer, seen):
            break  # finished before we could kill it
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        kills += 1
        now = _assert_consistent(killed_store)
        assert now >= seen, "a committed CCD disappeared after a kill"
        seen = now
    reader.stop.set()
    reader.join(timeout=60)
    assert kills == KILLS, f"the writer finished after only {kills} kills; slow it down or add batches"
    assert (
        subprocess.run(
            [sys.executable, "-m", "tests.store_writer", str(killed_store), str(N_BATCHES), str(BATCH)],
            cwd=ROOT,
        ).returncode
        == 0
    )
    assert (
        subprocess.run(
            [sys.executable, "-m", "tests.store_writer", str(clean_store), str(N_BATCHES), str(BATCH)],
            cwd=ROOT,
        ).returncode
        == 0
    )
    with Store.open(killed_store) as a, Store.open(clean_store) as b:
        ids_a, vec_a = a.load_embeddings()
        ids_b, vec_b = b.load_embeddings()
        assert len(ids_a) == N_BATCHES * BATCH
        np.testing.assert_array_equal(ids_a, ids_b)
        assert vec_a.tobytes() == vec_b.tobytes()
        meta = "SELECT ccd_id, expnum, ccdname, ccdnum, hdu, path FROM ccds ORDER BY ccd_id"
        assert a.query(meta).equals(b.query(meta))
    assert not reader.errors, f"vec sql failed during the writer loop: {reader.errors[:3]}"
    assert len(reader.counts) >= 5
    assert all(x <= y for x, y in zip(reader.counts, reader.counts[1:], strict=False)), reader.counts


# ----------------------------------------------------------------------------------- vec compact
COMPACT_BATCHES, COMPACT_BATCH = 120, 4
_READER = """
import pathlib, sys
import numpy as np
from tests.store_writer import batch_rows, batch_vectors
from vecstore.store import Store

path, n_batches, size, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
rows = [r for b in range(n_batches) for r in batch_rows(b, size)]
ids = np.array([r["ccd_id"] for r in rows])
expected = batch_vectors(rows).astype(np.float16).astype(np.float32)
rng, reads = np.random.default_rng(0), 0
with Store.open(path) as store:
    while not stop.exists():
        pick = np.sort(rng.choice(len(ids), 8, replace=False))
        got_ids, got = store.load_embeddings(ids[pick])
        assert np.array_equal(got_ids, ids[pick]) and got.tobytes() == expected[pick].tobytes(), pick
        reads += 1
print(reads)
"""


def _expected_store() -> tuple[np.ndarray, np.ndarray]:
    from tests.store_writer import batch_rows, batch_vectors

    rows = [r for b in range(COMPACT_BATCHES) for r in batch_rows(b, COMPACT_BATCH)]
    return np.array([r["ccd_id"] for r in rows]), batch_vectors(rows).astype(np.float16).astype(np.float32)


def _start_compact(store: Path, target_rows: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "vecstore.cli", "--store", str(store), "compact"]
    return subprocess.Popen(
        [*command, "--target-rows", str(target_rows)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _assert_same_vectors(path: Path, ids: np.ndarray, vectors: np.ndarray) -> None:
    with Store.open(path) as store:
        got_ids, got = store.load_embeddings()
        np.testing.assert_array_equal(got_ids, ids)
        assert got.tobytes() == vectors.tobytes()


@pytest.mark.slow
def test_sigkill_during_compaction_leaves_a_consistent_store(tmp_path):
    from tests.store_writer import run as write_store

    path, stop = tmp_path / "store", tmp_path / "stop-reading"
    Store.create(path).close()
    write_store(str(path), COMPACT_BATCHES, COMPACT_BATCH)  # 120 parts of 4 CCDs
    ids, vectors = _expected_store()
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(path), str(COMPACT_BATCHES), str(COMPACT_BATCH), str(stop)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(4321)
    kills, target = 0, 8  # each target doubles the last: there is always more to merge
    while kills < 6 and target <= len(ids):
        compactor = _start_compact(path, target)
        time.sleep(rng.uniform(0.7, 1.5))  # start-up and open take ~0.7 s, then a merge every ~0.05 s
        if compactor.poll() is not None:
            assert compactor.returncode == 0, compactor.stderr.read()
            target *= 2
            continue
        os.kill(compactor.pid, signal.SIGKILL)
        compactor.wait()
        kills += 1
        assert _assert_consistent(path) == len(ids)
        _assert_same_vectors(path, ids, vectors)
    assert kills >= 4, f"compaction finished after only {kills} kills; give it more parts"
    assert _start_compact(path, len(ids)).wait() == 0
    _assert_same_vectors(path, ids, vectors)
    assert _assert_consistent(path) == len(ids)
    with Store.open(path) as store:
        assert len(store.committed_parts()) == 1
    stop.touch()
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, f"a reader failed during compaction: {err[-2000:]}"
    assert int(out) >= 10

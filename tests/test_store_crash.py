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
N_BATCHES, BATCH = 300, 4


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


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    killed_store, clean_store = tmp_path / "killed", tmp_path / "clean"
    Store.create(killed_store).close()
    Store.create(clean_store).close()
    rng = random.Random(1234)
    reader = _Reader(killed_store)
    reader.start()
    kills, seen = 0, 0
    while kills < 12:
        writer = _start_writer(killed_store)
        time.sleep(rng.uniform(0.3, 1.0))
        if writer.poll() is not None:
            break  # finished before we could kill it
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        kills += 1
        now = _assert_consistent(killed_store)
        assert now >= seen, "a committed CCD disappeared after a kill"
        seen = now
    reader.stop.set()
    reader.join(timeout=60)
    assert kills >= 10, f"the writer finished after only {kills} kills; slow it down or add batches"
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

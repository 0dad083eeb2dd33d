"""A writer process for the crash tests: commits deterministic batches in a loop, resuming where it stopped.

Run as ``python -m tests.store_writer STORE N_BATCHES BATCH_SIZE``. Batch b holds CCDs of exposure
1000 + b with vectors seeded by the ccd_id, so any interrupted-and-resumed run must end with content
bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import sys

import numpy as np

from vecstore.store import Store

DIM = 768


def batch_rows(batch: int, size: int) -> list[dict]:
    expnum = 1000 + batch
    return [
        {
            "ccd_id": expnum * 100 + i,
            "expnum": expnum,
            "ccdname": f"N{i}",
            "ccdnum": 31 + i,
            "filter": "r",
            "exptime": 90.0,
            "path": f"/data/exp{expnum}.fits.fz",
            "hdu": f"N{i}",
            "release": "test",
        }
        for i in range(1, size + 1)
    ]


def batch_vectors(rows: list[dict]) -> np.ndarray:
    return np.stack(
        [np.random.default_rng(r["ccd_id"]).standard_normal(DIM).astype(np.float32) for r in rows]
    )


def run(store_path: str, n_batches: int, size: int) -> None:
    with Store.open(store_path, writable=True) as store:
        done = set(store.committed_ids().tolist())
        for batch in range(n_batches):
            rows = [r for r in batch_rows(batch, size) if r["ccd_id"] not in done]
            if rows:
                store.commit_batch(None, rows, batch_vectors(rows))


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

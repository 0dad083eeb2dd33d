"""Store read benchmark: one exposure's vectors vs the whole store, before and after ``vec compact``.

A store of N CCDs (768-d float16) is built with ``Store.commit_batch`` in parts of 62 CCDs (one DECam
exposure per part, as an ingest of whole exposures commits them). Timed, best of the repeats, warm cache:

- full read: ``Store.load_embeddings()`` (every vector, sorted by id) and one pass of
  ``Store.iter_embeddings()`` (part by part, bounded memory);
- one exposure: ``Store.load_embeddings(ids)`` of 20 CCDs of one exposure (what ``classify`` and
  ``similar`` ask for), a different exposure each repeat; and, as the baseline it replaced, the same ids
  read the old way (every part read, then filtered with ``np.isin``).

Then ``vec compact`` runs (through the CLI, in a subprocess; its time includes interpreter start-up) and
everything is timed again on the compacted store.

    python bench/store_reads.py [--quick] [--repeats N] [--results-dir DIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    PROJECT_ROOT,
    Report,
    Table,
    best,
    elapsed,
    interleaved,
    log,
    ms,
    parse_args,
    percent,
    timed,
)
from vecstore import parts  # noqa: E402
from vecstore.store import Store  # noqa: E402

DIM = 768
CCDS_PER_PART = 62
CCDS_READ = 20
FIRST_EXPNUM = 300_000
FULL_CCDS, QUICK_CCDS = 62_000, 6_200


def build_store(path: Path, n_ccds: int) -> Store:
    """``n_ccds`` CCDs committed in parts of 62; exposure e holds ccd_ids e*100 + 1..62."""
    store = Store.create(path)
    rng = np.random.default_rng(0)
    for first in range(0, n_ccds, CCDS_PER_PART):
        expnum = FIRST_EXPNUM + first // CCDS_PER_PART
        n = min(CCDS_PER_PART, n_ccds - first)
        rows = [
            {"ccd_id": expnum * 100 + c, "expnum": expnum, "ccdname": f"S{c}", "ccdnum": c, "filter": "r"}
            for c in range(1, n + 1)
        ]
        store.commit_batch(None, rows, rng.standard_normal((n, DIM), dtype=np.float32))
        if (first // CCDS_PER_PART) % 200 == 0:
            log(f"  committed {first + n:,} / {n_ccds:,} CCDs")
    return store


def exposure_ids(n_ccds: int, repeats: int) -> list[np.ndarray]:
    """20 CCDs of a different exposure for each repeat, spread over the store."""
    n_exposures = n_ccds // CCDS_PER_PART
    rng = np.random.default_rng(1)
    picks = np.linspace(0, n_exposures - 1, repeats).astype(int)
    return [
        (FIRST_EXPNUM + e) * 100
        + np.sort(rng.choice(np.arange(1, CCDS_PER_PART + 1), CCDS_READ, replace=False))
        for e in picks
    ]


def read_by_scanning(store: Store, ids: np.ndarray) -> np.ndarray:
    """The read ``load_embeddings(ids)`` did before the catalog located rows: every part, then np.isin."""
    chunks = []
    for _, name, _ in store.committed_parts():
        part_ids, vectors = parts.read_part(store.parts_dir / name)
        chunks.append(vectors[np.isin(part_ids, ids)].astype(np.float32))
    return np.concatenate(chunks)


def iterate_all(store: Store) -> None:
    for _ in store.iter_embeddings():
        pass


def time_reads(store: Store, selections: list[np.ndarray], repeats: int) -> dict[str, list[float]]:
    turn = iter(range(10**9))
    pick: Callable[[], np.ndarray] = lambda: selections[next(turn) % len(selections)]  # noqa: E731
    runs = {
        "full read": lambda: elapsed(store.load_embeddings),
        "iter_embeddings pass": lambda: elapsed(lambda: iterate_all(store)),
        "one exposure": lambda: elapsed(lambda ids=pick(): store.load_embeddings(ids)),
        "one exposure, scan + isin": lambda: elapsed(lambda ids=pick(): read_by_scanning(store, ids)),
    }
    return interleaved(runs, repeats)


def add_rows(table: Table, layout: str, n_parts: int, seconds: dict[str, list[float]]) -> None:
    full, one = best(seconds["full read"]), best(seconds["one exposure"])
    table.add(
        layout,
        f"{n_parts:,}",
        ms(full),
        ms(best(seconds["iter_embeddings pass"])),
        ms(one),
        percent(one / full),
        ms(best(seconds["one exposure, scan + isin"])),
        percent(best(seconds["one exposure, scan + isin"]) / full),
    )


def run_compact(path: Path) -> float:
    command = [sys.executable, "-m", "vecstore.cli", "--store", str(path), "compact"]
    result, seconds = timed(lambda: subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True))
    if result.returncode != 0:
        raise RuntimeError(f"vec compact failed: {result.stderr.strip()}")
    log(f"  {result.stdout.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_ccds = QUICK_CCDS if args.quick else FULL_CCDS
    repeats = args.repeats or (3 if args.quick else 5)
    report = Report("store_reads", args, {"ccds": n_ccds, "ccds_per_part": CCDS_PER_PART, "dim": DIM})
    table = Table(
        f"Store reads: {n_ccds:,} CCDs, {DIM}-d float16, committed in parts of {CCDS_PER_PART}; "
        f"one exposure = {CCDS_READ} CCDs; best of {repeats}",
        [
            "layout",
            "parts",
            "full read ms",
            "iter pass ms",
            "1 exposure ms",
            "ratio",
            "old way ms",
            "old ratio",
        ],
    )
    selections = exposure_ids(n_ccds, repeats)
    with tempfile.TemporaryDirectory(prefix="vec-store-reads-") as tmp:
        path = Path(tmp) / "store"
        log(f"building a store of {n_ccds:,} CCDs in parts of {CCDS_PER_PART}")
        build_store(path, n_ccds).close()
        for layout in ("as committed", "after vec compact"):
            if layout == "after vec compact":
                log("vec compact")
                report.raw["compact_s"] = run_compact(path)
            with Store.open(path) as store:
                n_parts = len(store.committed_parts())
                log(f"timing reads: {layout}, {n_parts:,} parts")
                seconds = time_reads(store, selections, repeats)
            report.raw[layout] = seconds
            add_rows(table, layout, n_parts, seconds)
    table.notes += [
        "ratio = one exposure / full read; 'old way' = every part read, then filtered with np.isin",
        f"vec compact (CLI, includes start-up): {report.raw['compact_s']:.1f} s",
    ]
    report.tables.append(table)
    report.finish()


if __name__ == "__main__":
    main()

"""Scale benchmark: how open, classify of one exposure, similar, ``classify --all`` and compact grow.

Stores of 100 k, 300 k and 1 M CCDs (``--quick``: 10 k and 30 k; ``--sizes`` to choose) are built with
``Store.commit_batch`` in parts of 62 CCDs — one part per DECam exposure, as an ingest at batch 62 leaves
them — of synthetic ``--dim``-d vectors (default 64, stored float16: the 768-d of a ViT would not fit two
cores and 24 GB at 1 M in a benchmark's time; every figure here but the vector bytes is per part and per
row, not per dimension). Each exposure has a category (good or one of four bad ones) and its CCD vectors
scatter around the category's centre, as in ``tests/querydata.py``.

A model is trained on a labelled block at the start of the store: 300 exposures labelled bad through the
real label importer (a decam-bad_expid-style list) and 300 named good with ``--good-from``; the rest of the
store is unlabelled, so ``classify --all`` classifies it. Then, per size:

- open: ``Store.open`` read-only (best of the repeats);
- classify EXPID: a fresh :class:`Model` (as a CLI call loads it) and ``classify_exposures`` of one
  exposure, a different one each repeat (best);
- similar: a fresh :class:`Model` (the corpus index is loaded from disk) and ``find_similar`` of one CCD
  (best);
- ``vec classify --all`` through the CLI in a subprocess: CCDs classified per second (interpreter start
  included) and the child's peak RSS (``os.wait4``'s ``ru_maxrss``);
- ``Store.compact`` (parts of 62 into parts of ``[store] compact_target_rows``) in process.

A second table gives each figure's growth exponent between consecutive sizes,
``log(value ratio) / log(size ratio)``: ~0 is flat, ~1 linear, ~2 quadratic.

    python bench/scale_bench.py [--quick] [--sizes 100000,300000] [--dim 64] [--repeats N]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    PROJECT_ROOT,
    RESULTS_DIR,
    Report,
    Table,
    best,
    log,
    ms,
    rate,
    secs,
    timed,
)
from ingest.labels.importer import import_labels  # noqa: E402
from query.classify import classify_exposures  # noqa: E402
from query.similar import find_similar  # noqa: E402
from query.train import train  # noqa: E402
from vecstore.config import Config  # noqa: E402
from vecstore.models import Model, current_version  # noqa: E402
from vecstore.provenance import Provenance  # noqa: E402
from vecstore.store import Store  # noqa: E402

CCDS_PER_EXPOSURE = 62
FIRST_EXPNUM = 300_000
CATEGORIES = ("PSF", "Ghost_Scatter", "Clouds_Transparency", "Out_of_Focus")
TRAINING_BLOCK = 600  # at most: exposures 0 .. 599 (a quarter of a small store), odd ones labelled bad
UNLABELLED_BAD_FRACTION = 0.1
FULL_SIZES, QUICK_SIZES = (100_000, 300_000, 1_000_000), (10_000, 30_000)
SPREAD = 0.8


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 k and 30 k CCDs; finishes in about a minute")
    parser.add_argument(
        "--sizes", default="", help="comma-separated store sizes in CCDs (overrides the default)"
    )
    parser.add_argument("--dim", type=int, default=64, help="vector dimension (default 64, stored float16)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of each latency (default 5, quick 2)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the stores are built (default: a temp dir)"
    )
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> list[int]:
    if args.sizes:
        return [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    return list(QUICK_SIZES if args.quick else FULL_SIZES)


# ------------------------------------------------------------------------------------------------ building
def training_block(n_exposures: int) -> int:
    return min(TRAINING_BLOCK, 2 * (n_exposures // 8))


def exposure_categories(n_exposures: int, seed: int = 0) -> list[str]:
    """The training block (good / labelled bad alternating), then the unlabelled rest, 10 % of it bad."""
    rng = np.random.default_rng([seed, 1])
    block = training_block(n_exposures)
    out = [CATEGORIES[(i // 2) % len(CATEGORIES)] if i % 2 else "good" for i in range(block)]
    for _ in range(block, n_exposures):
        bad = rng.random() < UNLABELLED_BAD_FRACTION
        out.append(CATEGORIES[int(rng.integers(len(CATEGORIES)))] if bad else "good")
    return out


def build_store(path: Path, n_ccds: int, dim: int, seed: int = 0) -> dict[str, float]:
    """Commit ``n_ccds`` CCDs one exposure (62 CCDs) per part, label the training block, train a model."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(0, 3, dim).astype(np.float32) for c in ("good", *CATEGORIES)}
    n_exposures = math.ceil(n_ccds / CCDS_PER_EXPOSURE)
    categories = exposure_categories(n_exposures, seed)
    store = Store.create(path)
    store.ensure_provenance(Provenance("synthetic", "none", dim, f"seed:{seed}"))
    start = time.perf_counter()
    for e, category in enumerate(categories):
        expnum = FIRST_EXPNUM + e
        n = min(CCDS_PER_EXPOSURE, n_ccds - e * CCDS_PER_EXPOSURE)
        rows = [
            {
                "ccd_id": expnum * 100 + c,
                "expnum": expnum,
                "ccdnum": c,
                "ccdname": f"S{c}",
                "filter": "griz"[e % 4],
                "exptime": 90.0,
                "release": "scale",
            }
            for c in range(1, n + 1)
        ]
        vectors = centres[category] + SPREAD * rng.standard_normal((n, dim), dtype=np.float32)
        store.commit_batch(None, rows, vectors)
        if e % 2000 == 0:
            log(f"  committed {e * CCDS_PER_EXPOSURE + n:,} / {n_ccds:,} CCDs")
    build_s = time.perf_counter() - start
    listing = path.parent / f"{path.name}-labels.txt"
    listing.write_text(
        "".join(
            f"{FIRST_EXPNUM + e}\t3\tvec:{c} synthetic\n"
            for e, c in enumerate(categories[: training_block(n_exposures)])
            if c != "good"
        )
    )
    import_labels(store, listing, "decals-badexp")
    good_from = f"expnum < {FIRST_EXPNUM + training_block(n_exposures)}"
    _, train_s = timed(lambda: train(store, Config(), good_from=good_from))
    parts = len(store.committed_parts())
    store.close()
    return {"build_s": build_s, "train_s": train_s, "parts": parts, "exposures": n_exposures}


# ------------------------------------------------------------------------------------------------ measuring
def probe_exposures(n_ccds: int, repeats: int) -> list[int]:
    """Unlabelled exposures spread over the store, one per repeat; only whole ones (62 CCDs): the store's
    last exposure may hold a few CCDs (1 M = 16,129 x 62 + 2), too few for the draw or for CCD 5."""
    n_exposures = math.ceil(n_ccds / CCDS_PER_EXPOSURE)
    whole = max(1, n_ccds // CCDS_PER_EXPOSURE)
    first = min(training_block(n_exposures), whole - 1)
    return [FIRST_EXPNUM + int(e) for e in np.linspace(first, whole - 1, repeats).astype(int)]


def measure_latencies(path: Path, n_ccds: int, repeats: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {"open": [], "classify": [], "similar": []}
    for expnum in probe_exposures(n_ccds, repeats):
        store, t = timed(lambda: Store.open(path))
        seconds["open"].append(t)
        try:
            version = current_version(store)

            def classify_one(store=store, version=version, expnum=expnum):
                return classify_exposures(store, Model(store, version), [expnum], store.config.classify)

            _, t = timed(classify_one)
            seconds["classify"].append(t)

            def similar_one(store=store, version=version, expnum=expnum):
                return find_similar(store, Model(store, version), str(expnum * 100 + 5), 10)

            _, t = timed(similar_one)
            seconds["similar"].append(t)
        finally:
            store.close()
        log(
            "  open {:.3f} s, classify {:.3f} s, similar {:.3f} s".format(
                *(seconds[k][-1] for k in ("open", "classify", "similar"))
            )
        )
    return seconds


def classify_all_subprocess(path: Path) -> dict[str, float]:
    """``vec classify --all`` in a child process: wall seconds, CCDs classified, the child's peak RSS."""
    command = [sys.executable, "-m", "vecstore.cli", "--store", str(path), "classify", "--all"]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"vec classify --all failed (exit {child.returncode}): {error[-2000:]}")
    with Store.open(path) as store:
        n_ccds = int(store.scalar("SELECT count(*) FROM ccd_predictions"))
        n_exposures = int(store.scalar("SELECT count(*) FROM exposure_predictions"))
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"seconds": seconds, "ccds": n_ccds, "exposures": n_exposures, "peak_rss_bytes": rss_bytes}


def compact_store(path: Path) -> dict[str, float]:
    with Store.open(path, writable=True) as store:
        result, seconds = timed(store.compact)
    return {"seconds": seconds, "parts_before": result.parts_before, "parts_after": result.parts_after}


def growth(values: list[float], sizes: list[int]) -> list[str]:
    """Exponents between consecutive sizes: log(v2 / v1) / log(n2 / n1)."""
    out = []
    for i in range(len(values) - 1):
        v1, v2, n1, n2 = values[i], values[i + 1], sizes[i], sizes[i + 1]
        out.append("-" if v1 <= 0 or v2 <= 0 else f"{math.log(v2 / v1) / math.log(n2 / n1):.2f}")
    return out


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    sizes = sizes_of(args)
    repeats = args.repeats or (2 if args.quick else 5)
    report = Report("scale_bench", args, {"sizes": sizes, "dim": args.dim, "repeats": repeats})
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for n in sizes:
            path = Path(tmp) / f"store-{n}"
            log(f"{n:,} CCDs: building ({args.dim}-d float16, parts of {CCDS_PER_EXPOSURE})")
            built = build_store(path, n, args.dim)
            log(f"  built in {built['build_s']:.1f} s, trained in {built['train_s']:.1f} s; measuring")
            latencies = measure_latencies(path, n, repeats)
            log("  classify --all (subprocess)")
            everything = classify_all_subprocess(path)
            log(f"  {everything['ccds']:,} CCDs in {everything['seconds']:.1f} s; compacting")
            compacted = compact_store(path)
            rows.append(
                {
                    "ccds": n,
                    **built,
                    **{f"{k}_s": best(v) for k, v in latencies.items()},
                    "all_s": everything["seconds"],
                    "all_ccds": everything["ccds"],
                    "all_rate": everything["ccds"] / everything["seconds"],
                    "all_rss": everything["peak_rss_bytes"],
                    "compact_s": compacted["seconds"],
                    "parts_after": compacted["parts_after"],
                }
            )
            report.raw[str(n)] = {
                "built": built,
                "latencies": latencies,
                "all": everything,
                "compact": compacted,
            }
            shutil_rmtree(path)

    table = Table(
        f"Scale: stores of {', '.join(f'{n:,}' for n in sizes)} CCDs ({args.dim}-d float16 synthetic "
        f"vectors, "
        f"{CCDS_PER_EXPOSURE} CCDs per part)",
        [
            "CCDs",
            "parts",
            "build s",
            "train s",
            "open ms",
            "classify EXPID ms",
            "similar ms",
            "classify --all CCDs/s",
            "--all peak RSS MB",
            "compact s",
            "parts after",
        ],
    )
    for r in rows:
        table.add(
            f"{r['ccds']:,}",
            f"{int(r['parts']):,}",
            secs(r["build_s"]),
            secs(r["train_s"]),
            ms(r["open_s"]),
            ms(r["classify_s"]),
            ms(r["similar_s"]),
            rate(r["all_ccds"], r["all_s"]),
            f"{r['all_rss'] / 2**20:,.0f}",
            secs(r["compact_s"]),
            f"{int(r['parts_after']):,}",
        )
    table.notes += [
        f"best of {repeats} for open / classify / similar (a fresh Model each time, as a CLI call loads it; "
        "classify: one unlabelled exposure, the configured CCD draw; similar: 10 look-alikes of one CCD)",
        "classify --all: `vec classify --all` in a subprocess over every unlabelled exposure, interpreter "
        "start included; RSS = the child's ru_maxrss",
        f"model: a block of up to {TRAINING_BLOCK} exposures, half labelled bad, half named good by "
        "--good-from; train s includes the corpus HNSW index over every CCD",
        "classify --all CCDs: those classified (the configured draw of each unlabelled exposure)",
        f"{args.dim}-d vectors, not 768-d: sized for a 2-core / 24 GB machine (set --dim)",
    ]
    report.tables.append(table)
    if len(rows) > 1:
        exponents = Table(
            "Growth exponent between sizes: log(value ratio) / log(size ratio); "
            "0 flat, 1 linear, 2 quadratic",
            ["sizes", "open", "classify EXPID", "similar", "classify --all s", "--all RSS", "compact s"],
        )
        sizes_done = [r["ccds"] for r in rows]
        columns = [
            growth([r[key] for r in rows], sizes_done)
            for key in ("open_s", "classify_s", "similar_s", "all_s", "all_rss", "compact_s")
        ]
        for i in range(len(rows) - 1):
            exponents.add(f"{sizes_done[i]:,} -> {sizes_done[i + 1]:,}", *(c[i] for c in columns))
        report.tables.append(exponents)
    report.finish()


def shutil_rmtree(path: Path) -> None:
    """Free the disk before the next size (the temp dir goes at the end anyway)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()

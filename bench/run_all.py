"""Run every benchmark, one after the other (so they do not compete for the cores), and print their tables.

    python bench/run_all.py [--quick] [--only store,knn]

Each benchmark runs in its own interpreter (``python bench/<name>.py [--quick]``); its tables go to stdout
and its progress to stderr as it runs. Exits 1 if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = (
    "store_bench",
    "ingest_bench",
    "knn_bench",
    "similar_bench",
    "qa_bench",
    "embedder_bench",
    "classify_bench",
    "space_vote_bench",
    "unseen_survey_bench",
    "vote_cost_bench",
    "ccd_size_bench",
    "unknown_bench",
    "review_bench",
    "exact_knn_bench",
    "scale_bench",
    "serve_bench",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the seconds-long version of every benchmark")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks to run (store, ingest, knn, similar, qa, embedder, classify); "
        "default: all",
    )
    return parser.parse_args(argv)


def selected(only: str) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    wanted = [name.strip().removesuffix("_bench") for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if f"{name}_bench" not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {[b[:-6] for b in BENCHMARKS]}")
    return [f"{name}_bench" for name in wanted]


def run_one(name: str, quick: bool) -> tuple[int, float]:
    command = [sys.executable, str(BENCH_DIR / f"{name}.py"), *(["--quick"] if quick else [])]
    print(f"\n=== {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    code = subprocess.run(command, cwd=BENCH_DIR.parent).returncode
    return code, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes = {name: run_one(name, args.quick) for name in selected(args.only)}
    print("\n=== summary")
    for name, (code, seconds) in outcomes.items():
        print(f"{name:<14} {'ok' if code == 0 else f'FAILED (exit {code})':<16} {seconds:8.1f} s")
    return 0 if all(code == 0 for code, _ in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

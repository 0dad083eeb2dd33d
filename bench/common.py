"""Shared pieces of the benchmarks: arguments, timing, machine description, tables and result files.

Timings on a shared machine are noisy, so every benchmark measures its baseline in the same run,
interleaves the repeats of the baseline and of the thing measured (both see the same load), reports the
best of the repeats (other jobs only ever add time; every repeat is kept in the JSON file), and prints the
load average when it started and when it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
_STARTED = time.monotonic()


# ------------------------------------------------------------------------------------------- arguments
def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--quick`` (seconds-long smoke version), ``--repeats`` and ``--results-dir``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; finishes in seconds")
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of each timing (default: per bench)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"where the JSON results go (default {RESULTS_DIR.relative_to(PROJECT_ROOT)})",
    )
    return parser.parse_args(argv)


def repeats_for(args: argparse.Namespace, full: int, quick: int = 1) -> int:
    if args.repeats is not None:
        return max(1, args.repeats)
    return quick if args.quick else full


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the tables."""
    print(f"[{time.monotonic() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- timing
def elapsed(function: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each run once per repeat, in turn, so that all of them share the machine's load.

    A run returns the seconds it measured itself (it may leave set-up out of its timing).
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            seconds[name].append(run())
            log(f"  {name}: {seconds[name][-1]:.3f} s (repeat {repeat + 1}/{repeats})")
    return seconds


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def best(values: Sequence[float]) -> float:
    return float(min(values))


# ------------------------------------------------------------------------------------------- machine
def load_average() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{'+dirty' if dirty else ''}" if head else "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git_revision(),
    }


def format_load(load: Sequence[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


# ------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A plain aligned text table; cells are strings (numbers right-aligned), notes follow the rows."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns in {self.title!r}")
        self.rows.append([str(c) for c in cells])

    def render(self, header: str = "") -> str:
        widths = [max([len(c)] + [len(r[i]) for r in self.rows]) for i, c in enumerate(self.columns)]
        lines = [self.title]
        if header:
            lines.append(header)
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for row in self.rows:
            cells = [
                _align(cell, w, first=i == 0) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        lines += [f"  * {note}" for note in self.notes]
        return "\n".join(lines)


def _align(cell: str, width: int, *, first: bool) -> str:
    return cell.ljust(width) if first or not _looks_numeric(cell) else cell.rjust(width)


def _looks_numeric(cell: str) -> bool:
    text = cell.replace(",", "").replace("%", "").rstrip("x").strip()
    try:
        float(text)
    except ValueError:
        return cell.strip() in ("-", "n/a")
    return True


def rate(count: float, seconds: float) -> str:
    """Items per second, 3 significant figures with thousands separators."""
    return "-" if seconds <= 0 else _significant(count / seconds)


def ms(seconds: float) -> str:
    return _significant(seconds * 1000.0)


def secs(seconds: float) -> str:
    return _significant(seconds)


def ratio(numerator: float, denominator: float) -> str:
    return "-" if denominator <= 0 else f"{_significant(numerator / denominator)}x"


def percent(fraction: float) -> str:
    return f"{100.0 * fraction:.1f}%"


def _significant(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# ------------------------------------------------------------------------------------------- results
class Report:
    """Collects a benchmark's tables and raw numbers; prints the tables and writes the JSON file."""

    def __init__(self, name: str, args: argparse.Namespace, params: dict[str, Any]):
        self.name = name
        self.args = args
        self.params = params
        self.load_start = load_average()
        self.tables: list[Table] = []
        self.raw: dict[str, Any] = {}

    def header(self) -> str:
        mode = "quick" if self.args.quick else "full"
        return (
            f"[{mode}] {os.cpu_count()} cores, git {git_revision()}; load avg 1/5/15 min: "
            f"start {format_load(self.load_start)}, end {format_load(load_average())}"
        )

    def finish(self) -> Path:
        header = self.header()
        print()
        for table in self.tables:
            print(table.render(header))
            print()
        return self.write(header)

    def write(self, header: str) -> Path:
        self.args.results_dir.mkdir(parents=True, exist_ok=True)
        suffix = ".quick.json" if self.args.quick else ".json"
        path = self.args.results_dir / f"{self.name}{suffix}"
        payload = {
            "benchmark": self.name,
            "quick": bool(self.args.quick),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "header": header,
            "machine": machine_info(),
            "load_start": self.load_start,
            "load_end": load_average(),
            "params": self.params,
            "tables": [asdict(t) for t in self.tables],
            "raw": self.raw,
        }
        path.write_text(json.dumps(payload, indent=1, default=str))
        print(f"results: {path}")
        return path

"""Every benchmark runs in its quick form and prints a table; no timing is asserted (numbers: bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (ROOT / "bench").glob("*_bench.py"))
# Smaller than a benchmark's own --quick where that still exercises every code path: the smoke test asks
# only that it runs and prints its table (scale_bench's quick 10 k / 30 k stores took 52 s of CI).
SMOKE_ARGS = {"scale_bench": ["--sizes", "3000,6000"]}


def test_all_benchmarks_are_listed_in_run_all():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    assert sorted(run_all.BENCHMARKS) == BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_benchmark_prints_a_table(name, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / f"{name}.py"),
            "--quick",
            *SMOKE_ARGS.get(name, []),
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "---" in result.stdout  # a table's rule line
    assert list(tmp_path.glob("*.json")), "no results file written"


def test_classify_bench_interval_is_the_wilson_score_interval():
    sys.path.insert(0, str(ROOT))
    from bench.classify_bench import wilson_interval

    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)  # the textbook example
    assert wilson_interval(80, 80)[1] == 1.0 and wilson_interval(80, 80)[0] < 0.96  # not a zero width
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_space_vote_bench_counts_false_alarms_and_misses_from_the_scores():
    sys.path.insert(0, str(ROOT))
    from bench.classify_bench import scores
    from bench.space_vote_bench import counts, scored

    truth = ["good", "good", "good", "PSF", "Clouds_Transparency", "Noise", "Bad_CCD"]
    # one false alarm (the second), two misses (Clouds_Transparency and Bad_CCD called good)
    predicted = ["good", "PSF", "good", "PSF", "good", "Noise", "good"]
    assert counts(scored(scores(truth, predicted), truth)) == {"right": 4, "false_alarms": 1, "misses": 2}


def test_unseen_survey_bench_meets_the_goal_only_on_all_three_scores():
    sys.path.insert(0, str(ROOT))
    from bench.unseen_survey_bench import meets_goal

    assert meets_goal({"accuracy": 0.95, "precision": 0.95, "recall": 0.90})
    assert not meets_goal({"accuracy": 0.99, "precision": 1.0, "recall": 0.89})
    assert not meets_goal({"accuracy": 0.949, "precision": 1.0, "recall": 1.0})
    assert not meets_goal({"accuracy": 1.0, "precision": 0.94, "recall": 1.0})

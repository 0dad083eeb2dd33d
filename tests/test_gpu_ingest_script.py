"""bench/gpu_ingest.py runs its tiny CPU version and prints its tables; its FLOP count is the issue's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_ingest.py"


def test_flops_per_paper_ccd_are_the_issues_figure():
    sys.path.insert(0, str(ROOT))
    try:
        from bench.gpu_ingest import tokens, vit_flops
    finally:
        sys.path.pop(0)
    assert tokens(2352, 1176) == 5 + 168 * 84
    assert round(vit_flops(2352, 1176) / 1e12, 2) == 9.74
    assert tokens(518, 518) == 5 + 37 * 37


def _run(tmp_path: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--results-dir", str(tmp_path), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.glob("gpu_ingest*.json")), "no results file written"
    return result.stdout


def test_tiny_cpu_run_prints_the_sweep_and_the_decode_tables(tmp_path):
    out = _run(tmp_path)
    assert "CCDs/s per GPU" in out and "TFLOP/s" in out and "workers to feed it" in out
    assert "tiny 112x56" in out and "---" in out


@pytest.mark.slow
def test_tiny_cpu_run_with_a_full_ingest_prints_its_summary(tmp_path):
    out = _run(tmp_path, "--full-ingest")
    assert "`vec ingest`" in out and "ingested 8 CCDs" in out

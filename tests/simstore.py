"""A store built the way a new user builds one: simulated FITS, `vec ingest` with the weight-free ``qa``
embedder, the simulator's bad_expid list imported, `vec train` (the CLI, end to end)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ingest.simulate.survey import simulate_survey
from vecstore.cli import app

runner = CliRunner()


def vec(store: Path, *args, ok: bool = True):
    """``vec --store STORE ARGS...``; with ``ok``, fail the test on a non-zero exit."""
    result = runner.invoke(app, ["--store", str(store), *map(str, args)])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def trained_simulated_store(root: Path, n_exposures: int, **simulation):
    """(store path, simulation) under ``root``: ``simulation`` goes to ``simulate_survey``."""
    sim = simulate_survey(root / "sim", n_exposures, **simulation)
    store = root / "store"
    vec(store, "ingest", root / "sim", "--release", "sim", "--embedder", "qa", "--workers", 0)
    vec(store, "labels", "import", sim.truth.bad_expid)
    vec(store, "train")
    return store, sim

"""`vec nightly` through the CLI on simulated FITS: ingest the night, classify it, append to the running list,
the summary page; a second run adds nothing; a later file adds only itself."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ingest.simulate.survey import simulate_survey
from query.nightly import listed_expnums
from tests.simstore import trained_simulated_store, vec

CCDS = ["N4", "N5", "S4", "S5"]
SHAPE = (128, 64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store trained on 22 simulated exposures (qa features: no weights, quick on CPU)."""
    root = tmp_path_factory.mktemp("nightly")
    store, _ = trained_simulated_store(root, 22, ccd_shape=SHAPE, ccdnames=CCDS, seed=5, bad_fraction=0.5)
    return store


@pytest.fixture
def store(trained, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(trained, copy)
    return copy


def _night(path, n, first_expnum, seed):
    return simulate_survey(
        path, n, ccd_shape=SHAPE, ccdnames=CCDS, seed=seed, bad_fraction=1.0, first_expnum=first_expnum
    )


def test_nightly_run_is_idempotent(store, tmp_path):
    night = _night(tmp_path / "night", 3, 950000, seed=11)
    # every CCD flagged (p_bad >= 0) so that every exposure is bad: the list and the pages get written
    flag_all = tmp_path / "flag-all.toml"
    flag_all.write_text("[classify]\nthreshold = 0.0\nfraction = 0.0\n")

    def nightly():
        return vec(store, "--config", flag_all, "nightly", tmp_path / "night", "--release", "n1").output

    first = nightly()
    assert "classified 3 new exposure(s): 3 bad" in first
    bad = 3
    running = store / "nightly" / "vec-bad_expid.txt"
    listed = listed_expnums(running)
    assert len(listed) == bad and listed <= {e.expnum for e in night.exposures}
    data_lines = [line for line in running.read_text().splitlines() if not line.startswith("#")]
    assert len(data_lines) == bad and all("\t3\tvec:" in line for line in data_lines)
    page = Path(re.search(r"summary: (\S+)", first).group(1))
    assert page.parent.parent == store / "nightly" and page.parent.name.startswith("run-")
    html = page.read_text()
    assert "new exposures classified: 3" in html and "CCDs flagged unknown" in html
    for expnum in listed:
        assert (page.parent / f"{expnum}.html").exists() and f"{expnum}.html" in html
    before = running.read_text()

    again = nightly()
    assert "nothing new" in again and "ingested 0 CCDs" in again
    assert running.read_text() == before

    _night(tmp_path / "later", 1, 960000, seed=12)
    shutil.copy(next((tmp_path / "later").glob("*.fits*")), tmp_path / "night")
    third = nightly()
    assert "classified 1 new exposure(s)" in third
    lines = [line.split()[0] for line in running.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == len(set(lines))  # never an exposure twice
    assert set(map(int, lines)) == listed | {960000}


def test_nightly_with_its_own_list_and_out(store, tmp_path):
    _night(tmp_path / "night", 2, 970000, seed=13)
    running, out = tmp_path / "lists" / "bad.txt", tmp_path / "summary"
    running.parent.mkdir()
    running.write_text("# an older list\n970000\t2\tclouds, by hand\n")
    result = vec(store, "nightly", tmp_path / "night", "--release", "n2", "--list", running, "--out", out)
    assert "classified 2 new exposure(s)" in result.output
    heads = [line.split()[0] for line in running.read_text().splitlines() if not line.startswith("#")]
    assert heads.count("970000") == 1  # already in the list: not written again
    assert (out / "summary.html").exists()


def test_nightly_bad_inputs(store, tmp_path):
    missing = vec(store, "nightly", tmp_path / "nowhere", "--release", "n1", ok=False)
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    untrained = tmp_path / "untrained"
    shutil.copytree(store, untrained)
    (untrained / "models" / "CURRENT").unlink()
    _night(tmp_path / "night", 1, 980000, seed=14)
    result = vec(untrained, "nightly", tmp_path / "night", "--release", "n1", ok=False)
    assert result.exit_code == 1 and "no trained model; run `vec train` first" in result.output
    assert not (untrained / "nightly").exists()  # refused before any work

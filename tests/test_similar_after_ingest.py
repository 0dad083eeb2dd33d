"""`vec ingest` ends by building the label-free space `vec similar` searches (issue 15, part 1).

Without a trained model the space is built at the end of the ingest, so the first `vec similar` loads it
instead of fitting and indexing; a later ingest brings it up to date; `--no-similar-index` skips it; once a
model exists it is not built by default (the model's space is what `vec similar` searches then).
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from query.analysts import add_label
from query.train import train
from tests.fitsfactory import write_cp_exposure
from vecstore import corpus_space
from vecstore import index as vindex
from vecstore.cli import app
from vecstore.config import Config
from vecstore.corpus_space import LABEL_FREE, space_dir
from vecstore.models import CORPUS_INDEX, SETTINGS
from vecstore.store import Store

runner = CliRunner()
NAMES = ["N4", "S4", "N5"]


def _exposures(directory: Path, expnums: range) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for e in expnums:
        write_cp_exposure(directory / f"c4d_{e}_ooi_r_v1.fits.fz", e, NAMES, seed=e)
    return directory


def _ingest(store: Path, source: Path, *extra: str):
    return runner.invoke(
        app,
        ["--store", str(store), "ingest", str(source), "--release", "t", "--embedder", "qa",
         "--workers", "0", *extra],
    )  # fmt: skip


def test_ingest_builds_the_space_and_similar_uses_it_without_rebuilding(tmp_path, monkeypatch):
    store = tmp_path / "s"
    out = _ingest(store, _exposures(tmp_path / "a", range(710001, 710005)))
    assert out.exit_code == 0, out.output
    assert "similar index:" in out.output and "--no-similar-index" in out.output
    directory = space_dir(Store.open(store))
    assert (directory / SETTINGS).exists() and (directory / CORPUS_INDEX).exists()
    assert vindex.load_index(directory / CORPUS_INDEX).ntotal == 4 * len(NAMES)
    built = (directory / SETTINGS).stat().st_mtime_ns

    # a second ingest of new exposures brings the saved index up to date (no refit: 12 -> 18 CCDs)
    out = _ingest(store, _exposures(tmp_path / "b", range(710005, 710007)))
    assert out.exit_code == 0, out.output
    assert vindex.load_index(directory / CORPUS_INDEX).ntotal == 6 * len(NAMES)
    assert (directory / SETTINGS).stat().st_mtime_ns == built

    def refuse(*_args, **_kwargs):
        raise AssertionError("the label-free space was built again")

    monkeypatch.setattr(corpus_space, "build_label_free_space", refuse)
    found = runner.invoke(app, ["--store", str(store), "similar", "710001/N4", "-k", "3"])
    assert found.exit_code == 0, found.output
    assert f"searched {LABEL_FREE}" in found.output


def test_no_similar_index_skips_it(tmp_path):
    store = tmp_path / "s"
    out = _ingest(store, _exposures(tmp_path / "a", range(720001, 720003)), "--no-similar-index")
    assert out.exit_code == 0, out.output
    assert "similar index" not in out.output
    assert not space_dir(Store.open(store)).exists()


def test_a_store_with_a_model_skips_it_by_default_and_similar_index_forces_it(tmp_path):
    store = tmp_path / "s"
    expnums = range(730001, 730009)
    out = _ingest(store, _exposures(tmp_path / "a", expnums), "--no-similar-index")
    assert out.exit_code == 0, out.output
    good = tmp_path / "good.txt"
    good.write_text("730005\n730006\n730007\n730008\n")
    with Store.open(store, writable=True) as opened:
        for e in (730001, 730002, 730003, 730004):
            add_label(opened, str(e), "PSF", "tester")
        train(opened, Config(), good_from=str(good))  # a calibrated model: 4 bad, 4 good exposures
    source = _exposures(tmp_path / "b", range(730009, 730011))
    out = _ingest(store, source)
    assert out.exit_code == 0, out.output
    assert "similar index" not in out.output
    assert not space_dir(Store.open(store)).exists()
    forced = _ingest(store, source, "--similar-index")  # nothing new, but asked for: built
    assert forced.exit_code == 0, forced.output
    assert "similar index: ready" in forced.output
    assert (space_dir(Store.open(store)) / CORPUS_INDEX).exists()


def test_a_space_that_cannot_be_fitted_does_not_fail_the_ingest(tmp_path):
    source = tmp_path / "a"
    source.mkdir()
    write_cp_exposure(source / "c4d_740001_ooi_r_v1.fits.fz", 740001, ["N4"])  # one CCD: nothing to fit
    out = _ingest(tmp_path / "s", source)
    assert out.exit_code == 0, out.output
    assert "similar index: not built" in out.output and "first use" in out.output

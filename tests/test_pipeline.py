"""The whole path on real FITS files from the simulator: ingest, labels, train, classify a new FILE,
evaluate, pictures, and the demo command."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.engine.driver import IngestOptions
from ingest.engine.local import ingest
from ingest.labels.importer import import_labels
from ingest.simulate.survey import simulate_survey
from query.classify import classify_all, classify_exposures, classify_file
from query.train import train
from vecstore import index as vindex
from vecstore.cli import app
from vecstore.config import Config
from vecstore.models import Model
from vecstore.store import Store

CCDS = ["N4", "N5", "N10", "N11", "S4", "S5", "S10", "S11"]
runner = CliRunner()


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A trained store of 35 exposures (read-only for the tests: one that adds to a store copies it first,
    see :func:`own_copy`) and the 36th exposure's file, never ingested into it."""
    root = tmp_path_factory.mktemp("pipeline")
    sim = simulate_survey(root / "sim", 36, ccd_shape=(256, 128), ccdnames=CCDS, seed=3, bad_fraction=0.5)
    held_out = sim.exposures[-1]
    (root / "later").mkdir()
    moved = root / "later" / held_out.path.name
    held_out.path.rename(moved)
    store_path = root / "store"
    with Store.create(store_path) as store:
        ingest(store, [root / "sim"], IngestOptions(embedder="test_vit+qa", workers=0, release="sim"))
        import_labels(store, sim.truth.bad_expid)
        import_labels(store, sim.truth.delve_dir, "delve")
        train(store, Config())
    return store_path, moved, held_out


def own_copy(store_path, tmp_path):
    """A test's own copy of the shared store, for tests that add to it (no test sees another's changes)."""
    copy = tmp_path / "store"
    shutil.copytree(store_path, copy)
    return copy


def test_a_new_file_gets_the_verdict_it_gets_once_ingested(survey, tmp_path):
    shared, moved, held_out = survey
    store_path = own_copy(shared, tmp_path)
    with Store.open(store_path) as store:
        on_the_fly = classify_file(store, Model.current(store), moved, Config().classify)
        assert store.scalar("SELECT count(*) FROM ccds WHERE expnum = ?", [held_out.expnum]) == 0  # not added
    with Store.open(store_path, writable=True) as store:
        ingest(store, [moved], IngestOptions(embedder="test_vit+qa", workers=0, release="sim"))
        stored = classify_exposures(store, Model.current(store), [held_out.expnum], Config().classify)
        saved = vindex.load_index(Model.current(store).dir / "corpus.faiss")  # as the ingest saved it
    ids = vindex.index_ids(saved)
    assert len(ids) == len(np.unique(ids))  # no CCD twice in the corpus index
    assert {c.ccd_id for c in stored[0].ccds} <= set(ids.tolist())  # the new CCDs were added at commit
    assert len(on_the_fly) == 1
    a, b = on_the_fly[0], stored[0]
    assert a.verdict == b.verdict
    assert [(c.ccd_id, c.verdict, c.probs) for c in a.ccds] == [
        (c.ccd_id, c.verdict, c.probs) for c in b.ccds
    ]
    assert [[n["ccd_id"] for n in c.neighbours] for c in a.ccds] == [
        [n["ccd_id"] for n in c.neighbours] for c in b.ccds
    ]


def test_cli_evaluate_and_pictures(survey, tmp_path):
    store_path, _, _ = survey
    with Store.open(store_path) as store:
        expnum = int(store.scalar("SELECT min(expnum) FROM ccds"))
    result = runner.invoke(
        app, ["--store", str(store_path), "evaluate", "--out", str(tmp_path / "r"), "--method", "pca"]
    )
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and (tmp_path / "r" / "report.html").exists()
    # a calibrated model holds every labelled exposure: its evaluation is its cross-validation
    assert "cross-validation grouped by exposure" in result.output
    assert (tmp_path / "r" / "calibration.png").stat().st_size > 1000
    assert "Choosing (t, f)" in (tmp_path / "r" / "report.html").read_text()
    page = tmp_path / "fp.html"
    shown = runner.invoke(app, ["--store", str(store_path), "classify", str(expnum), "--plot", str(page)])
    assert shown.exit_code == 0, shown.output
    assert page.read_text().count("<img") == len(CCDS)
    gallery = tmp_path / "g.html"
    similar = runner.invoke(
        app,
        ["--store", str(store_path), "similar", f"{expnum}/N4", "-k", "6", "--html", str(gallery)],
    )
    assert similar.exit_code == 0, similar.output
    assert gallery.read_text().count("<img") == 7


def test_demo_prints_metrics_tables(tmp_path):
    result = runner.invoke(
        app,
        [
            "--store",
            str(tmp_path / "demo"),
            "demo",
            "-n",
            "40",
            "--ccd-shape",
            "256x128",
            "--ccds-per-exposure",
            "6",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "embedder qa: no DINOv2 weights" in result.output
    for table in ("held-out CCDs", "held-out exposures"):
        block = result.output.split(table, 1)[1]
        assert re.search(r"^good\s+\d\.\d\d\s+\d\.\d\d\s+\d\.\d\d\s+\d+$", block, re.MULTILINE), block[:400]
    for rule in ("paper", "calibrated"):
        assert re.search(
            rf"^{rule} rule: found \d+ of \d+ bad exposures \(\d+ false alarms?", result.output, re.M
        )
    assert "export VEC_STORE=" in result.output and "source .venv/bin/activate" in result.output
    assert (tmp_path / "demo" / "reports" / "v0002" / "report.html").exists()  # v0001 paper, v0002 calibrated
    again = runner.invoke(app, ["--store", str(tmp_path / "demo"), "demo"])
    assert again.exit_code == 1 and "--fresh" in again.output


def test_demo_references_hold_no_truly_bad_or_held_out_exposure(tmp_path):
    from vecstore.cli.demo import DemoOptions, run_demo

    options = DemoOptions(exposures=36, ccd_shape=(256, 128), ccds_per_exposure=4, workers=0)
    demo = run_demo(tmp_path / "demo", options, Config(), echo=lambda _: None)
    with Store.open(tmp_path / "demo") as store:
        for rule in ("paper", "calibrated"):
            model = Model.for_rule(store, rule)
            ids, codes = model.reference_labels()
            labels = [model.classes[c] for c in codes]
            good_refs = {int(i) // 100 for i, label in zip(ids, labels, strict=True) if label == "good"}
            assert good_refs, rule
            assert all(demo.truth[e] == "good" for e in good_refs), rule
            assert not ({int(i) // 100 for i in ids} & demo.held_out), rule
    assert demo.found["calibrated"].bad + demo.found["calibrated"].good == len(demo.held_out)


def test_classify_file_with_add_ingests_it(survey, tmp_path):
    store_path = own_copy(survey[0], tmp_path)
    late = simulate_survey(
        tmp_path / "late", 1, ccd_shape=(256, 128), ccdnames=CCDS, seed=9, first_expnum=990001
    )
    path = late.exposures[0].path
    result = runner.invoke(
        app, ["--store", str(store_path), "classify", str(path), "--add", "--release", "late"]
    )
    assert result.exit_code == 0, result.output
    assert "exposure 990001:" in result.output
    with Store.open(store_path) as store:
        rows = store.query("SELECT release, count(*) AS n FROM ccds WHERE expnum = 990001 GROUP BY release")
    assert rows.to_pylist() == [{"release": "late", "n": len(CCDS)}]


def test_a_file_with_one_unusable_ccd_is_classified_from_the_rest(survey, tmp_path):
    from tests.fitsfactory import write_cp_exposure

    store_path, _, _ = survey
    path = write_cp_exposure(
        tmp_path / "c4d_one_nan_ooi_r_v1.fits.fz",
        990007,
        CCDS,
        (256, 128),
        pixels={"N4": np.full((256, 128), np.nan, np.float32)},
    )
    result = runner.invoke(app, ["--store", str(store_path), "classify", str(path), "--json"])
    assert result.exit_code == 0, result.output
    exposure = json.loads(result.output)[0]
    assert exposure["n_ccds"] == len(CCDS) - 1
    assert [f["hdu"] for f in exposure["failures"]] == ["N4"] and "NaN" in exposure["failures"][0]["reason"]
    text = runner.invoke(app, ["--store", str(store_path), "classify", str(path)])
    assert text.exit_code == 0 and "N4: not classified" in text.output
    only_bad = write_cp_exposure(
        tmp_path / "c4d_all_nan_ooi_r_v1.fits.fz",
        990008,
        ["N4"],
        (256, 128),
        pixels={"N4": np.full((256, 128), np.nan, np.float32)},
    )
    refused = runner.invoke(app, ["--store", str(store_path), "classify", str(only_bad)])
    assert refused.exit_code == 1 and "no usable CCD" in refused.output and "N4" in refused.output


def test_ingest_records_each_ccds_size(survey):
    with Store.open(survey[0]) as store:
        sizes = store.query("SELECT DISTINCT naxis1, naxis2 FROM ccds").to_pylist()
    assert sizes == [{"naxis1": 128, "naxis2": 256}]  # ccd_shape (256, 128) is rows x columns


def test_a_file_of_ccds_smaller_than_the_references_gets_a_warning_naming_them(survey, tmp_path):
    from tests.fitsfactory import write_cp_exposure

    store_path, moved, _ = survey
    same_size = runner.invoke(app, ["--store", str(store_path), "classify", str(moved), "--json"])
    assert same_size.exit_code == 0, same_size.output
    assert json.loads(same_size.output)[0]["warnings"] == []
    cutout = write_cp_exposure(tmp_path / "c4d_cutout_ooi_r_v1.fits.fz", 990009, ["N4", "S4"], (128, 64))
    result = runner.invoke(app, ["--store", str(store_path), "classify", str(cutout), "--json"])
    assert result.exit_code == 0, result.output
    (warning,) = json.loads(result.output)[0]["warnings"]
    assert warning.startswith("CCD(s) S4, N4: 128 x 64 pixels (rows x columns)")  # in ccd_id order
    assert "reference CCDs are 256 x 128 (" in warning and "vec train" in warning
    text = runner.invoke(app, ["--store", str(store_path), "classify", str(cutout)])
    assert text.exit_code == 0 and "  warning: CCD(s) S4, N4: 128 x 64" in text.output


def test_similar_warns_when_a_files_ccd_is_of_a_size_the_store_has_not(survey, tmp_path):
    from tests.fitsfactory import write_cp_exposure

    store_path, moved, _ = survey
    same_size = runner.invoke(app, ["--store", str(store_path), "similar", str(moved), "-k", "3", "--json"])
    assert same_size.exit_code == 0, same_size.output
    assert json.loads(same_size.output)["warnings"] == []
    cutout = write_cp_exposure(tmp_path / "c4d_cutout_ooi_r_v1.fits.fz", 990011, ["S4"], (128, 64))
    result = runner.invoke(app, ["--store", str(store_path), "similar", str(cutout), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    (warning,) = found["warnings"]
    assert len(found["neighbours"]) == 3  # still searched: the warning says how far to trust it
    assert warning.startswith("CCD(s) S4: 128 x 64 pixels") and "the store's CCDs are 256 x 128 (" in warning
    text = runner.invoke(app, ["--store", str(store_path), "similar", str(cutout), "-k", "3"])
    assert text.exit_code == 0 and "  warning: CCD(s) S4: 128 x 64" in text.output
    assert all(len(line) <= 110 for line in text.output.splitlines() if "warning" in line)


def test_classify_all_counts_the_exposures_of_an_unlike_size(survey, tmp_path):
    from tests.fitsfactory import write_cp_exposure

    store_path = own_copy(survey[0], tmp_path)
    (tmp_path / "in").mkdir()
    cutout = write_cp_exposure(tmp_path / "in" / "c4d_cutout_ooi_r_v1.fits.fz", 990010, ["N4"], (128, 64))
    with Store.open(store_path, writable=True) as store:
        ingest(store, [cutout], IngestOptions(embedder="test_vit+qa", workers=0, release="cutouts"))
        summary = classify_all(store, Model.current(store), Config().classify)
    assert summary.n_unlike_size == 1  # the cutout; the simulated exposures are the references' size
    assert "warning: 1 of them have CCDs of a size no reference CCD has" in summary.describe()


def test_a_store_from_before_ccd_sizes_is_classified_without_the_check(survey, tmp_path):
    import duckdb

    store_path = own_copy(survey[0], tmp_path)
    with duckdb.connect(str(store_path / "catalog.duckdb")) as con:
        con.execute("ALTER TABLE ccds DROP COLUMN naxis1")
        con.execute("ALTER TABLE ccds DROP COLUMN naxis2")
    with Store.open(store_path) as store:  # read-only: the columns stay missing
        model = Model.current(store)
        expnum = int(store.scalar("SELECT min(expnum) FROM ccds"))
        ids = store.query("SELECT ccd_id FROM ccds WHERE expnum = ?", [expnum]).column("ccd_id").to_numpy()
        assert store.ccd_sizes(ids) == {}
        (result,) = classify_exposures(store, model, [expnum], Config().classify)
    assert result.warnings == [] and result.verdict.n_ccds == len(CCDS)

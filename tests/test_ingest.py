"""`vec ingest`: real CP files, a full-size exposure, bad inputs, resume, devices, provenance."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ingest.engine.driver import IngestOptions, sample_ccds
from ingest.engine.local import ingest
from ingest.sources import expand_sources
from tests.fitsfactory import (
    build_mixed_directory,
    call_without_root,
    world_readable_tempdir,
    write_cp_exposure,
)
from tests.test_reader import CUTOUT_DIR, REAL_OOI_CUTOUTS
from vecstore.cli import app
from vecstore.config import Config, StoreConfig
from vecstore.decam import ALL_CCDNAMES, ccdnum_for
from vecstore.errors import BadInputError, ProvenanceError
from vecstore.store import Store

ROOT = Path(__file__).resolve().parents[1]
TEST = IngestOptions(embedder="test_vit", workers=0, batch_size=4, release="test")
EXACT = Config(store=StoreConfig(embedding_dtype="float32"))


def _ccds(store) -> dict[int, dict]:
    return {r["ccd_id"]: r for r in store.query("SELECT * FROM ccds").to_pylist()}


def test_real_cutouts_from_headers(store):
    summary = ingest(store, [CUTOUT_DIR], TEST)
    assert (summary.ingested, summary.failed) == (17, 0)
    rows = {Path(r["path"]).name: r for r in _ccds(store).values()}
    assert sorted(rows) == sorted(REAL_OOI_CUTOUTS)
    for name, (expnum, ccdname, band, exptime, *_rest) in REAL_OOI_CUTOUTS.items():
        row = rows[name]
        assert (row["expnum"], row["ccdname"], row["filter"], row["exptime"]) == (
            expnum,
            ccdname,
            band,
            exptime,
        )
        assert row["ccd_id"] == expnum * 100 + ccdnum_for(ccdname) and row["release"] == "test"
    # the one file without a BAND keyword takes its band from FILTER
    assert rows["c4d_150411_035242_ooi_z_v1-N10.fits"]["filter"] == "z"


def test_real_cutouts_from_survey_ccds_tables(store, tmp_path):
    tables = sorted(CUTOUT_DIR.glob("testcase*_survey-ccds-1.fits.gz"))
    for table in tables:
        for row in fitsio.read(table, ext=1):
            relative = row["image_filename"].strip()
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CUTOUT_DIR / Path(relative).name, tmp_path / relative)
    summary = ingest(store, tables, IngestOptions(**{**TEST.__dict__, "image_root": str(tmp_path)}))
    assert (summary.ingested, summary.failed) == (17, 0)
    for row in _ccds(store).values():
        expnum, ccdname, band, exptime, *_ = REAL_OOI_CUTOUTS[Path(row["path"]).name]
        assert (row["expnum"], row["ccdname"], row["filter"], row["exptime"]) == (
            expnum,
            ccdname,
            band,
            exptime,
        )


@pytest.mark.slow
def test_full_size_fpacked_exposure_of_62_ccds(store, full_size_exposure):
    options = IngestOptions(**{**TEST.__dict__, "workers": 2, "batch_size": 8})
    summary = ingest(store, [full_size_exposure.parent], options)
    assert (summary.ingested, summary.failed) == (62, 0)
    assert set(store.committed_ids().tolist()) == {700001 * 100 + n for n in range(1, 63)}


def _ingest_mixed(data: Path, store_path: Path) -> tuple[str, list[dict], set[int]]:
    """Ingest ``data`` into a new store; runs as "nobody" (see call_without_root) so chmod 000 bites."""
    # One thread: a forked child must not enter the OpenMP pool its parent started (it would hang).
    torch.set_num_threads(1)
    with Store.create(store_path) as store:
        summary = ingest(store, [data], TEST)
        failures = store.query("SELECT path, hdu, reason FROM failures").to_pylist()
        return f"failed {summary.failed}", failures, set(store.committed_ids().tolist())


def test_every_bad_input_is_a_failure_row_and_every_good_ccd_is_ingested():
    with world_readable_tempdir() as root:
        data = root / "data"
        data.mkdir()
        data.chmod(0o755)
        good_ids, bad = build_mixed_directory(data)
        (root / "stores").mkdir()
        os.chmod(root / "stores", 0o777)
        # "nobody" cannot read root's Python installation, so import everything an ingest needs first.
        with Store.create(root / "warm-up") as warm_up:
            ingest(warm_up, [data / "c4d_1_ooi_r_v1.fits.fz", data / "zero.fits.fz"], TEST)
        text, failures, committed = call_without_root(_ingest_mixed, data, root / "stores" / "s")
    assert good_ids <= committed
    # CCDs before the cut of the truncated file (exposure 610009) are intact and may be ingested
    assert {ccd_id // 100 for ccd_id in committed - good_ids} <= {610009}
    for name, words in bad.items():
        reasons = [f["reason"] for f in failures if Path(f["path"]).name == name]
        assert any(words in reason for reason in reasons), (name, words, failures)
    assert text == f"failed {len(failures)}"


def test_bad_ccd_error_policy_stops_with_the_file_named(store, tmp_path):
    write_cp_exposure(tmp_path / "a.fits.fz", 610001, ["N4"], pixels={"N4": np.zeros((64, 32), np.float32)})
    with pytest.raises(BadInputError, match=r"a\.fits\.fz.*all pixels are 0.*--on-bad-ccd error"):
        ingest(store, [tmp_path], IngestOptions(**{**TEST.__dict__, "on_bad_ccd": "error"}))


def test_resume_embeds_only_what_is_missing(store, tmp_path):
    write_cp_exposure(tmp_path / "a.fits.fz", 620001, ["N1", "N2", "N3"])
    first = ingest(store, [tmp_path / "a.fits.fz"], TEST)
    write_cp_exposure(tmp_path / "b.fits.fz", 620002, ["S1", "S2"])
    second = ingest(store, [tmp_path], TEST)
    assert (first.ingested, second.ingested, second.skipped) == (3, 2, 3)
    assert store.verify() == {"vectors": 5, "ccds": 5}
    runs = store.query("SELECT status FROM runs ORDER BY run_id").column("status").to_pylist()
    assert runs == ["ok", "ok"]


def test_two_cpu_processes_equal_one_in_process_run(tmp_path):
    for i, names in enumerate([["N1", "N2", "N3"], ["S1", "S2"], ["N10", "S10", "S11"]]):
        write_cp_exposure(tmp_path / f"e{i}.fits.fz", 630001 + i, names, shape=(128, 64), seed=i)
    with (
        Store.create(tmp_path / "one", config=EXACT) as one,
        Store.create(tmp_path / "two", config=EXACT) as two,
    ):
        ingest(one, [tmp_path], TEST)
        summary = ingest(
            two, [tmp_path], IngestOptions(**{**TEST.__dict__, "devices": "cpu:2", "workers": 1})
        )
        assert summary.ingested == 8
        ids_one, vec_one = one.load_embeddings()
        ids_two, vec_two = two.load_embeddings()
    np.testing.assert_array_equal(ids_one, ids_two)
    np.testing.assert_allclose(vec_one, vec_two, atol=1e-6)
    assert np.abs(vec_one).max() > 0.1  # real vectors, not zeros


def test_another_embedder_preset_is_refused_naming_both(store, tmp_path):
    write_cp_exposure(tmp_path / "a.fits.fz", 640001, ["N1"])
    ingest(store, [tmp_path], TEST)
    with pytest.raises(ProvenanceError) as error:
        ingest(store, [tmp_path], IngestOptions(**{**TEST.__dict__, "preset": "cpu224"}))
    assert "tiny112" in str(error.value) and "cpu224" in str(error.value)


def test_ccds_per_exposure_draw_is_seeded_and_order_free(tmp_path):
    write_cp_exposure(tmp_path / "a.fits.fz", 650001, ALL_CCDNAMES[:30])
    write_cp_exposure(tmp_path / "b.fits.fz", 650002, ALL_CCDNAMES[:30])
    tasks = expand_sources([tmp_path]).tasks
    drawn = sample_ccds(tasks, 20, seed=0)
    assert len(drawn) == 40 and len(set(drawn)) == 40
    assert set(sample_ccds(tasks[::-1], 20, seed=0)) == set(drawn)
    assert set(sample_ccds(tasks, 20, seed=1)) != set(drawn)
    alone = sample_ccds([t for t in tasks if t.path.endswith("a.fits.fz")], 20, seed=0)
    assert set(alone) == {t for t in drawn if t.path.endswith("a.fits.fz")}
    assert sample_ccds(tasks, 0, seed=0) == tasks


def test_cli_ingest_prints_a_summary_and_failures(tmp_path):
    (tmp_path / "in").mkdir()
    write_cp_exposure(tmp_path / "in" / "a.fits.fz", 660001, ["N1", "N2"])
    (tmp_path / "in" / "broken.fits.fz").write_bytes(b"")
    result = CliRunner().invoke(
        app,
        [
            "--store",
            str(tmp_path / "s"),
            "ingest",
            str(tmp_path / "in"),
            "--release",
            "dr10",
            "--embedder",
            "test_vit",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 3, result.output  # finished, some CCDs failed
    assert "ingested 2 CCDs, skipped 0 already in the store, failed 1" in result.output
    assert "broken.fits.fz" in result.output and "empty file" in result.output


def test_cli_ingest_takes_every_option_not_given_from_the_config(tmp_path):
    """Every [ingest] knob reaches the run (no hand copy can forget one); an option given wins."""
    write_cp_exposure(tmp_path / "a.fits.fz", 660003, ["N1", "N2", "N3"])
    knobs = {
        "embedder": "qa",
        "devices": "cpu",
        "batch_size": 2,
        "workers": 0,
        "ccds_per_exposure": 2,
        "seed": 4,
        "on_bad_ccd": "error",
        "index_save_every_s": 12.5,
    }
    config = tmp_path / "vec.toml"
    config.write_text("[ingest]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in knobs.items()))
    store = str(tmp_path / "s")
    args = [
        "--store",
        store,
        "--config",
        str(config),
        "ingest",
        str(tmp_path / "a.fits.fz"),
        "--release",
        "r",
    ]
    result = CliRunner().invoke(app, [*args, "--seed", "5"])
    assert result.exit_code == 0, result.output
    with Store.open(store) as opened:
        run = json.loads(opened.scalar("SELECT args FROM runs"))
        assert opened.counts()["ccds"] == 2  # ccds_per_exposure from the config
    assert {k: run[k] for k in knobs} == {**knobs, "seed": 5}
    assert run["release"] == "r"


def test_qa_features_are_queryable_by_name(tmp_path):
    from ingest.embedders.qa_features import QA_FEATURE_NAMES, qa_features
    from ingest.reader import CCDTask, read_ccd

    store = str(tmp_path / "s")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["--store", store, "ingest", str(CUTOUT_DIR), "--release", "t", "--embedder", "qa", "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    out = runner.invoke(
        app,
        [
            "--store",
            store,
            "sql",
            "SELECT c.path, c.hdu, f.* FROM features f JOIN ccds c USING (ccd_id) ORDER BY ccd_id LIMIT 1",
            "--format",
            "json",
        ],
    )
    assert out.exit_code == 0, out.output
    row = json.loads(out.output)[0]
    assert set(QA_FEATURE_NAMES) <= set(row)
    meta, pixels = read_ccd(CCDTask(row["path"], row["hdu"]))
    expected = qa_features(pixels, exptime=meta.exptime)
    for name, value in zip(QA_FEATURE_NAMES, expected, strict=True):  # stored as float16 by default
        assert row[name] == pytest.approx(float(value), rel=2e-3, abs=1e-3), name

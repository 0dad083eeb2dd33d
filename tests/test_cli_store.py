"""`vec init`, `vec info`, `vec sql`: output, formats, and one-line refusals with exit code 1."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.store_writer import batch_rows, batch_vectors
from vecstore.cli import app
from vecstore.provenance import Provenance
from vecstore.store import Store

runner = CliRunner()


def vec(*args, env=None):
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        store.ensure_provenance(Provenance("test_vit", "tiny112", 768, "random:seed=0"))
        rows = batch_rows(0, 3)
        store.commit_batch(None, rows, batch_vectors(rows))
    return path


def test_init_and_info(tmp_path):
    result = vec("--store", str(tmp_path / "new"), "init")
    assert result.exit_code == 0 and "store ready" in result.output
    info = json.loads(vec("--store", str(tmp_path / "new"), "info", "--json").output)
    assert info["counts"]["ccds_embedded"] == 0 and info["provenance"] is None


def test_info_reports_counts_and_provenance(filled):
    result = vec("--store", str(filled), "info", "--verify")
    assert result.exit_code == 0, result.output
    assert "test_vit" in result.output and "tiny112" in result.output
    assert "3 vectors == 3 CCDs" in result.output


def test_store_from_environment(filled):
    result = vec("sql", "SELECT count(*) AS n FROM ccds", "--format", "csv", env={"VEC_STORE": str(filled)})
    assert result.exit_code == 0 and result.output.split() == ['"n"', "3"]


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_formats(filled, fmt):
    result = vec(
        "--store", str(filled), "sql", "SELECT ccdname, exptime FROM ccds ORDER BY ccd_id", "-f", fmt
    )
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert json.loads(result.output)[0] == {"ccdname": "N1", "exptime": 90.0}
    else:
        assert "N1" in result.output and "N3" in result.output


def test_sql_parquet_needs_output(filled, tmp_path):
    result = vec("--store", str(filled), "sql", "SELECT * FROM ccds", "-f", "parquet")
    assert result.exit_code == 1 and "--output" in result.output
    out = tmp_path / "ccds.parquet"
    assert (
        vec("--store", str(filled), "sql", "SELECT * FROM ccds", "-f", "parquet", "-o", str(out)).exit_code
        == 0
    )
    assert pq.read_table(out).num_rows == 3


def test_sql_writes_need_write_flag(filled):
    statement = "DELETE FROM failures"
    result = vec("--store", str(filled), "sql", statement)
    assert result.exit_code == 1
    assert "read-only: pass --write" in result.output and len(result.output.strip().splitlines()) == 1
    ok = vec("--store", str(filled), "sql", "INSERT INTO failures (reason) VALUES ('by hand')", "--write")
    assert ok.exit_code == 0
    assert "by hand" in vec("--store", str(filled), "sql", "SELECT reason FROM failures").output


def test_not_a_store_is_one_line_exit_1(tmp_path):
    result = vec("--store", str(tmp_path), "info")
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "is not a vec store" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_sql_error_is_one_line(filled):
    result = vec("--store", str(filled), "sql", "SELEC 1")
    assert result.exit_code == 1 and "SQL error" in result.output


def test_bad_config_is_refused(filled, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nnope = 1\n")
    result = vec("--store", str(filled), "--config", str(bad), "info")
    assert result.exit_code == 1 and "unknown key" in result.output


def test_bad_factory_string_is_refused_by_the_cli(tmp_path):
    from tests.querydata import make_store

    store, _ = make_store(tmp_path / "q")
    store.close()
    config = tmp_path / "c.toml"
    config.write_text('[index]\ncorpus = "HNSW32,SQ8"\n')
    result = vec("--store", str(tmp_path / "q"), "--config", str(config), "train")
    assert result.exit_code == 1
    assert "HNSW32,SQ8" in result.output and "quantiser" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_another_embedder_is_refused_by_the_cli(tmp_path):
    from tests.fitsfactory import write_cp_exposure

    write_cp_exposure(tmp_path / "a.fits.fz", 650001, ["N1"])
    store = str(tmp_path / "s")
    first = vec(
        "--store",
        store,
        "ingest",
        str(tmp_path / "a.fits.fz"),
        "--release",
        "t",
        "--embedder",
        "test_vit",
        "--workers",
        "0",
    )
    assert first.exit_code == 0, first.output
    second = vec(
        "--store",
        store,
        "ingest",
        str(tmp_path / "a.fits.fz"),
        "--release",
        "t",
        "--embedder",
        "qa",
        "--workers",
        "0",
    )
    assert second.exit_code == 1
    assert "test_vit" in second.output and "'qa'" in second.output

"""Exit codes scripts can rely on, numbers checked at parse time, error messages that name the way out."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.embedders import create_embedder
from ingest.engine.driver import IngestOptions
from ingest.engine.local import ingest
from query.similar import _filter_ids, is_file_reference, resolve_ccd
from tests.fitsfactory import write_cp_exposure
from tests.store_writer import batch_rows, batch_vectors
from vecstore.cli import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, app
from vecstore.errors import BadInputError, EmbedderError, NotFoundError, VecError
from vecstore.provenance import Provenance
from vecstore.store import Store

runner = CliRunner()


def vec(*args: str):
    return runner.invoke(app, list(args))


def vec_ingest(store, *sources, extra=()):
    return vec(
        "--store",
        str(store),
        "ingest",
        *map(str, sources),
        "--release",
        "t",
        "--embedder",
        "qa",
        "--workers",
        "0",
        *extra,
    )


@pytest.fixture
def filled(tmp_path):
    """A store with exposure 1000, CCDs N1..N3."""
    path = tmp_path / "s"
    with Store.create(path) as store:
        store.ensure_provenance(Provenance("test_vit", "tiny112", 768, "random:seed=0"))
        rows = batch_rows(0, 3)
        store.commit_batch(None, rows, batch_vectors(rows))
    return path


# --- exit codes -----------------------------------------------------------------------------------------


def test_exit_codes_are_the_documented_ones():
    assert (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL) == (0, 1, 2, 3)


def test_ingest_of_a_missing_path_exits_1_naming_it_before_any_work(tmp_path):
    store, missing = tmp_path / "s", tmp_path / "nowhere"
    result = vec_ingest(store, missing)
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.output.startswith("error:") and str(missing) in result.output
    assert not store.exists()  # no store created, no run recorded


def test_library_ingest_refuses_a_missing_source_without_recording_a_run(store, tmp_path):
    with pytest.raises(BadInputError, match="nowhere"):
        ingest(store, [tmp_path / "nowhere"], IngestOptions(embedder="qa", workers=0))
    assert store.query("SELECT count(*) AS n FROM runs").column("n").to_pylist() == [0]


def test_ingest_of_only_bad_files_exits_1_with_the_failures_count_and_how_to_see_them(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.fits.fz").write_bytes(b"")
    (tmp_path / "in" / "junk.fits").write_bytes(b"not fits")
    result = vec_ingest(tmp_path / "s", tmp_path / "in")
    assert result.exit_code == EXIT_ERROR, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: nothing ingested") and "all inputs failed (2 failures)" in last
    assert 'vec sql "SELECT * FROM failures' in last


def test_ingest_with_some_failed_ccds_exits_3_also_when_resumed(tmp_path):
    (tmp_path / "in").mkdir()
    write_cp_exposure(tmp_path / "in" / "a.fits.fz", 660001, ["N1", "N2"])
    (tmp_path / "in" / "broken.fits.fz").write_bytes(b"")
    first = vec_ingest(tmp_path / "s", tmp_path / "in")
    assert first.exit_code == EXIT_PARTIAL, first.output
    assert "ingested 2 CCDs" in first.output and "SELECT * FROM failures" in first.output
    again = vec_ingest(tmp_path / "s", tmp_path / "in")  # the good CCDs are in: finished, one failed
    assert again.exit_code == EXIT_PARTIAL, again.output
    assert "ingested 0 CCDs, skipped 2" in again.output


def test_ingest_with_no_failures_exits_0(tmp_path):
    write_cp_exposure(tmp_path / "a.fits.fz", 660002, ["N1"])
    result = vec_ingest(tmp_path / "s", tmp_path / "a.fits.fz")
    assert result.exit_code == EXIT_OK, result.output


# --- numbers checked at parse time (exit 2, before any store or file is touched) ------------------------

BAD_NUMBERS = [
    ("similar", "1000/N1", "-k", "0"),
    ("export", "--min-prob", "1.5"),
    ("export", "--min-prob", "-0.1"),
    ("export", "--run", "0"),
    ("merge", "dest", "src", "--chunk-rows", "0"),
    ("ingest", "in", "--release", "t", "--batch-size", "0"),
    ("ingest", "in", "--release", "t", "--workers", "-1"),
    ("ingest", "in", "--release", "t", "--ccds-per-exposure", "-1"),
    ("ingest", "in", "--release", "t", "--seed", "-1"),
    ("ingest", "in", "--release", "t", "--ray-cpus", "0"),
    ("simulate", "out", "-n", "0", "--ccd-shape", "bad"),
    ("simulate", "out", "--bad-fraction", "1.5", "--ccd-shape", "bad"),
    ("simulate", "out", "--seed", "-1", "--ccd-shape", "bad"),
    ("simulate", "out", "--first-expnum", "0", "--ccd-shape", "bad"),
    ("demo", "-n", "0", "--ccd-shape", "bad"),
    ("demo", "--ccds-per-exposure", "0", "--ccd-shape", "bad"),
    ("demo", "--ccds-per-exposure", "62", "--ccd-shape", "bad"),
    ("demo", "--ccds", "62", "--ccd-shape", "bad"),  # the old name, kept hidden
    ("demo", "--workers", "-1", "--ccd-shape", "bad"),
    ("demo", "--seed", "-1", "--ccd-shape", "bad"),
]


@pytest.mark.parametrize("args", BAD_NUMBERS, ids=" ".join)
def test_out_of_range_numbers_are_usage_errors(tmp_path, args):
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Invalid value" in result.output and not (tmp_path / "s").exists()


@pytest.mark.parametrize("shape", ["bad", "4094x", "0x2046", "4094x2046x3", "-1x5"])
@pytest.mark.parametrize("command", [("simulate", "out"), ("demo",)], ids=" ".join)
def test_a_bad_ccd_shape_is_a_usage_error(tmp_path, command, shape):
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), *command, "--ccd-shape", shape])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Invalid value for '--ccd-shape'" in result.output and "ROWSxCOLS" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "in", "--release", "t", "--engine", "spark"),
        ("ingest", "in", "--release", "t", "--on-bad-ccd", "ignore"),
        ("train", "--rule", "majority"),
        ("classify", "1", "--rule", "majority"),
        ("sql", "SELECT 1", "--format", "xml"),
        ("export", "--format", "xml"),
        ("evaluate", "--method", "umap"),
    ],
    ids=" ".join,
)
def test_a_word_not_among_the_choices_is_a_usage_error(tmp_path, args):
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Invalid value" in result.output and not (tmp_path / "s").exists()


# --- messages that name the way out ---------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["1000/N99", "1000/X4", "1000", " 1000 "])
def test_unknown_ccd_of_a_known_exposure_lists_its_ccds(filled, reference):
    with Store.open(filled) as store, pytest.raises(NotFoundError) as error:
        resolve_ccd(store, reference)
    message = str(error.value)
    assert "expected EXPNUM/CCDNAME (e.g. 1000/N4)" in message
    assert "exposure 1000 has 3 CCDs in the store: N1, N2, N3" in message


@pytest.mark.parametrize("reference", ["", "N4", "abc/def"])
def test_a_reference_without_an_exposure_says_the_expected_form(filled, reference):
    with Store.open(filled) as store, pytest.raises(NotFoundError, match=r"expected EXPNUM/CCDNAME \(e\.g\."):
        resolve_ccd(store, reference)


def test_an_exposure_not_in_the_store_is_said_to_have_none(filled):
    with Store.open(filled) as store, pytest.raises(NotFoundError, match="exposure 5555 has no CCDs"):
        resolve_ccd(store, "5555/N4")


def test_a_bare_number_is_read_as_a_ccd_id_or_as_an_exposure_given_alone(filled):
    with Store.open(filled) as store:
        with pytest.raises(NotFoundError, match="exposure 1000 has 3 CCDs in the store: N1, N2, N3"):
            resolve_ccd(store, "100009")  # a ccd_id of exposure 1000 the store does not hold
        with pytest.raises(NotFoundError, match="exposure 1000 has 3 CCDs in the store: N1, N2, N3"):
            resolve_ccd(store, "1000")  # an exposure number, not a CCD


def test_known_references_still_resolve(filled):
    with Store.open(filled) as store:
        assert resolve_ccd(store, "1000/n2") == resolve_ccd(store, "100002") == 100002


def test_empty_reference_and_directories_are_not_files(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"")
    assert not is_file_reference("") and not is_file_reference("  ") and not is_file_reference(str(tmp_path))
    assert is_file_reference(str(tmp_path / "a.fits")) and is_file_reference(f"{tmp_path / 'a.fits'}:N4")


def test_where_with_an_unknown_column_lists_the_ccds_columns(filled):
    with Store.open(filled) as store, pytest.raises(VecError) as error:
        _filter_ids(store, np.array([100001]), "filtre = 'g'")
    message = str(error.value)
    assert "filtre" in message and "its columns:" in message
    assert all(name in message for name in ("ccd_id", "expnum", "ccdname", "filter", "exptime"))


def test_missing_store_says_how_to_point_at_one_or_create_one(tmp_path):
    result = vec("--store", str(tmp_path / "none"), "info")
    assert result.exit_code == EXIT_ERROR
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and "is not a vec store" in message
    assert "--store DIR" in message and "VEC_STORE=DIR" in message and "demo-store" in message
    assert "`vec init`" in message


def test_missing_dinov2_weights_give_cli_ways_out(tmp_path):
    with pytest.raises(EmbedderError) as error:
        create_embedder("dinov2_vitb14_reg", weights=tmp_path / "dinov2_vitb14_reg4_pretrain.pth")
    message = str(error.value)
    assert "--weights FILE" in message and "dinov2_vitb14_reg4_pretrain.pth" in message
    assert "--embedder qa" in message and "create_embedder(" not in message


def test_sql_on_an_unknown_table_lists_the_tables_and_views(filled):
    result = vec("--store", str(filled), "sql", "SELECT * FROM nope")
    assert result.exit_code == EXIT_ERROR
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and "nope" in message
    assert all(name in message for name in ("ccds", "exposures", "failures", "runs", "embeddings"))


def test_sql_csv_has_no_trailing_empty_line(filled):
    result = vec("--store", str(filled), "sql", "SELECT count(*) AS n FROM ccds", "--format", "csv")
    assert result.exit_code == EXIT_OK and result.output == '"n"\n3\n'


def test_sql_csv_file_ends_with_one_newline(filled, tmp_path):
    out = tmp_path / "n.csv"
    result = vec("--store", str(filled), "sql", "SELECT 1 AS n", "--format", "csv", "-o", str(out))
    assert result.exit_code == EXIT_OK and out.read_text() == '"n"\n1\n'

"""Labels in the store: idempotent import, labels before ingest, one category per CCD, Table 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ingest.label_import import import_labels
from query.labels import labels_summary, resolve_ccd_categories
from vecstore.cli import app

DATA = Path(__file__).parent / "data" / "labels"
BADEXP = DATA / "decam-bad_expid.2023-09.txt"


def _commit(store, expnum, ccdnums):
    rows = [{"ccd_id": expnum * 100 + n, "expnum": expnum, "ccdnum": n, "ccdname": f"X{n}"} for n in ccdnums]
    store.commit_batch(None, rows, np.zeros((len(rows), 8), np.float32))


def test_importing_twice_adds_nothing(store):
    first = import_labels(store, BADEXP)
    # 8 lines of the real list repeat an earlier line exactly: the same label, stored once
    assert (first.source, first.n_records, first.n_added) == ("decals-badexp", 3121, 3113)
    again = import_labels(store, BADEXP)
    assert again.n_added == 0
    assert store.scalar("SELECT count(*) FROM labels") == 3113


def test_labels_wait_for_their_exposures_and_ccd_level_wins(store, tmp_path):
    listing = tmp_path / "decam-bad_expid.txt"
    listing.write_text(
        "#EXPID\tFlag\tcomments\n500001 2 clouds\n500001-N4 3 bad amp, dead half\n500002 3 out of focus\n"
    )
    import_labels(store, listing)
    assert resolve_ccd_categories(store) == {}  # nothing ingested yet
    _commit(store, 500001, [32, 35])  # N1, N4
    _commit(store, 500003, [1])
    assert resolve_ccd_categories(store) == {50000132: "Clouds_Transparency", 50000135: "Bad_CCD"}


def test_summary_counts_ccds_per_category_and_source(store, tmp_path):
    badexp = tmp_path / "decam-bad_expid.txt"
    badexp.write_text("600001 1 twilight\n600002 3 out of focus\n")
    delve = tmp_path / "problem-y9.txt"
    delve.write_text(
        "#Nite           Exposure        Problem\n20200101        600002          Out of Focus\n"
        "20200101        600003          Some new reason\n"
    )
    import_labels(store, badexp)
    import_labels(store, delve, "delve")
    for expnum in (600001, 600002, 600003):
        _commit(store, expnum, [1, 2, 3])
    summary = labels_summary(store)
    rows = {r["category"]: r for r in summary.rows}
    assert rows["Saturated"] == {
        "category": "Saturated",
        "decals": 3,
        "des_delve": 0,
        "both": 0,
        "total": 3,
        "exposures": 1,
    }
    assert rows["Out_of_Focus"]["both"] == 3 and rows["Out_of_Focus"]["total"] == 3
    assert summary.unmapped == [{"source": "delve", "raw_reason": "Some new reason", "n": 1}]


def test_cli_import_and_summary(tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "init"]).exit_code == 0
    result = runner.invoke(app, ["--store", store, "labels", "import", str(BADEXP)])
    assert result.exit_code == 0, result.output
    assert "3,121 labels (decals-badexp), 3,113 new" in result.output
    summary = runner.invoke(app, ["--store", store, "labels", "summary"])
    assert summary.exit_code == 0 and "Nonoptimal_Exposure" in summary.output
    bad = runner.invoke(app, ["--store", store, "labels", "import", str(tmp_path / "missing.txt")])
    assert bad.exit_code == 1 and "missing.txt" in bad.output

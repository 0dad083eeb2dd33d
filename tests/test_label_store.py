"""Labels in the store: idempotent import, labels before ingest, one category per CCD, Table 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ingest.labels.importer import import_labels, warning_details, warning_summary
from query.labels import labels_summary, resolve_ccd_categories
from tests.test_labels import README_LIKE, write_later_delve_tree
from vecstore.cli import app
from vecstore.store import Store

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


# --- unreadable lines, refused files, the one summary line (issues 11 and 13) -------------------------


def _store(tmp_path) -> tuple[CliRunner, str]:
    runner = CliRunner()
    store = str(tmp_path / "s")
    assert runner.invoke(app, ["--store", store, "init"]).exit_code == 0
    return runner, store


def _tree_with_two_bad_files(tmp_path) -> Path:
    tree = write_later_delve_tree(tmp_path)  # ghost-scatter-y9.txt line 5 is junk
    (tree / "y9" / "noise-y9.txt").write_text(
        "#date expnum ccd id ccdnum\n20191221 921470 nan nan 5\n20191221 921471 nan nan 6\nnope\n"
        "20191221 921472 nan nan 7\n20191221 921473 ??\n"
    )
    return tree


def test_import_summarises_unreadable_lines_in_one_line(store, tmp_path):
    tree = _tree_with_two_bad_files(tmp_path)
    result = import_labels(store, tree)
    assert (result.source, result.n_records, result.n_added, result.n_files) == ("delve", 10, 10, 3)
    assert warning_summary(result) == [
        f"3 unreadable lines in 2 files (first: {tree}/y9/ghost-scatter-y9.txt:5: "
        "expected 5 columns (date expnum ccd id ccdnum), found 3)"
    ]
    assert warning_details(result) == [
        f"unreadable: {tree}/y9/ghost-scatter-y9.txt:5: expected 5 columns (date expnum ccd id ccdnum), "
        "found 3: 'junk line here'",
        f"unreadable: {tree}/y9/noise-y9.txt:4: expected 5 columns (date expnum ccd id ccdnum), "
        "found 1: 'nope'",
        f"unreadable: {tree}/y9/noise-y9.txt:6: expected 5 columns (date expnum ccd id ccdnum), found 3: "
        "'20191221 921473 ??'",
    ]


def test_cli_prints_one_summary_line_and_verbose_lists_all(tmp_path):
    runner, store = _store(tmp_path)
    tree = _tree_with_two_bad_files(tmp_path)
    result = runner.invoke(app, ["--store", store, "labels", "import", str(tree)])
    assert result.exit_code == 0, result.output
    assert f"{tree}: 10 labels (delve), 10 new" in result.output
    summary = [line for line in result.output.splitlines() if "unreadable" in line]
    assert summary == [
        f"  3 unreadable lines in 2 files (first: {tree}/y9/ghost-scatter-y9.txt:5: "
        "expected 5 columns (date expnum ccd id ccdnum), found 3); --verbose lists all"
    ]
    assert "warning:" not in result.output and "more warnings" not in result.output
    verbose = runner.invoke(app, ["--store", store, "labels", "import", "--verbose", str(tree)])
    assert verbose.exit_code == 0, verbose.output
    listed = [line for line in verbose.output.splitlines() if line.startswith("  unreadable: ")]
    assert [line.split(": ")[1] for line in listed] == [
        f"{tree}/y9/ghost-scatter-y9.txt:5",
        f"{tree}/y9/noise-y9.txt:4",
        f"{tree}/y9/noise-y9.txt:6",
    ]
    assert "--verbose lists all" not in verbose.output


def test_cli_refuses_a_readme_with_exit_1(tmp_path):
    runner, store = _store(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README_LIKE)
    result = runner.invoke(app, ["--store", store, "labels", "import", str(readme)])
    assert result.exit_code == 1
    assert f"error: {readme}: not a label list (formats tried: decals-badexp, delve): " in result.output
    assert "labels (decals-badexp)" not in result.output
    with Store.open(Path(store)) as opened:
        assert opened.scalar("SELECT count(*) FROM labels") == 0


def test_cli_imports_the_other_paths_when_one_is_refused(tmp_path):
    runner, store = _store(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README_LIKE)
    result = runner.invoke(app, ["--store", store, "labels", "import", str(readme), str(BADEXP)])
    assert result.exit_code == 1
    assert "not a label list" in result.output and "3,121 labels (decals-badexp)" in result.output


def test_cli_directory_with_a_refused_file_still_imports_the_rest(tmp_path):
    runner, store = _store(tmp_path)
    tree = write_later_delve_tree(tmp_path)
    (tree / "y9" / "notes.txt").write_text("Lists checked by hand in March.\nAsk before editing.\n")
    result = runner.invoke(app, ["--store", store, "labels", "import", str(tree)])
    assert result.exit_code == 0, result.output
    assert f"{tree}: 7 labels (delve), 7 new" in result.output
    assert (
        "  1 file refused as not a label list, labels from the 2 other files imported "
        f"(first: {tree}/y9/notes.txt: 2 of 2 non-comment lines cannot be read as delve" in result.output
    )


def test_cli_directory_where_nothing_can_be_imported_exits_1(tmp_path):
    runner, store = _store(tmp_path)
    (tmp_path / "exclude").mkdir()
    (tmp_path / "exclude" / "problem-y1.txt").write_text("20130816 226942 Clouds\nnot this\nnor this\n")
    result = runner.invoke(app, ["--store", store, "labels", "import", str(tmp_path / "exclude")])
    assert result.exit_code == 1
    assert "no list file could be read (1 refused" in result.output


def test_cli_messages_spell_the_option_as_the_cli_does(tmp_path):
    runner, store = _store(tmp_path)
    ambiguous = tmp_path / "decam-bad_expid.txt"
    ambiguous.write_text("#Nite  Exposure  Problem\n20130816  226942  Clouds\n")
    result = runner.invoke(app, ["--store", store, "labels", "import", str(ambiguous)])
    assert result.exit_code == 1
    assert "pass --source one of: decals-badexp, delve, des-fits, ccd-cuts" in result.output
    assert "source=" not in result.output
    forced = runner.invoke(app, ["--store", store, "labels", "import", "--source", "delve", str(ambiguous)])
    assert forced.exit_code == 0 and "1 labels (delve)" in forced.output

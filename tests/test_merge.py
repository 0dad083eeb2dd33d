"""vec merge: stores built apart fold into one equal to the store built in one go; refusals; resumability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vecstore.config import Config, StoreConfig
from vecstore.errors import ProvenanceError, VecError
from vecstore.merge import merge_stores
from vecstore.provenance import Provenance
from vecstore.sql import run_sql
from vecstore.store import CCD_COLUMNS, Store

DIM = 16
PROVENANCE = Provenance(embedder="synthetic", preset="none", dim=DIM)
FLOAT32 = Config(store=StoreConfig(embedding_dtype="float32"))
FLOAT16 = Config(store=StoreConfig(embedding_dtype="float16"))


# ----------------------------------------------------------------------------------------------- helpers
def exposure_rows(expnum: int, n_ccds: int = 4) -> list[dict]:
    return [
        {
            "ccd_id": expnum * 100 + ccdnum,
            "expnum": expnum,
            "ccdname": f"N{ccdnum}",
            "ccdnum": ccdnum,
            "filter": "r",
            "exptime": 90.0,
            "mjd_obs": 58000.25 + expnum * 1e-3,
            "path": f"/data/c4d_{expnum}_ooi_r.fits.fz",
            "hdu": f"N{ccdnum}",
            "release": "test",
        }
        for ccdnum in range(1, n_ccds + 1)
    ]


def vectors_for(rows: list[dict]) -> np.ndarray:
    return np.stack([np.random.default_rng(r["ccd_id"]).standard_normal(DIM) for r in rows]).astype(
        np.float32
    )


def build_store(path: Path, expnums: list[int], *, config: Config = FLOAT32, runs: int = 1) -> Path:
    """A store holding 4 CCDs of each exposure, committed one exposure per batch over ``runs`` runs."""
    with Store.create(path, config=config) as store:
        store.ensure_provenance(PROVENANCE)
        for run_index, chunk in enumerate(np.array_split(np.array(expnums), runs)):
            run_id = store.start_run("ingest", {"part": run_index})
            for expnum in chunk.tolist():
                rows = exposure_rows(expnum)
                store.commit_batch(run_id, rows, vectors_for(rows))
            store.record_failures(run_id, [(f"/data/bad_{run_index}.fits.fz", "S4", None, "all pixels NaN")])
            store.finish_run(run_id, "ok", {})
    return path


def add_label(path: Path, key: str, expnum: int, reason: str) -> None:
    with Store.open(path, writable=True) as store, store.transaction() as con:
        con.execute(
            "INSERT INTO labels (label_key, source, level, expnum, raw_reason, category) "
            "VALUES (?, 'decals-badexp', 'exposure', ?, ?, 'Clouds_Transparency')",
            [key, expnum, reason],
        )


def store_content(path: Path) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict]]:
    """(ids, raw float32 vector bits, CCD rows without bookkeeping, exposure rows), all by id."""
    with Store.open(path) as store:
        assert store.verify()["vectors"] == store.verify()["ccds"]
        ids, vectors = store.load_embeddings()
        rows = store.query(f"SELECT {', '.join(CCD_COLUMNS)} FROM ccds ORDER BY ccd_id").to_pylist()
        exposures = store.query("SELECT * FROM exposures ORDER BY expnum").to_pylist()
    return ids, vectors.view(np.uint32), rows, exposures


def assert_same_content(a: Path, b: Path) -> None:
    ids_a, bits_a, rows_a, exposures_a = store_content(a)
    ids_b, bits_b, rows_b, exposures_b = store_content(b)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(bits_a, bits_b)  # bitwise, not approximately
    assert rows_a == rows_b
    assert exposures_a == exposures_b


@pytest.fixture
def one_go_and_halves(tmp_path):
    expnums = list(range(1000, 1010))
    whole = build_store(tmp_path / "whole", expnums)
    first = build_store(tmp_path / "first", expnums[:5], runs=2)
    second = build_store(tmp_path / "second", expnums[5:])
    return whole, first, second


# ----------------------------------------------------------------------------------------------- merging
def test_merged_halves_equal_the_store_built_in_one_go(one_go_and_halves, tmp_path):
    whole, first, second = one_go_and_halves
    summary = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert summary.ccds_added == 40 and summary.ccds_skipped == 0
    assert_same_content(tmp_path / "merged", whole)
    with Store.open(tmp_path / "merged") as merged:
        assert merged.provenance() == PROVENANCE


def test_merging_again_adds_nothing(one_go_and_halves, tmp_path):
    _, first, second = one_go_and_halves
    merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    with Store.open(tmp_path / "merged") as merged:
        before = merged.counts()
    again = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert (again.ccds_added, again.runs_added, again.failures_added, again.labels_added) == (0, 0, 0, 0)
    assert again.ccds_skipped == 40
    with Store.open(tmp_path / "merged") as merged:
        after = merged.counts()
    assert after == {**before, "runs": before["runs"] + 1}  # only the second merge's own run row


def test_interrupted_merge_resumes_without_duplicates(one_go_and_halves, tmp_path):
    whole, first, second = one_go_and_halves

    def crash_after_first_chunk(done: int, total: int) -> None:
        raise KeyboardInterrupt  # stands in for a kill between two commits

    with pytest.raises(KeyboardInterrupt):
        merge_stores(
            tmp_path / "merged",
            [first, second],
            config=FLOAT32,
            chunk_rows=8,
            progress=crash_after_first_chunk,
        )
    with Store.open(tmp_path / "merged") as merged:
        assert 0 < merged.counts()["ccds"] < 40
        assert merged.scalar("SELECT status FROM runs WHERE command = 'merge'") == "interrupted"
    resumed = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32, chunk_rows=8)
    assert resumed.runs_added == 1 and resumed.failures_added == 1  # the second source's, not reached before
    assert_same_content(tmp_path / "merged", whole)
    with Store.open(tmp_path / "merged") as merged:
        assert merged.scalar("SELECT count(*) FROM runs WHERE command = 'ingest'") == 3
        assert merged.scalar("SELECT count(*) FROM failures") == 3


def test_identical_duplicates_are_skipped(tmp_path):
    expnums = list(range(1000, 1008))
    whole = build_store(tmp_path / "whole", expnums)
    first = build_store(tmp_path / "first", expnums[:5])
    second = build_store(tmp_path / "second", expnums[3:])  # 1003 and 1004 are in both
    summary = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert (summary.ccds_added, summary.ccds_skipped) == (32, 8)
    assert_same_content(tmp_path / "merged", whole)


def test_merging_into_an_existing_store_adds_only_new_ccds(tmp_path):
    whole = build_store(tmp_path / "whole", list(range(1000, 1006)))
    dest = build_store(tmp_path / "dest", list(range(1000, 1003)))
    source = build_store(tmp_path / "source", list(range(1002, 1006)))
    summary = merge_stores(dest, [source], config=FLOAT32)
    assert (summary.ccds_added, summary.ccds_skipped) == (12, 4)
    assert_same_content(dest, whole)


def test_a_store_from_before_ccd_sizes_merges_with_one_that_has_them(tmp_path):
    import duckdb

    sized_rows = [{**row, "naxis1": 2046, "naxis2": 4094} for row in exposure_rows(1000)]
    with Store.create(tmp_path / "dest", config=FLOAT32) as dest:
        dest.ensure_provenance(PROVENANCE)
        dest.commit_batch(None, sized_rows, vectors_for(sized_rows))
    old = build_store(tmp_path / "old", [1000, 1001])  # 1000 in both; sizes unknown in the old store
    with duckdb.connect(str(old / "catalog.duckdb")) as con:
        con.execute("ALTER TABLE ccds DROP COLUMN naxis1")
        con.execute("ALTER TABLE ccds DROP COLUMN naxis2")
    summary = merge_stores(tmp_path / "dest", [old], config=FLOAT32)
    assert (summary.ccds_added, summary.ccds_skipped) == (4, 4)
    with Store.open(tmp_path / "dest") as merged:
        sizes = merged.query("SELECT expnum, naxis1 FROM ccds ORDER BY ccd_id").to_pylist()
    assert sizes == [{"expnum": 1000, "naxis1": 2046}] * 4 + [{"expnum": 1001, "naxis1": None}] * 4


# ----------------------------------------------------------------------------------------------- refusals
def test_mismatched_provenance_is_refused_naming_both_stores(tmp_path):
    first = build_store(tmp_path / "first", [1000])
    with Store.create(tmp_path / "other", config=FLOAT32) as other:
        other.ensure_provenance(Provenance(embedder="synthetic", preset="tiny112", dim=DIM))
        rows = exposure_rows(2000)
        other.commit_batch(None, rows, vectors_for(rows))
    with pytest.raises(ProvenanceError) as refused:
        merge_stores(tmp_path / "merged", [first, tmp_path / "other"], config=FLOAT32)
    assert str(first) in str(refused.value) and str(tmp_path / "other") in str(refused.value)
    assert "tiny112" in str(refused.value)
    assert not (tmp_path / "merged").exists()  # refused before anything was created


# The vector layout as the engines record it in store_meta (a qa-like store: named components; a hybrid
# store: blocks the post-processor balances).
LAYOUT = {
    "feature_names": json.dumps([f"f{i}" for i in range(DIM)]),
    "blocks": json.dumps([["vit", DIM - 4], ["qa", 4]]),
}


def test_merge_keeps_the_vector_layout(tmp_path):
    first, second = build_store(tmp_path / "first", [1000]), build_store(tmp_path / "second", [1001])
    for path in (first, second):
        with Store.open(path, writable=True) as store:
            store.set_meta(LAYOUT)
    merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    with Store.open(tmp_path / "merged") as merged:
        assert {key: merged.meta().get(key) for key in LAYOUT} == LAYOUT
        assert merged.provenance().blocks == (("vit", DIM - 4), ("qa", 4))
    features = run_sql(tmp_path / "merged", "SELECT ccd_id, f0 FROM features ORDER BY ccd_id")
    assert features.num_rows == 8  # the features view of a qa store exists in the merged store


def test_merging_into_a_store_without_the_layout_adds_it(tmp_path):
    dest, source = build_store(tmp_path / "dest", [1000]), build_store(tmp_path / "source", [1001])
    with Store.open(source, writable=True) as store:
        store.set_meta(LAYOUT)
    merge_stores(dest, [source], config=FLOAT32)
    with Store.open(dest) as merged:
        assert {key: merged.meta().get(key) for key in LAYOUT} == LAYOUT


def test_conflicting_vector_is_refused_naming_the_ccd(tmp_path):
    first = build_store(tmp_path / "first", [1000, 1001])
    with Store.create(tmp_path / "second", config=FLOAT32) as second:
        second.ensure_provenance(PROVENANCE)
        rows = exposure_rows(1001)
        vectors = vectors_for(rows)
        vectors[2, 0] += 1e-6  # one element of ccd_id 100103, a bit off
        second.commit_batch(None, rows, vectors)
    with pytest.raises(VecError, match="ccd_id 100103 has different vectors") as refused:
        merge_stores(tmp_path / "merged", [first, tmp_path / "second"], config=FLOAT32)
    assert str(first) in str(refused.value) and str(tmp_path / "second") in str(refused.value)


def test_conflicting_catalog_row_is_refused_naming_the_ccd(tmp_path):
    dest = build_store(tmp_path / "dest", [1000])
    with Store.create(tmp_path / "source", config=FLOAT32) as source:
        source.ensure_provenance(PROVENANCE)
        rows = exposure_rows(1000)
        rows[0]["exptime"] = 30.0  # same CCD read from another file version
        source.commit_batch(None, rows, vectors_for(exposure_rows(1000)))
    with pytest.raises(VecError, match=r"ccd_id 100001 has different catalog rows.*exptime"):
        merge_stores(dest, [tmp_path / "source"], config=FLOAT32)
    with Store.open(dest) as unchanged:
        assert unchanged.counts()["ccds"] == 4 and unchanged.counts()["runs"] == 1


def test_float16_dest_compares_vectors_after_float16_rounding(tmp_path):
    first = build_store(tmp_path / "first", [1000])
    with Store.create(tmp_path / "second", config=FLOAT32) as second:
        second.ensure_provenance(PROVENANCE)
        rows = exposure_rows(1000)
        vectors = vectors_for(rows)
        second.commit_batch(None, rows, np.nextafter(vectors, np.float32(np.inf)))  # 1 ulp of float32 apart
    with pytest.raises(VecError, match="different vectors"):
        merge_stores(tmp_path / "exact", [first, tmp_path / "second"], config=FLOAT32)
    summary = merge_stores(tmp_path / "half", [first, tmp_path / "second"], config=FLOAT16)
    assert (summary.ccds_added, summary.ccds_skipped) == (4, 4)


def test_merging_a_store_into_itself_is_refused(tmp_path):
    first = build_store(tmp_path / "first", [1000])
    with pytest.raises(VecError, match="into itself"):
        merge_stores(first, [first])


# ----------------------------------------------------------------------------------------------- bookkeeping
def test_labels_are_merged_once_by_label_key(one_go_and_halves, tmp_path):
    _, first, second = one_go_and_halves
    add_label(first, "key-a", 1000, "clouds")
    add_label(first, "key-shared", 1001, "clouds")
    add_label(second, "key-shared", 1001, "clouds")
    add_label(second, "key-b", 1006, "thick clouds")
    summary = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert summary.labels_added == 3
    with Store.open(tmp_path / "merged") as merged:
        keys = merged.query("SELECT label_key FROM labels ORDER BY label_key").column("label_key").to_pylist()
    assert keys == ["key-a", "key-b", "key-shared"]


def test_runs_are_renumbered_and_failures_and_ccds_follow_them(one_go_and_halves, tmp_path):
    _, first, second = one_go_and_halves  # first has runs 1 and 2, second has run 1
    summary = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert summary.runs_added == 3
    assert summary.run_ids == {str(first): {1: 2, 2: 3}, str(second): {1: 4}}  # run 1 is the merge
    with Store.open(tmp_path / "merged") as merged:
        runs = merged.query("SELECT run_id, command, args FROM runs ORDER BY run_id").to_pylist()
        failures = merged.query("SELECT run_id, path FROM failures ORDER BY run_id").to_pylist()
        ccd_runs = merged.query(
            "SELECT expnum, min(run_id) AS r, max(run_id) AS m FROM ccds GROUP BY expnum ORDER BY expnum"
        ).to_pylist()
    assert [r["command"] for r in runs] == ["merge", "ingest", "ingest", "ingest"]
    origins = [json.loads(r["args"])["merged_from"] for r in runs[1:]]
    assert [(o["store"], o["run_id"]) for o in origins] == [
        (str(first), 1),
        (str(first), 2),
        (str(second), 1),
    ]
    assert failures == [
        {"run_id": 2, "path": "/data/bad_0.fits.fz"},
        {"run_id": 3, "path": "/data/bad_1.fits.fz"},
        {"run_id": 4, "path": "/data/bad_0.fits.fz"},
    ]
    # first's exposures 1000-1002 came from its run 1, 1003-1004 from its run 2; second's from its run 1
    assert [(c["expnum"], c["r"]) for c in ccd_runs] == [
        (1000, 2),
        (1001, 2),
        (1002, 2),
        (1003, 3),
        (1004, 3),
    ] + [(e, 4) for e in range(1005, 1010)]
    assert all(c["r"] == c["m"] for c in ccd_runs)


# ----------------------------------------------------------------------------------------------- real engine
@pytest.fixture(scope="module")
def exposure_files(tmp_path_factory) -> list[Path]:
    from tests.fitsfactory import write_cp_exposure

    directory = tmp_path_factory.mktemp("exposures")
    return [
        write_cp_exposure(directory / f"c4d_{expnum}_ooi_r.fits.fz", expnum, ("N4", "S4", "N5"), seed=expnum)
        for expnum in range(200001, 200005)
    ]


def test_stores_ingested_apart_merge_into_the_one_go_store(exposure_files, tmp_path):
    from ingest.engine.driver import IngestOptions
    from ingest.engine.local import ingest

    # One batch per file, so the one-go and the split runs feed the model identical batches.
    options = IngestOptions(release="test", embedder="test_vit", workers=0, batch_size=3)

    def ingest_into(name: str, files: list[Path]) -> Path:
        with Store.create(tmp_path / name, config=FLOAT32) as store:
            assert ingest(store, files, options).ingested == 3 * len(files)
        return tmp_path / name

    whole = ingest_into("whole", exposure_files)
    first, second = ingest_into("first", exposure_files[:2]), ingest_into("second", exposure_files[2:])
    summary = merge_stores(tmp_path / "merged", [first, second], config=FLOAT32)
    assert summary.ccds_added == 12
    assert_same_content(tmp_path / "merged", whole)
    with Store.open(tmp_path / "merged") as merged, Store.open(whole) as one_go:
        assert merged.provenance() == one_go.provenance()


def test_analysts_verdicts_are_merged_and_a_later_verdict_wins(one_go_and_halves, tmp_path):
    import time

    from query.analysts import add_label as add_verdict
    from query.analysts import analyst_rows

    _, first, second = one_go_and_halves
    third = build_store(tmp_path / "third", [1001, 1006])  # the same CCDs as first's and second's
    with Store.open(first, writable=True) as store:
        add_verdict(store, "1001", "PSF", "ana", note="first look")
        add_verdict(store, "1002/N1", "Bad_CCD", "bo")
    time.sleep(0.01)  # labelled_at orders the two verdicts of ana on 1001
    with Store.open(third, writable=True) as store:
        add_verdict(store, "1001", "good", "ana", note="second look")
        add_verdict(store, "1006", "Noise", "cy")
    summary = merge_stores(tmp_path / "merged", [first, second, third], config=FLOAT32)
    assert summary.analyst_labels_added == 4 and "4 analysts' verdicts" in summary.describe()
    with Store.open(tmp_path / "merged") as store:
        verdicts = {(r["analyst"], r["expnum"], r["ccdname"]): r["category"] for r in analyst_rows(store)}
        assert store.counts()["analyst_labels"] == 3
    assert verdicts == {
        ("ana", 1001, None): "good",
        ("bo", 1002, "N1"): "Bad_CCD",
        ("cy", 1006, None): "Noise",
    }
    again = merge_stores(tmp_path / "merged", [first, second, third], config=FLOAT32)
    assert again.analyst_labels_added == 0

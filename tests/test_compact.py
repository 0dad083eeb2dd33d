"""`vec compact`: merging small parts keeps every vector bitwise, under the commit protocol."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.store_writer import batch_rows, batch_vectors
from vecstore import compact, parts
from vecstore.cli import app
from vecstore.config import Config, StoreConfig
from vecstore.errors import VecError
from vecstore.store import PartRecord, Store


def _fill(store: Store, n_batches: int, size: int, run_id: int | None = None, first: int = 0) -> None:
    for b in range(first, first + n_batches):
        rows = batch_rows(b, size)
        store.commit_batch(run_id, rows[::-1], batch_vectors(rows[::-1]))


def _files_on_disk(store: Store) -> set[str]:
    return {p.name for p in parts.list_part_files(store.parts_dir)}


def _record(part_id: int, n_rows: int, run_id: int | None = None, dtype: str = "float16") -> PartRecord:
    return PartRecord(part_id, f"part-{part_id}.parquet", n_rows, run_id, dtype)


# ----------------------------------------------------------------------------------------- planning
def test_plan_packs_small_parts_of_one_run_up_to_the_target():
    records = [_record(i, 4) for i in range(1, 8)] + [_record(8, 10), _record(9, 3)]
    groups = compact.plan(records, target_rows=10)
    assert [[r.part_id for r in g] for g in groups] == [[1, 2], [3, 4], [5, 6], [7, 9]]
    assert all(sum(r.n_rows for r in g) <= 10 for g in groups)  # part 8 is full: never rewritten


def test_plan_keeps_runs_and_dtypes_apart_and_skips_lone_parts():
    records = [_record(1, 2, run_id=1), _record(2, 2, run_id=2), _record(3, 2, run_id=1)]
    records += [_record(4, 2, run_id=3, dtype="float32"), _record(5, 2, run_id=3)]
    assert [[r.part_id for r in g] for g in compact.plan(records, target_rows=100)] == [[1, 3]]
    with pytest.raises(VecError, match="at least 2 rows"):
        compact.plan(records, target_rows=1)


# ----------------------------------------------------------------------------------------- merging
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_compaction_keeps_every_vector_bitwise_and_every_id(tmp_path, dtype):
    config = Config(store=StoreConfig(embedding_dtype=dtype))
    with Store.create(tmp_path / "s", config=config) as store:
        _fill(store, 20, 3, run_id=1)
        _fill(store, 3, 3, run_id=2, first=20)
        before_ids, before = store.load_embeddings()
        result = store.compact(target_rows=16)
        assert (result.parts_before, result.parts_written, result.rows_moved) == (23, 5, 69)
        assert result.parts_after == len(store.committed_parts()) == 5  # 4 of run 1, 1 of run 2
        ids, vectors = store.load_embeddings()
        np.testing.assert_array_equal(ids, before_ids)
        assert vectors.tobytes() == before.tobytes()
        sub = before_ids[[0, 17, 40, 68]]
        assert store.load_embeddings(sub)[1].tobytes() == before[[0, 17, 40, 68]].tobytes()
        assert _files_on_disk(store) == {name for _, name, _ in store.committed_parts()}
        assert store.verify() == {"vectors": 69, "ccds": 69}
        runs = store.query(
            "SELECT DISTINCT p.run_id AS p, c.run_id AS c FROM ccds c JOIN embedding_parts p "
            "USING (part_id) ORDER BY c"
        ).to_pylist()
        assert runs == [{"p": 1, "c": 1}, {"p": 2, "c": 2}]
        assert store.compact(target_rows=16).parts_written == 0  # nothing left under the target to merge


def test_a_merged_part_is_sorted_by_id_in_small_row_groups(store):
    _fill(store, 70, 5)
    all_ids, all_vectors = store.load_embeddings()
    store.compact(target_rows=1000)
    (name,) = [name for _, name, _ in store.committed_parts()]
    meta = pq.ParquetFile(store.parts_dir / name).metadata
    assert meta.num_rows == 350 and meta.num_row_groups == 2  # 256 + 94 rows
    ids = parts.read_part_ids(store.parts_dir / name)
    assert np.all(np.diff(ids) > 0)
    rows = store.query("SELECT ccd_id, part_row FROM ccds ORDER BY part_row").to_pydict()
    np.testing.assert_array_equal(rows["ccd_id"], ids)
    across = np.r_[0:3, 250:262, 347:350]  # both row groups, and their boundary
    got_ids, got = store.load_embeddings(all_ids[across][::-1])
    np.testing.assert_array_equal(got_ids, all_ids[across])
    assert got.tobytes() == all_vectors[across].tobytes()


def test_a_disagreeing_catalog_stops_the_merge_and_changes_nothing(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        _fill(store, 3, 2)
        group = store.part_records()
        ids, vectors = parts.read_part(store.parts_dir / group[0].file)
        with pytest.raises(VecError, match="disagree on their CCDs"):
            store.replace_parts(group, ids, vectors)  # the CCDs of only one of the three parts
        assert [p.part_id for p in store.part_records()] == [1, 2, 3]
    with Store.open(path, writable=True) as store:  # the new part written before the refusal: an orphan
        assert _files_on_disk(store) == {name for _, name, _ in store.committed_parts()}
        assert store.verify() == {"vectors": 6, "ccds": 6}


def test_what_a_crash_leaves_either_side_of_the_commit_is_removed_on_open(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        _fill(store, 4, 3)
        expected = store.load_embeddings()
        old_files = {p: p.read_bytes() for p in parts.list_part_files(store.parts_dir)}
        # before the commit: the new part is in place but the catalog does not name it
        ids, vectors = parts.read_part(store.parts_dir / store.part_records()[0].file)
        parts.write_part(store.parts_dir, parts.part_file_name(99), ids, vectors, "float16")
        store.compact()
    for file, data in old_files.items():  # after the commit: the old parts were not removed yet
        file.write_bytes(data)
    with Store.open(path, writable=True) as store:
        assert store.recover()["orphans_removed"] == 0  # open already removed all five
        assert _files_on_disk(store) == {name for _, name, _ in store.committed_parts()}
        assert len(_files_on_disk(store)) == 1
        ids, vectors = store.load_embeddings()
        np.testing.assert_array_equal(ids, expected[0])
        assert vectors.tobytes() == expected[1].tobytes()


# ----------------------------------------------------------------------------------------- ingest trigger
def test_maybe_compact_runs_once_compaction_would_remove_enough_parts(tmp_path, monkeypatch):
    config = Config(store=StoreConfig(compact_target_rows=12, compact_trigger_parts=4))
    with Store.create(tmp_path / "s", config=config) as store:
        _fill(store, 2, 3)
        assert store.maybe_compact() is None  # lists the small parts from the catalog, once
        monkeypatch.setattr(store, "query", lambda *a, **k: pytest.fail("maybe_compact read the catalog"))
        for b in range(2, 6):
            _fill(store, 1, 3, first=b)
            assert store.maybe_compact() is None  # 6 parts of 3 rows merge into 2: 4 removed, not > 4
        monkeypatch.undo()
        _fill(store, 1, 3, first=6)
        result = store.maybe_compact()  # 7 parts -> 2 (12 + 9 rows): 5 removed
        assert (result.parts_before, result.parts_after) == (7, 2)
        assert store.verify() == {"vectors": 21, "ccds": 21}
        assert store.maybe_compact() is None


def test_maybe_compact_needs_a_writable_store(tmp_path):
    Store.create(tmp_path / "s").close()
    with Store.open(tmp_path / "s") as reader, pytest.raises(VecError, match="read-only"):
        reader.maybe_compact()


# ----------------------------------------------------------------------------------------- CLI
def test_vec_compact_and_vec_info_show_the_parts(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        _fill(store, 5, 2)
    runner = CliRunner()
    info = runner.invoke(app, ["--store", str(path), "info"])
    assert info.exit_code == 0, info.output
    assert (
        "parts       5 (5 under the 8,192-row compaction target); rows per part min 2 median 2" in info.output
    )
    result = runner.invoke(app, ["--store", str(path), "compact"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "merged 5 parts (10 CCDs) into 1: 5 -> 1 parts"
    summary = json.loads(runner.invoke(app, ["--store", str(path), "info", "--json", "--verify"]).output)
    assert summary["parts"]["parts"] == 1 and summary["parts"]["rows_max"] == 10
    assert summary["verified"] == {"vectors": 10, "ccds": 10}
    again = runner.invoke(app, ["--store", str(path), "compact", "--target-rows", "4"])
    assert again.exit_code == 0 and "nothing to compact: 1 parts" in again.output

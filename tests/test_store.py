"""The store's commit protocol, recovery, provenance and invariants (in-process)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.store_writer import batch_rows, batch_vectors
from vecstore import parts
from vecstore.errors import NotAStoreError, ProvenanceError, StoreLockedError, VecError
from vecstore.provenance import Provenance, VectorLayout
from vecstore.store import Store


def test_commit_then_load_returns_vectors_by_id(store):
    rows = batch_rows(0, 5)
    vectors = batch_vectors(rows)
    result = store.commit_batch(1, rows[::-1], vectors[::-1])  # order of the batch must not matter
    assert result.n_added == 5
    ids, loaded = store.load_embeddings()
    np.testing.assert_array_equal(ids, [r["ccd_id"] for r in rows])
    np.testing.assert_allclose(loaded, vectors, atol=2e-3)  # float16 on disk by default
    sub_ids, sub = store.load_embeddings(np.array([ids[3], ids[1]]))
    np.testing.assert_array_equal(sub_ids, [ids[1], ids[3]])
    np.testing.assert_array_equal(sub, loaded[[1, 3]])


def test_float32_storage_is_exact(tmp_path):
    from vecstore.config import Config, StoreConfig

    config = Config(store=StoreConfig(embedding_dtype="float32"))
    with Store.create(tmp_path / "s", config=config) as store:
        rows = batch_rows(0, 3)
        store.commit_batch(None, rows, batch_vectors(rows))
        assert store.load_embeddings()[1].tobytes() == batch_vectors(rows).tobytes()


def test_a_ccd_committed_twice_keeps_one_vector(store):
    rows = batch_rows(0, 4)
    store.commit_batch(None, rows, batch_vectors(rows))
    again = store.commit_batch(None, rows[:2] + batch_rows(1, 2), batch_vectors(rows[:2] + batch_rows(1, 2)))
    assert (again.n_added, again.n_already_committed) == (2, 2)
    dup = batch_rows(2, 1) * 2
    assert store.commit_batch(None, dup, batch_vectors(dup)).n_added == 1
    assert store.verify() == {"vectors": 7, "ccds": 7}


def test_missing_ids_are_an_error(store):
    rows = batch_rows(0, 2)
    store.commit_batch(None, rows, batch_vectors(rows))
    with pytest.raises(VecError, match="no embedding for ccd_id"):
        store.load_embeddings(np.array([42]))


def test_open_removes_orphans_and_requeues_lost_parts(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        for b in range(3):
            rows = batch_rows(b, 2)
            store.commit_batch(None, rows, batch_vectors(rows))
        files = [store.parts_dir / name for _, name, _ in store.committed_parts()]
    # a crash after the rename but before the catalog commit, and one before the rename
    parts.write_part(
        path / "embeddings", "part-00000099-deadbeef.parquet", np.array([1]), np.ones((1, 768)), "float16"
    )
    (path / "embeddings" / "part-00000100-cafe.parquet.tmp").write_bytes(b"half")
    files[1].unlink()  # a committed part lost (disk trouble): its CCDs must be embedded again
    with Store.open(path, writable=True) as store:
        assert sorted(p.name for p in parts.list_part_files(store.parts_dir)) == sorted(
            f.name for f in (files[0], files[2])
        )
        assert store.verify() == {"vectors": 4, "ccds": 4}
        assert 100100 not in set(store.committed_ids().tolist())  # batch 1 = exposure 1001 re-queued
        reasons = store.query("SELECT reason FROM failures").column("reason").to_pylist()
        assert reasons == ["embedding part file missing; CCD re-queued"] * 2


def test_one_writer_at_a_time(tmp_path):
    with Store.create(tmp_path / "s"), pytest.raises(StoreLockedError, match="another vec process"):
        Store.open(tmp_path / "s", writable=True)
    with Store.open(tmp_path / "s", writable=True):
        pass  # released on close


def test_readers_do_not_need_the_writer_lock(tmp_path):
    with Store.create(tmp_path / "s") as writer:
        rows = batch_rows(0, 2)
        writer.commit_batch(None, rows, batch_vectors(rows))
        with Store.open(tmp_path / "s") as reader:
            assert reader.counts()["ccds"] == 2
            with pytest.raises(VecError, match="read-only"):
                reader.commit_batch(None, rows, batch_vectors(rows))


@pytest.mark.parametrize("make", ["missing", "file", "nonempty-dir"])
def test_not_a_store(tmp_path, make):
    path = tmp_path / "x"
    if make == "file":
        path.write_text("hello")
    elif make == "nonempty-dir":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    with pytest.raises(NotAStoreError, match="is not a vec store"):
        Store.open(path)
    if make != "missing":
        with pytest.raises(NotAStoreError, match="not an empty directory"):
            Store.create(path)


def test_provenance_recorded_once_and_mismatch_refused(store):
    dino = Provenance("dinov2_vitb14_reg", "paper", 768, "ab" * 32)
    store.ensure_provenance(dino)
    store.ensure_provenance(dino)
    assert store.provenance() == dino
    with pytest.raises(ProvenanceError) as err:
        store.ensure_provenance(Provenance("test_vit", "tiny112", 64, "random:seed=0"))
    assert "dinov2_vitb14_reg" in str(err.value) and "test_vit" in str(err.value)
    with pytest.raises(ProvenanceError, match="preset 'cpu224'"):
        store.check_provenance(Provenance("dinov2_vitb14_reg", "cpu224", 768, "ab" * 32))


@pytest.mark.parametrize(
    "stored, offered",
    [
        (Provenance("qa", "none", 27, "qa-v2"), Provenance("qa", "none", 28, "qa-v3")),
        (
            Provenance("dinov2+qa", "cpu224", 795, "ab" * 32),
            Provenance("dinov2+qa", "cpu224", 796, "ab" * 32),
        ),
    ],
)
def test_a_store_of_older_qa_statistics_says_to_ingest_again_into_a_new_store(store, stored, offered):
    store.ensure_provenance(stored)
    with pytest.raises(ProvenanceError, match="qa statistics of this vec differ") as err:
        store.check_provenance(offered)
    assert "ingest the files again into a new store" in str(err.value)
    with pytest.raises(ProvenanceError, match="use the same embedder"):
        store.check_provenance(Provenance("test_vit", "tiny112", 64, "random:seed=0"))


def test_the_vector_layout_comes_from_the_stored_provenance(store):
    assert VectorLayout.of(store.provenance()) == VectorLayout()  # nothing committed yet
    names = tuple(f"f{i}" for i in range(8))
    store.ensure_provenance(Provenance("qa", "none", 8, feature_names=names, blocks=(("a", 3), ("b", 5))))
    layout = VectorLayout.of(store.provenance())
    assert (layout.embedder, layout.feature_names) == ("qa", names)
    assert layout.block_list == [["a", 3], ["b", 5]]  # as a model's settings.json keeps them
    assert VectorLayout("qa", None, names).block_list is None


def test_inconsistent_catalog_is_detected(tmp_path):
    path = tmp_path / "s"
    with Store.create(path) as store:
        rows = batch_rows(0, 2)
        store.commit_batch(None, rows, batch_vectors(rows))
        with store.transaction() as con:
            con.execute("DELETE FROM ccds WHERE ccd_id = ?", [rows[0]["ccd_id"]])
    with pytest.raises(VecError, match="inconsistent: 2 vectors"):
        Store.open(path)


def test_runs_and_failures_are_recorded(store):
    run = store.start_run("ingest", {"sources": ["a"]})
    store.record_failures(run, [("a.fits", "N4", None, "all pixels are NaN")])
    store.finish_run(run, "ok", {"ingested": 0})
    assert store.query("SELECT status FROM runs").column("status").to_pylist() == ["ok"]
    assert store.query("SELECT hdu, reason FROM failures").to_pylist() == [
        {"hdu": "N4", "reason": "all pixels are NaN"}
    ]


def test_the_on_disk_dtype_is_the_stores_not_the_later_configs(tmp_path):
    from vecstore.config import Config, StoreConfig

    with Store.create(tmp_path / "s", config=Config(store=StoreConfig(embedding_dtype="float32"))):
        pass
    with Store.open(tmp_path / "s", writable=True) as store:  # default config says float16
        assert store.embedding_dtype == "float32"
        rows = batch_rows(0, 3)
        store.commit_batch(None, rows, batch_vectors(rows))
        assert store.query("SELECT DISTINCT dtype FROM embedding_parts").column("dtype").to_pylist() == [
            "float32"
        ]
        assert store.load_embeddings()[1].tobytes() == batch_vectors(rows).tobytes()


# ----------------------------------------------------------------------------------- reading by id
def _fill(store, n_batches: int, size: int) -> None:
    for b in range(n_batches):
        rows = batch_rows(b, size)
        store.commit_batch(None, rows[::-1], batch_vectors(rows[::-1]))  # stored rows not in id order


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_selective_reads_equal_the_full_read(tmp_path, dtype):
    from vecstore.config import Config, StoreConfig

    with Store.create(tmp_path / "s", config=Config(store=StoreConfig(embedding_dtype=dtype))) as store:
        _fill(store, 12, 5)
        all_ids, all_vectors = store.load_embeddings()
        rng = np.random.default_rng(0)
        for ask in (
            all_ids[[7]],
            rng.choice(all_ids, 25, replace=False),  # unsorted, across many parts
            np.concatenate([all_ids[[3, 40, 3]], all_ids[[40]]]),  # duplicates are read once
            all_ids[::-1],
        ):
            ids, vectors = store.load_embeddings(ask)
            np.testing.assert_array_equal(ids, np.unique(ask))
            assert vectors.dtype == np.float32
            assert vectors.tobytes() == all_vectors[np.searchsorted(all_ids, ids)].tobytes()


def test_selective_read_opens_only_the_parts_that_hold_the_ids(store, monkeypatch):
    _fill(store, 10, 3)
    opened = []
    real = parts.read_rows
    monkeypatch.setattr(parts, "read_rows", lambda path, rows: opened.append(path.name) or real(path, rows))
    ids = np.array([100201, 100203, 100902])  # exposures 1002 and 1009: two parts
    store.load_embeddings(ids)
    named = {name: pid for pid, name, _ in store.committed_parts()}
    assert sorted(named[n] for n in opened) == [3, 10]


def test_one_missing_id_among_present_ones_is_an_error(store):
    _fill(store, 2, 3)
    with pytest.raises(VecError, match=r"no embedding for ccd_id\(s\) \[42\]"):
        store.load_embeddings(np.array([100001, 42, 100102]))


def test_no_ids_give_an_empty_array_of_the_stores_dim(store):
    _fill(store, 1, 2)
    ids, vectors = store.load_embeddings(np.array([], dtype=np.int64))
    assert ids.shape == (0,) and vectors.shape == (0, 768)


def test_a_wrong_row_offset_is_an_error_never_a_wrong_vector(tmp_path):
    with Store.create(tmp_path / "s") as store:
        _fill(store, 2, 3)
        with store.transaction() as con:  # swap the rows of two CCDs of one part
            con.execute("UPDATE ccds SET part_row = 2 - part_row WHERE expnum = 1000 AND part_row <> 1")
        with pytest.raises(VecError, match="does not hold the CCDs the catalog puts in it"):
            store.load_embeddings(np.array([100001]))
        with pytest.raises(VecError, match="does not hold the CCDs the catalog puts in it"):
            store.verify()


def test_a_reader_locates_again_when_a_compaction_moved_its_ccds(store, monkeypatch):
    _fill(store, 6, 4)
    expected = store.load_embeddings()
    real_locate, calls = store._locate, []

    def locate_then_compact(wanted):
        located = real_locate(wanted)
        if not calls:
            store.compact()  # commits between this reader's locate and its read
        calls.append(1)
        return located

    monkeypatch.setattr(store, "_locate", locate_then_compact)
    ids, vectors = store.load_embeddings()
    assert len(calls) == 2 and len(store.committed_parts()) == 1
    np.testing.assert_array_equal(ids, expected[0])
    assert vectors.tobytes() == expected[1].tobytes()


# ----------------------------------------------------------------------------------- streaming
def test_iter_embeddings_yields_every_ccd_once_in_bounded_batches(store):
    _fill(store, 7, 5)
    all_ids, all_vectors = store.load_embeddings()
    seen = []
    for ids, vectors in store.iter_embeddings(batch_rows=2):
        assert 1 <= len(ids) <= 2 and vectors.shape == (len(ids), 768) and vectors.dtype == np.float32
        assert vectors.tobytes() == all_vectors[np.searchsorted(all_ids, ids)].tobytes()
        seen.append(ids)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), all_ids)
    with pytest.raises(VecError, match="batch_rows"):
        next(store.iter_embeddings(batch_rows=0))


def test_iter_embeddings_is_a_snapshot_that_survives_a_compaction(store):
    _fill(store, 6, 4)
    all_ids, all_vectors = store.load_embeddings()
    stream = store.iter_embeddings(batch_rows=3)
    seen = [next(stream)]
    store.compact()  # removes every part the snapshot named, the open one included
    rows = batch_rows(50, 2)
    store.commit_batch(None, rows, batch_vectors(rows))  # committed after the snapshot: not yielded
    seen += list(stream)
    ids = np.concatenate([i for i, _ in seen])
    np.testing.assert_array_equal(np.sort(ids), all_ids)
    for batch_ids, vectors in seen:
        assert vectors.tobytes() == all_vectors[np.searchsorted(all_ids, batch_ids)].tobytes()


# ----------------------------------------------------------------------------------- older stores
@pytest.mark.parametrize("how", ["null-rows", "no-column"])
def test_a_store_without_row_offsets_is_upgraded_when_opened_for_writing(tmp_path, how):
    path = tmp_path / "s"
    with Store.create(path) as store:
        _fill(store, 3, 4)
        expected = store.load_embeddings()
        statement = (
            "UPDATE ccds SET part_row = NULL" if how == "null-rows" else "ALTER TABLE ccds DROP part_row"
        )
        with store.transaction() as con:
            con.execute(statement)
    with Store.open(path) as reader, pytest.raises(VecError, match="predates row offsets.* init"):
        reader.load_embeddings(np.array([100001]))
    with Store.open(path, writable=True) as store:
        assert (
            store.query("SELECT count(*) AS n FROM ccds WHERE part_row IS NULL").column("n")[0].as_py() == 0
        )
        ids, vectors = store.load_embeddings()
        np.testing.assert_array_equal(ids, expected[0])
        assert vectors.tobytes() == expected[1].tobytes()
        assert store.verify() == {"vectors": 12, "ccds": 12}

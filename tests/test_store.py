"""The store's commit protocol, recovery, provenance and invariants (in-process)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.store_writer import batch_rows, batch_vectors
from vecstore import parts
from vecstore.errors import NotAStoreError, ProvenanceError, StoreLockedError, VecError
from vecstore.provenance import Provenance
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

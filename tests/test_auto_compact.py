"""Ingest compacts on its own: many small parts end as a few, every vector bitwise the same."""

from __future__ import annotations

import numpy as np

from ingest.engine.driver import IngestOptions
from ingest.engine.local import ingest
from ingest.simulate.survey import simulate_survey
from vecstore.config import Config, StoreConfig
from vecstore.store import Store

ONE_CCD_PER_BATCH = IngestOptions(embedder="qa", workers=0, batch_size=1, release="test")


def _ingest(path, data, store_config: StoreConfig):
    with Store.create(path, config=Config(store=store_config)) as store:
        summary = ingest(store, [data], ONE_CCD_PER_BATCH)
        ids, vectors = store.load_embeddings()
        store.check_invariants()
        return summary, len(store.committed_parts()), ids, vectors


def test_an_ingest_of_many_small_batches_ends_with_few_parts_and_the_same_vectors(tmp_path):
    data = tmp_path / "survey"
    simulate_survey(data, 3, ccd_shape=(128, 64), ccdnames=("S1", "S2", "S3", "N1"), seed=3)
    # never compacts: one part per CCD
    plain, plain_parts, plain_ids, plain_vectors = _ingest(
        tmp_path / "plain", data, StoreConfig(compact_trigger_parts=10_000)
    )
    # compacts once merging would remove more than 2 parts, into parts of up to 4 rows
    auto, auto_parts, auto_ids, auto_vectors = _ingest(
        tmp_path / "auto", data, StoreConfig(compact_trigger_parts=2, compact_target_rows=4)
    )
    assert plain.ingested == auto.ingested == 12 and plain.failed == auto.failed == 0
    assert plain_parts == 12
    assert auto_parts <= 6  # 12 one-row parts merged in groups of up to 4, a few left for the next call
    np.testing.assert_array_equal(auto_ids, plain_ids)
    assert auto_vectors.dtype == plain_vectors.dtype
    assert auto_vectors.tobytes() == plain_vectors.tobytes()  # bitwise


def test_an_ingest_under_the_trigger_leaves_its_parts_alone(tmp_path):
    data = tmp_path / "survey"
    simulate_survey(data, 1, ccd_shape=(128, 64), ccdnames=("S1", "S2", "S3"), seed=4)
    _, n_parts, _, _ = _ingest(tmp_path / "s", data, StoreConfig(compact_trigger_parts=3))
    assert n_parts == 3

"""`vec similar` with no trained model: the label-free corpus space, own exposure and per-exposure rules."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from query.similar import find_similar
from query.train import train
from tests.querydata import CCDS, make_store
from vecstore import index as vindex
from vecstore.cli import app
from vecstore.config import Config, SimilarConfig
from vecstore.corpus_space import LABEL_FREE, label_free_space, space_dir
from vecstore.models import list_versions
from vecstore.store import Store

runner = CliRunner()


def _similar(path, *args):
    return runner.invoke(app, ["--store", str(path), "similar", *args])


def test_similar_works_with_no_model_in_the_label_free_space(tmp_path):
    path = tmp_path / "s"
    store, truth = make_store(path, spread=0.5)
    store.close()
    target = next(e for e, c in truth.items() if c == "Ghost_Scatter")
    out = _similar(path, f"{target}/S3", "-k", "8")
    assert out.exit_code == 0, out.output
    assert "searched the label-free corpus space (no trained model)" in out.output
    assert (space_dir(Store.open(path)) / "corpus.faiss").exists()
    with Store.open(path) as store:
        assert list_versions(store) == []  # the label-free space is not a model version
        found = find_similar(store, None, f"{target}/S3", 8)
    assert found.space == LABEL_FREE
    # fitted without labels, the space still puts the same artifact together
    assert sum(truth[h["expnum"]] == "Ghost_Scatter" for h in found.hits) >= 7


def test_own_exposure_is_left_out_unless_asked_and_per_exposure_limits(tmp_path):
    path = tmp_path / "s"
    store, truth = make_store(path, spread=0.5)
    target = next(e for e, c in truth.items() if c == "PSF")
    with store:
        hits = find_similar(store, None, f"{target}/S3", 12).hits
        assert target not in {h["expnum"] for h in hits}
        own = find_similar(store, None, f"{target}/S3", 12, include_own_exposure=True).hits
        assert 1 <= sum(h["expnum"] == target for h in own) <= CCDS - 1  # its other CCDs may come
        assert target * 100 + 3 not in {h["ccd_id"] for h in own}  # never the query itself
        one = find_similar(store, None, f"{target}/S3", 5, per_exposure=1).hits
        assert len(one) == 5 and len({h["expnum"] for h in one}) == 5
    listed = _similar(path, f"{target}/S3", "-k", "5", "--per-exposure", "1", "--include-own-exposure")
    assert listed.exit_code == 0, listed.output
    assert listed.output.count(str(target)) >= 2  # the query line and its own exposure's nearest CCD


def test_the_label_free_space_catches_up_and_the_trained_space_replaces_it(tmp_path):
    path = tmp_path / "s"
    store, truth = make_store(path, spread=0.5)
    first = next(iter(truth))
    with store:
        space = label_free_space(store, store.config)
        before = space.corpus_index().ntotal
        _, vectors = store.load_embeddings(np.array([first * 100 + 1]))
        rows = [{"ccd_id": 99999900 + n, "expnum": 999999, "ccdnum": n, "ccdname": f"N{n}"} for n in (1, 2)]
        store.commit_batch(None, rows, np.repeat(vectors, 2, axis=0))
        again = label_free_space(store, store.config)  # a later reader adds what was committed since
        assert again.corpus_index().ntotal == before + 2
        assert 99999901 in set(vindex.index_ids(again.corpus_index()).tolist())
        train(store, Config())
    out = _similar(path, f"{first}/S1", "-k", "3")
    assert out.exit_code == 0, out.output
    assert "searched model v0001's space" in out.output


def test_the_space_is_fitted_on_a_seeded_sample_and_refitted_when_the_store_grows(tmp_path):
    config = Config(similar=SimilarConfig(corpus_sample=50))
    store, _ = make_store(tmp_path / "s", spread=0.5, config=config)
    with store:
        space = label_free_space(store, config)
        assert space.settings["fitted_on"] == 50 and space.corpus_index().ntotal == store.counts()["ccds"]
        assert not space.is_stale(config)
        assert space.is_stale(Config(similar=SimilarConfig(corpus_sample=0)))  # all CCDs: > 2 x 50
        assert label_free_space(store, Config()).settings["fitted_on"] == store.counts()["ccds"]

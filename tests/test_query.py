"""classify, similar, export: on a trained store of synthetic embeddings with known categories."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.labels.importer import import_labels
from query.classify import classify_all, classify_exposures
from query.export import bad_exposures, badexp_text
from query.similar import similar_to_ccd
from query.train import train
from tests.querydata import CATEGORIES, CCDS, make_store
from vecstore import index as vindex
from vecstore.cli import app
from vecstore.config import ClassifyConfig, Config, IndexConfig
from vecstore.errors import NotFoundError, VecError
from vecstore.models import Model
from vecstore.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "store"
    store, truth = make_store(path, spread=0.5)
    with store:
        train(store, Config())
    return path, truth


def _open(path, writable=False):
    return Store.open(path, writable=writable)


def test_classify_finds_each_category_and_good(trained):
    path, truth = trained
    with _open(path) as store:
        model = Model.current(store)
        results = classify_exposures(store, model, sorted(truth), ClassifyConfig())
    for result in results:
        expected = truth[result.expnum]
        assert result.verdict.category == expected, (result.expnum, expected, result.verdict)
        assert result.verdict.is_bad == (expected != "good")
        assert result.verdict.n_ccds == CCDS  # fewer CCDs than the 20 drawn: all of them
        assert all(len(c.neighbours) == 7 for c in result.ccds)


def test_neighbours_explain_the_vote(trained):
    path, truth = trained
    bad = next(e for e, c in truth.items() if c == "PSF")
    with _open(path) as store:
        result = classify_exposures(store, Model.current(store), [bad], ClassifyConfig())[0]
    ccd = result.ccds[0]
    assert ccd.verdict.label == "PSF" and ccd.probs["PSF"] == pytest.approx(ccd.verdict.prob)
    distances = [n["distance"] for n in ccd.neighbours]
    assert distances == sorted(distances)
    assert sum(n["label"] == "PSF" for n in ccd.neighbours) / 7 == pytest.approx(ccd.verdict.prob)


def test_unknown_exposure_is_a_clear_error(trained):
    path, _ = trained
    with _open(path) as store, pytest.raises(NotFoundError, match="no CCDs of exposure"):
        classify_exposures(store, Model.current(store), [1], ClassifyConfig())


def test_classify_all_is_resumable(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=0.5)
    with store:
        train(store, Config())
        # unlabelled exposures: relabel nothing, add 6 good exposures' worth of CCDs without labels
        model = Model.current(store)
        calls = {"n": 0}

        def crash_after_first_chunk(done, total, summary):
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            classify_all(store, model, ClassifyConfig(chunk_exposures=5), progress=crash_after_first_chunk)
        first = store.query("SELECT run_id, status FROM runs WHERE command = 'classify'").to_pylist()
        assert first == [{"run_id": first[0]["run_id"], "status": "interrupted"}]
        summary = classify_all(store, model, ClassifyConfig())
        assert summary.resumed and summary.run_id == first[0]["run_id"]
        n_unlabelled = sum(1 for c in truth.values() if c == "good")
        rows = store.query(
            "SELECT expnum, count(*) AS n FROM exposure_predictions GROUP BY expnum"
        ).to_pylist()
        assert len(rows) == n_unlabelled and all(r["n"] == 1 for r in rows)
        assert store.scalar("SELECT count(*) FROM ccd_predictions") == n_unlabelled * CCDS


def test_export_then_import_round_trip(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=0.5, n_good=6)
    with store:
        train(store, Config())
        # forget the labels so every exposure is classified, then export the bad ones
        with store.transaction() as con:
            con.execute("DELETE FROM labels")
        run = classify_all(store, Model.current(store), ClassifyConfig())
        table = bad_exposures(store, run.run_id)
        text = badexp_text(table)
        exported = dict(
            zip(table.column("expnum").to_pylist(), table.column("category").to_pylist(), strict=True)
        )
        listing = tmp_path / "vec-bad_expid.txt"
        listing.write_text(text)
        imported = import_labels(store, listing)
        labels = store.query("SELECT expnum, category FROM labels").to_pydict()
        back = dict(zip(labels["expnum"], labels["category"], strict=True))
    assert exported == {e: c for e, c in truth.items() if c != "good"}
    assert imported.n_added == len(exported) and not imported.unmapped
    assert back == exported


def test_similar_returns_nearest_other_ccds_in_order(trained):
    path, truth = trained
    target = next(e for e, c in truth.items() if c == "Ghost_Scatter")
    with _open(path) as store:
        model = Model.current(store)
        query, hits = similar_to_ccd(store, model, f"{target}/S3", 12)
        assert query["ccd_id"] == target * 100 + 3
        assert query["ccd_id"] not in [h["ccd_id"] for h in hits]
        assert [h["rank"] for h in hits] == list(range(1, 13))
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
        assert sum(truth[h["expnum"]] == "Ghost_Scatter" for h in hits) >= 10
        # distances are exact L1 in the post-processed space
        ids, vectors = store.load_embeddings(np.array([query["ccd_id"], hits[0]["ccd_id"]]))
        projected = model.postprocessor.transform(vectors)
        assert hits[0]["distance"] == pytest.approx(np.abs(projected[0] - projected[1]).sum(), rel=1e-4)
        _, filtered = similar_to_ccd(store, model, f"{target}/S3", 5, where="filter = 'g'")
        assert all(h["filter"] == "g" for h in filtered) and len(filtered) == 5
        with pytest.raises(VecError, match="not valid SQL"):
            similar_to_ccd(store, model, f"{target}/S3", 5, where="filtre = 'g'")
        with pytest.raises(NotFoundError):
            similar_to_ccd(store, model, "1/N4", 5)


def test_the_corpus_index_searches_as_broadly_as_the_config_says(trained):
    path, truth = trained
    config = Config(index=IndexConfig(hnsw_ef_search=37))
    with Store.open(path, config=config) as store:
        index = Model.current(store).corpus_index()
        assert faiss.downcast_index(index.index).hnsw.efSearch == 37
        target = next(e for e, c in truth.items() if c == "PSF")
        _, hits = similar_to_ccd(store, Model.current(store), f"{target}/S3", 50)  # k above efSearch
        assert len(hits) == 50  # a k above efSearch still gets k neighbours (the search widens to k)


def test_ccds_committed_after_training_are_searchable(tmp_path):
    store, truth = make_store(tmp_path / "s", spread=0.5)
    with store:
        train(store, Config())
        model = Model.current(store)
        before = model.corpus_index().ntotal
        rows = [{"ccd_id": 99999900 + n, "expnum": 999999, "ccdnum": n, "ccdname": f"N{n}"} for n in (1, 2)]
        _, vectors = store.load_embeddings(np.array([next(iter(truth)) * 100 + 1] * 1))
        store.commit_batch(None, rows, np.repeat(vectors, 2, axis=0))
        fresh = Model.current(store)  # a reader opening later catches up from the catalog
        assert fresh.corpus_index().ntotal == before + 2
        assert 99999901 in set(vindex.index_ids(fresh.corpus_index()).tolist())


def test_cli_classify_similar_export(trained, tmp_path):
    path, truth = trained
    bad = next(e for e, c in truth.items() if c == "Out_of_Focus")
    out = runner.invoke(app, ["--store", str(path), "classify", str(bad)])
    assert out.exit_code == 0, out.output
    assert f"exposure {bad}: BAD (Out_of_Focus" in out.output
    as_json = json.loads(runner.invoke(app, ["--store", str(path), "classify", str(bad), "--json"]).output)
    assert as_json[0]["category"] == "Out_of_Focus" and len(as_json[0]["ccds"]) == CCDS
    picture = tmp_path / "fp.png"
    assert (
        runner.invoke(app, ["--store", str(path), "classify", str(bad), "--plot", str(picture)]).exit_code
        == 0
    )
    assert picture.stat().st_size > 1000
    similar = runner.invoke(app, ["--store", str(path), "similar", f"{bad}/S1", "-k", "5"])
    assert similar.exit_code == 0 and similar.output.count("Out_of_Focus") >= 4
    none = runner.invoke(app, ["--store", str(path), "export"])
    assert none.exit_code == 1 and "classify --all" in none.output


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_is_recovered_at_ccd_level(trained, category):
    path, truth = trained
    exposures = [e for e, c in truth.items() if c == category]
    with _open(path) as store:
        results = classify_exposures(store, Model.current(store), exposures, ClassifyConfig())
    labels = [c.verdict.label for r in results for c in r.ccds]
    assert labels.count(category) / len(labels) >= 0.9

"""Labels by analyst through the CLI: side by side, replacement, consensus and ties, training and the good
pool, export round trip, and every bad input as one clear line."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from query.good_set import good_candidates
from query.labels import resolve_ccd_categories
from tests.querydata import CCDS, make_store
from vecstore.cli import app
from vecstore.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysts") / "store"
    store, truth = make_store(path, spread=0.5)
    store.close()
    return path, truth


@pytest.fixture
def store_path(base, tmp_path):
    path, truth = base
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    return copy, truth


def vec(store_path, *args, ok=True):
    result = runner.invoke(app, ["--store", str(store_path), *map(str, args)])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _good(truth):
    return [e for e, c in truth.items() if c == "good"]


def _of(truth, category):
    return [e for e, c in truth.items() if c == category]


def _ccds(expnum):
    return {expnum * 100 + n for n in range(1, CCDS + 1)}


def test_several_analysts_side_by_side_and_show(store_path):
    path, truth = store_path
    e = _good(truth)[0]
    assert (
        "added alice: "
        in vec(path, "labels", "add", e, "psf", "--analyst", "alice", "--note", "fat stars").output
    )
    vec(path, "labels", "add", e, "PSF", "--analyst", "bob")
    vec(path, "labels", "add", e, "Out_of_Focus", "--analyst", "carol")
    vec(path, "labels", "add", f"{e}/S3", "bad_ccd", "--analyst", "dave")
    shown = vec(path, "labels", "show", e).output
    for name in ("alice", "bob", "carol", "dave", "fat stars", "majority"):
        assert name in shown
    assert f"{e}: PSF [PSF (alice, bob), Out_of_Focus (carol)]" in shown
    assert f"{e}/S3: Bad_CCD" in shown
    with Store.open(path) as store:
        resolved = resolve_ccd_categories(store)
        s3 = store.scalar("SELECT ccd_id FROM ccds WHERE expnum = ? AND ccdname = 'S3'", [e])
    assert resolved[s3] == "Bad_CCD"  # the CCD-level consensus beats the exposure-level one
    assert all(resolved[i] == "PSF" for i in _ccds(e) - {s3})


def test_show_lists_imported_labels_too(store_path):
    path, truth = store_path
    e = _of(truth, "PSF")[0]
    vec(path, "labels", "add", e, "good", "--analyst", "alice")
    shown = vec(path, "labels", "show", e).output
    assert "decals-badexp" in shown and "vec:PSF synthetic" in shown and "alice" in shown
    data = json.loads(vec(path, "labels", "show", e, "--json").output)
    assert data["consensus"][0]["category"] == "good" and len(data["imported"]) == 1


def test_a_second_verdict_replaces_the_first_and_says_so(store_path):
    path, truth = store_path
    e = _good(truth)[0]
    vec(path, "labels", "add", e, "psf", "--analyst", "alice")
    out = vec(path, "labels", "add", e, "noise", "--analyst", "alice").output
    assert f"replaced alice's earlier verdict on {e} (PSF) with Noise" in out
    assert "kept" in vec(path, "labels", "add", e, "noise", "--analyst", "alice").output
    with Store.open(path) as store:
        rows = store.query("SELECT category FROM analyst_labels WHERE analyst = 'alice'").to_pylist()
        assert rows == [{"category": "Noise"}]


def test_a_tie_is_reported_and_left_out_of_training_and_the_good_pool(store_path):
    path, truth = store_path
    e = _of(truth, "PSF")[0]  # imported as PSF; the analysts' tie overrides it
    vec(path, "labels", "add", e, "PSF", "--analyst", "alice")
    vec(path, "labels", "add", e, "good", "--analyst", "bob")
    assert "tie between PSF and good" in vec(path, "labels", "show", e).output
    summary = vec(path, "labels", "summary").output
    assert "ties, left out of training" in summary and f"{e}: tie between PSF and good" in summary
    with Store.open(path) as store:
        assert not _ccds(e) & set(resolve_ccd_categories(store))
        assert e not in good_candidates(store, 0.04)
    vec(path, "labels", "add", e, "good", "--analyst", "carol")  # a third verdict decides
    with Store.open(path) as store:
        assert not _ccds(e) & set(resolve_ccd_categories(store))
        assert e in good_candidates(store, 0.04)  # analysts' good beats the imported list


def test_unanimous_rule_from_config(store_path, tmp_path):
    path, truth = store_path
    e = _good(truth)[0]
    for analyst, verdict in (("alice", "psf"), ("bob", "psf"), ("carol", "noise")):
        vec(path, "labels", "add", e, verdict, "--analyst", analyst)
    config = tmp_path / "unanimous.toml"
    config.write_text('[labels]\nconsensus = "unanimous"\n')
    shown = runner.invoke(app, ["--store", str(path), "--config", str(config), "labels", "show", str(e)])
    assert shown.exit_code == 0 and "tie between PSF and Noise" in shown.output
    assert f"{e}: PSF" in vec(path, "labels", "show", e).output  # majority, the default
    config.write_text('[labels]\nconsensus = "vote"\n')
    bad = runner.invoke(app, ["--store", str(path), "--config", str(config), "labels", "show", str(e)])
    assert bad.exit_code == 1 and "expected one of majority, unanimous" in bad.output


def test_train_uses_the_consensus_and_the_good_verdicts(store_path):
    path, truth = store_path
    relabelled = _good(truth)[0]  # unlabelled, now PSF by two analysts to one
    for analyst, verdict in (("alice", "psf"), ("bob", "psf"), ("carol", "good")):
        vec(path, "labels", "add", relabelled, verdict, "--analyst", analyst)
    cleared = _of(truth, "Ghost_Scatter")[0]  # imported as Ghost_Scatter, judged good by an analyst
    vec(path, "labels", "add", cleared, "good", "--analyst", "alice")
    flagged = _good(truth)[1]
    vec(path, "labels", "add", flagged, "wonky", "--analyst", "alice")
    with Store.open(path) as store:
        pool = good_candidates(store, 0.04)
        assert cleared in pool and relabelled not in pool and flagged not in pool
        named = good_candidates(store, 0.04, f"expnum IN ({relabelled}, {flagged})")
        assert set(named) == {cleared}  # a bad consensus is never good, a good one always is
    vec(path, "train")
    with Store.open(path) as store:
        version = (path / "models" / "CURRENT").read_text().strip()
        rows = store.query("SELECT ccd_id, category FROM splits WHERE version = ?", [version]).to_pylist()
    split = {r["ccd_id"]: r["category"] for r in rows}
    assert {split[i] for i in _ccds(relabelled)} == {"PSF"}
    assert all(split.get(i, "good") == "good" for i in _ccds(cleared))
    assert {split[i] for i in _ccds(flagged)} == {"Wonky"}


def test_export_round_trip(store_path, tmp_path):
    path, truth = store_path
    a, b, c = _good(truth)[:3]
    with Store.open(path, writable=True) as store, store.transaction() as con:
        # querydata numbers its CCDs 1..10 whatever their names; a real store has DECam's CCDNUM for
        # each name, which is what an imported EXPNUM-CCDNAME line joins on
        con.execute("UPDATE ccds SET ccdnum = 26 WHERE expnum = ? AND ccdname = 'S2'", [b])
    vec(path, "labels", "add", a, "saturated", "--analyst", "alice", "--note", "bleed trails")
    vec(path, "labels", "add", a, "saturated", "--analyst", "bob")
    vec(path, "labels", "add", f"{b}/S2", "noise", "--analyst", "alice")
    vec(path, "labels", "add", c, "good", "--analyst", "alice")
    vec(path, "labels", "add", c, "clouds_transparency", "--analyst", "bob")  # a tie: not exported
    vec(path, "labels", "add", f"{c}/S4", "good", "--analyst", "carol")
    out, good = tmp_path / "analysts.txt", tmp_path / "good.txt"
    result = vec(path, "labels", "export", "-o", out, "--good", good)
    assert "2 bad label line(s)" in result.output and "1 tie(s) left out" in result.output
    text = out.read_text()
    assert f"{a}\t1\tvec:Saturated analysts=alice,bob" in text and f"{b}-S2\t3\tvec:Noise" in text
    assert str(c) not in text
    assert good.read_text().split("\n", 1)[1] == ""  # c tied at exposure level: not known good
    alone = vec(path, "labels", "export", "--analyst", "alice").output
    assert "bleed trails" in alone and "vec:Saturated analysts=alice " in alone
    # read back into a store with the same CCDs and no labels: the same categories
    fresh = tmp_path / "fresh"
    shutil.copytree(path, fresh)
    with Store.open(fresh, writable=True) as store, store.transaction() as con:
        con.execute("DELETE FROM labels")
        con.execute("DELETE FROM analyst_labels")
    assert "2 labels (decals-badexp), 2 new" in vec(fresh, "labels", "import", out).output
    with Store.open(fresh) as store:
        rows = store.query("SELECT expnum, level, ccdname, category FROM labels ORDER BY expnum").to_pylist()
        resolved = resolve_ccd_categories(store)
    assert rows == [
        {"expnum": a, "level": "exposure", "ccdname": None, "category": "Saturated"},
        {"expnum": b, "level": "ccd", "ccdname": "S2", "category": "Noise"},
    ]
    with Store.open(path) as store:
        assert {i: v for i, v in resolve_ccd_categories(store).items() if i // 100 in (a, b)} == resolved


def test_good_list_feeds_good_from(store_path, tmp_path):
    path, truth = store_path
    e = _good(truth)[0]
    vec(path, "labels", "add", e, "good", "--analyst", "alice")
    good = tmp_path / "good.txt"
    vec(path, "labels", "export", "--good", good)
    assert good.read_text().splitlines()[1:] == [str(e)]
    with Store.open(path) as store:
        assert set(good_candidates(store, 0.04, str(good))) == {e}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["add", "300000", "cloudy", "--analyst", "a"],
            "'cloudy' is not a category; expected one of Saturated",
        ),
        (["add", "30x0", "psf", "--analyst", "a"], "expected EXPNUM or EXPNUM/CCDNAME"),
        (["add", "300000/N", "psf", "--analyst", "a"], "expected EXPNUM or EXPNUM/CCDNAME"),
        (["add", "300000/X9", "psf", "--analyst", "a"], "'X9' is not a DECam CCD name"),
        (["add", "300000/N31", "psf", "--analyst", "a"], "CCD N31 of exposure 300000 is not in store"),
        (["add", "0", "psf", "--analyst", "a"], "must be positive"),
        (["add", "12345", "psf", "--analyst", "a"], "exposure 12345 is not in store"),
        (["add", "300000", "psf", "--analyst", "j doe"], "analyst 'j doe': expected a name"),
        (["show", "12345"], "exposure 12345 is neither in store"),
        (["show", "300000/S1"], "takes an exposure number"),
        (["export", "--analyst", "nobody"], "analyst 'nobody' has no labels"),
    ],
)
def test_bad_input_is_one_clear_line(store_path, args, message):
    path, _ = store_path
    result = vec(path, "labels", *args, ok=False)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output

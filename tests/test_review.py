"""`vec review`: unknown and near-threshold exposures come before clear ones; the labels-add line; --html."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from query.review import review_queue
from query.train import train
from tests.fitsfactory import write_cp_exposure
from tests.querydata import CCDS, make_store
from vecstore.cli import app
from vecstore.config import Config
from vecstore.models import Model
from vecstore.store import Store

runner = CliRunner()
NEAR, ODD, CLEAR = 800001, 800002, 800003


def _add_exposure(store: Store, expnum: int, vectors: np.ndarray, directory) -> None:
    names = [f"S{n}" for n in range(1, CCDS + 1)]
    path = write_cp_exposure(directory / f"c4d_{expnum}_ooi_r_v1.fits.fz", expnum, names, seed=expnum)
    rows = [
        {"ccd_id": expnum * 100 + n, "expnum": expnum, "ccdnum": n, "ccdname": f"S{n}", "filter": "r",
         "release": "test", "path": str(path), "hdu": f"S{n}"}
        for n in range(1, CCDS + 1)
    ]  # fmt: skip
    store.commit_batch(None, rows, vectors.astype(np.float32))


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    store, truth = make_store(root / "store", spread=0.5)
    with store:
        train(store, Config())
        good = next(e for e, c in truth.items() if c == "good")
        psf = next(e for e, c in truth.items() if c == "PSF")
        _, g = store.load_embeddings(np.arange(good * 100 + 1, good * 100 + CCDS + 1))
        _, p = store.load_embeddings(np.arange(psf * 100 + 1, psf * 100 + CCDS + 1))
        rng = np.random.default_rng(5)
        _add_exposure(store, NEAR, (g + p) / 2, root)  # halfway between good and PSF
        _add_exposure(store, ODD, g + 25.0 * rng.standard_normal(g.shape), root)  # like nothing labelled
        _add_exposure(store, CLEAR, g + 0.05 * rng.standard_normal(g.shape), root)  # plainly good
    return root / "store"


def test_unknown_and_near_threshold_exposures_rank_above_a_clear_one(reviewed):
    with Store.open(reviewed) as store:
        queue = review_queue(store, Model.current(store), Config().classify, n=100)
    rank = {e.expnum: e for e in queue.entries}
    assert {NEAR, ODD, CLEAR} <= set(rank)
    assert rank[ODD].rank < rank[CLEAR].rank and rank[NEAR].rank < rank[CLEAR].rank
    assert rank[ODD].terms["unknown"] > 0 and "unknown" in rank[ODD].reasons[0]
    assert rank[NEAR].terms["threshold"] + rank[NEAR].terms["disagree"] > rank[CLEAR].terms["threshold"]
    assert [e.rank for e in queue.entries] == list(range(1, len(queue.entries) + 1))
    assert all(a.score >= b.score for a, b in zip(queue.entries, queue.entries[1:], strict=False))
    assert all(n["label"] for n in rank[NEAR].lookalikes)  # nearest labelled look-alikes


def test_cli_prints_the_labels_add_line_and_writes_a_page_with_thumbnails(reviewed, tmp_path):
    page = tmp_path / "review.html"
    out = runner.invoke(
        app, ["--store", str(reviewed), "review", "-n", "3", "--analyst", "alice", "--html", str(page)]
    )
    assert out.exit_code == 0, out.output
    assert f"exposure {ODD}" in out.output and "why:" in out.output
    assert f"vec labels add {ODD} " in out.output and "--analyst alice" in out.output
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 3 * 2  # the shown CCDs and their look-alikes
    assert f"vec labels add {ODD}" in text
    as_json = runner.invoke(app, ["--store", str(reviewed), "review", "-n", "2", "--json"])
    assert as_json.exit_code == 0 and '"command": "vec labels add' in as_json.output

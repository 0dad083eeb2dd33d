"""`vec review`: unknown, near-threshold and uncovered exposures come before clear ones, one round does not
spend its labels on look-alikes, labelled exposures are never proposed; the labels-add line; --html."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from query.analysts import add_label
from query.labels import labels_summary
from query.review import (
    at_least,
    cover_values,
    flag_chance,
    greedy_order,
    review_queue,
    score_exposure,
)
from query.train import train
from tests.fitsfactory import write_cp_exposure
from tests.querydata import CCDS, make_store
from vecstore.cli import app
from vecstore.config import Config
from vecstore.models import Model
from vecstore.store import Store

runner = CliRunner()
NEAR, ODD, CLEAR = 800001, 800002, 800003
TWINS = tuple(range(800011, 800016))  # five look-alikes, halfway between good and PSF like NEAR
OTHER = 800021  # a third of the way from good to Clouds_Transparency: less borderline than the twins


def _add_exposure(store: Store, expnum: int, vectors: np.ndarray, directory) -> None:
    names = [f"S{n}" for n in range(1, CCDS + 1)]
    path = write_cp_exposure(directory / f"c4d_{expnum}_ooi_r_v1.fits.fz", expnum, names, seed=expnum)
    rows = [
        {"ccd_id": expnum * 100 + n, "expnum": expnum, "ccdnum": n, "ccdname": f"S{n}", "filter": "r",
         "release": "test", "path": str(path), "hdu": f"S{n}"}
        for n in range(1, CCDS + 1)
    ]  # fmt: skip
    store.commit_batch(None, rows, vectors.astype(np.float32))


def _vectors(store: Store, expnum: int) -> np.ndarray:
    return store.load_embeddings(np.arange(expnum * 100 + 1, expnum * 100 + CCDS + 1))[1]


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    store, truth = make_store(root / "store", spread=0.5)
    with store:
        train(store, Config())
        g = _vectors(store, next(e for e, c in truth.items() if c == "good"))
        p = _vectors(store, next(e for e, c in truth.items() if c == "PSF"))
        clouds = _vectors(store, next(e for e, c in truth.items() if c == "Clouds_Transparency"))
        rng = np.random.default_rng(5)
        _add_exposure(store, NEAR, (g + p) / 2, root)  # halfway between good and PSF
        _add_exposure(store, ODD, g + 25.0 * rng.standard_normal(g.shape), root)  # like nothing labelled
        _add_exposure(store, CLEAR, g + 0.05 * rng.standard_normal(g.shape), root)  # plainly good
        for e in TWINS:
            _add_exposure(store, e, (g + p) / 2 + 0.02 * rng.standard_normal(g.shape), root)
        _add_exposure(store, OTHER, (2 * g + clouds) / 3, root)
    return root / "store"


def _queue(path, n):
    with Store.open(path) as store:
        return review_queue(store, Model.current(store), Config().classify, n=n)


def test_unknown_and_near_threshold_exposures_rank_above_a_clear_one(reviewed):
    queue = _queue(reviewed, 100)
    rank = {e.expnum: e for e in queue.entries}
    assert {NEAR, ODD, CLEAR} <= set(rank)
    assert rank[ODD].rank < rank[CLEAR].rank and rank[NEAR].rank < rank[CLEAR].rank
    assert rank[ODD].terms["unknown"] > 0 and any("unknown" in r for r in rank[ODD].reasons)
    assert rank[NEAR].terms["boundary"] + rank[NEAR].terms["disagree"] > rank[CLEAR].terms["boundary"]
    assert [e.rank for e in queue.entries] == list(range(1, len(queue.entries) + 1))
    assert all(a.score >= b.score for a, b in zip(queue.entries, queue.entries[1:], strict=False))
    assert all(abs(e.score - sum(e.terms.values())) < 1e-9 for e in queue.entries)
    assert all(n["label"] for n in rank[NEAR].lookalikes)  # nearest labelled look-alikes


def test_one_round_does_not_spend_its_labels_on_look_alikes(reviewed):
    """Six look-alikes score higher, each on its own, than OTHER: a plain sort by score would put all six
    above it. One of them comes first, the later ones are halved, so OTHER gets into the top four."""
    queue = _queue(reviewed, 100)
    rank = {e.expnum: e for e in queue.entries}
    with Store.open(reviewed) as store:
        labelled = {r["category"]: r["exposures"] for r in labels_summary(store).rows}
    alone = {e: score_exposure(rank[e].result, rank[e].result.rule, labelled)[0] for e in rank}
    lookalikes = {NEAR, *TWINS}
    assert min(alone[e] for e in lookalikes) > alone[OTHER]
    top = [e.expnum for e in queue.entries[:4]]
    assert OTHER in top and len(lookalikes & set(top)) <= 2, top
    best = min(lookalikes, key=lambda e: rank[e].rank)
    assert all(any("look-alike" in r for r in rank[e].reasons) for e in lookalikes - {best})


def test_greedy_order_halves_repeats_and_closes_covered_groups():
    base = np.array([3.0, 3.0, 3.0, 3.0, 1.0, 1.0])
    groups = np.array([0, 0, 0, 0, 1, 2])
    picks = greedy_order(base, np.zeros(6), groups, 4)
    assert [i for i, _, _ in picks] == [0, 1, 4, 5]  # 3, then 1.5 beats 1, then 1 beats 0.75
    assert [r for _, _, r in picks] == [0, 1, 0, 0]
    cover = np.array([0.0, 0.0, 0.0, 0.0, 2.5, 0.0])  # group 1's representative is uncovered
    assert [i for i, _, _ in greedy_order(base, cover, groups, 2)] == [4, 0]
    # a pick of a group closes it: its representative loses the cover
    picks = greedy_order(np.array([2.0, 0.5]), np.array([0.0, 1.4]), np.array([7, 7]), 2)
    assert picks == [(0, 0.0, 0), (1, 0.0, 1)]


def test_cover_goes_to_the_typical_member_of_a_group_no_label_covers():
    rng = np.random.default_rng(0)
    labelled_group = rng.normal(0.0, 0.1, (6, 4))
    open_group = rng.normal(10.0, 0.1, (8, 4))
    open_group[0] += 3.0  # on the edge of its group: not the typical one
    x = np.vstack([labelled_group, open_group])
    labelled = np.zeros(len(x), dtype=bool)
    labelled[0] = True
    cover, groups = cover_values(x, labelled, 2, seed=0)
    assert groups[0] != groups[6] and len(set(groups[6:].tolist())) == 1
    assert cover[:6].sum() == 0  # that group holds a labelled exposure
    assert np.count_nonzero(cover) == 1 and cover[7:].max() == 1.0 and cover[6] == 0


def test_the_boundary_chance_is_a_vote_wobble():
    assert flag_chance(0.5, 0.5, 7) == pytest.approx(1 / (1 + np.exp(-0.5)))  # 0.62 at the threshold
    assert flag_chance(0.5 - 1 / 7, 0.5, 7) == pytest.approx(1 - flag_chance(0.5, 0.5, 7))  # one vote below
    assert at_least([0.5, 0.5], 1) == pytest.approx(0.75)
    assert at_least([0.5, 0.5], 2) == pytest.approx(0.25)
    assert at_least([0.2, 0.9, 0.4], 0) == pytest.approx(1.0)


def test_exposures_an_analyst_labelled_are_not_proposed_again(reviewed, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(reviewed, path)
    first = _queue(path, 2).entries[0].expnum
    with Store.open(path, writable=True) as store:
        add_label(store, str(first), "good", "alice")
    queue = _queue(path, 100)
    assert first not in {e.expnum for e in queue.entries}
    assert queue.n_candidates == len(_queue(reviewed, 100).entries) - 1


def test_cli_prints_the_labels_add_line_and_writes_a_page_with_thumbnails(reviewed, tmp_path):
    page = tmp_path / "review.html"
    out = runner.invoke(
        app, ["--store", str(reviewed), "review", "-n", "3", "--analyst", "alice", "--html", str(page)]
    )
    assert out.exit_code == 0, out.output
    assert "score = 2 cover + 1 boundary + 1 unknown + 0.5 disagree + 0.5 rare, picked greedily" in out.output
    assert f"exposure {ODD}" in out.output and "why:" in out.output
    assert f"vec labels add {ODD} " in out.output and "--analyst alice" in out.output
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 3 * 2  # the shown CCDs and their look-alikes
    assert f"vec labels add {ODD}" in text
    as_json = runner.invoke(app, ["--store", str(reviewed), "review", "-n", "2", "--json"])
    assert as_json.exit_code == 0 and '"command": "vec labels add' in as_json.output

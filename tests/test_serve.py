"""`vec serve`: every page and its JSON on a small simulated store, bad input as 400/404 pages with a message,
the one write (a label through `vec labels add`'s library call), thumbnails drawn once, nothing else written
to the catalog, the safety checks — and a real headless Chromium that clicks from the survey to an exposure,
to a CCD, records a label, and screenshots each page.

The store: 24 simulated exposures of 8 small CCDs (so thumbnails show real artifacts), ingested with the
weight-free ``qa`` embedder, the bad_expid list imported, a calibrated model trained, ``classify --all`` run.
Set ``VEC_SERVE_SCREENSHOTS=DIR`` to keep the browser test's screenshots (docs/img/serve-*.png come from it).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from query.classify import classify_exposures
from query.similar import find_similar
from tests.browser import chromium_path
from tests.simstore import trained_simulated_store, vec
from vecstore.cli import app as cli
from vecstore.cli.web.app import create_app
from vecstore.cli.web.filters import compile_filter
from vecstore.cli.web.thumbs import CACHE_DIR
from vecstore.errors import BadInputError
from vecstore.models import Model
from vecstore.store import Store

CCDS = ["N4", "N5", "N10", "N11", "S4", "S5", "S10", "S11"]
SHAPE = (256, 128)
MAP_SAMPLE = 120
runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(store path, simulation): trained, with a classify --all run; tests that write use a copy."""
    root = tmp_path_factory.mktemp("serve")
    store, sim = trained_simulated_store(root, 24, ccd_shape=SHAPE, ccdnames=CCDS, seed=3, bad_fraction=0.6)
    vec(store, "classify", "--all")
    return store, sim


@pytest.fixture
def store_copy(served, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(served[0], copy)
    return copy


def client(store: Path, **options) -> TestClient:
    web = create_app(store, warm=False, map_sample=MAP_SAMPLE, allowed_hosts=["testserver"], **options)
    return TestClient(web, base_url="http://testserver")


def bad_run_exposure(store: Path) -> int:
    """The exposure the classify --all run found worst (bad first, then most CCDs flagged)."""
    with Store.open(store) as s:
        return int(
            s.scalar(
                "SELECT expnum FROM exposure_predictions ORDER BY is_bad DESC, n_bad DESC, expnum LIMIT 1"
            )
        )


def catalog_marks(store: Path) -> list:
    return [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(store.glob("catalog.duckdb*"))]


# ---------------------------------------------------------------------------------------------- pages
def test_every_page_and_its_json_shows_the_store(served):
    store, sim = served
    expnum = bad_run_exposure(store)
    with Store.open(store) as s:
        model = Model.current(s)
        truth = classify_exposures(s, model, [expnum], s.config.classify)[0]
        n_exposures = s.scalar("SELECT count(DISTINCT expnum) FROM ccds")
        run_id, n_bad = (
            s.query(
                "SELECT run_id, count(*) FILTER (WHERE is_bad) AS n FROM exposure_predictions GROUP BY run_id"
            )
            .to_pylist()[0]
            .values()
        )
        similar = find_similar(s, model, f"{expnum}/N4", 5)
    before = catalog_marks(store)
    with client(store) as c:
        survey = c.get("/api/survey").json()
        assert survey["counts"]["total"]["exposures"] == n_exposures == 24
        assert survey["counts"]["total"]["ccds"] == 24 * len(CCDS)
        assert survey["run"]["run_id"] == run_id and survey["counts"]["total"]["bad"] == n_bad
        assert len(survey["exposures"]["rows"]) == 24
        page = c.get("/").text
        assert f"run {run_id} (ok)" in page and f'href="/exposure/{expnum}"' in page
        bad_only = c.get("/api/survey?verdict=bad").json()["exposures"]["rows"]
        assert len(bad_only) == n_bad and all(r["verdict"] != "good" for r in bad_only)
        r_band = c.get("/api/survey?band=r&sort=date&order=desc").json()["exposures"]["rows"]
        assert r_band and {r["band"] for r in r_band} == {"r"}
        assert [r["mjd_obs"] for r in r_band] == sorted((r["mjd_obs"] for r in r_band), reverse=True)

        exposure = c.get(f"/api/exposure/{expnum}").json()
        assert len(exposure["boxes"]) == len(CCDS) and exposure["rule"]["rule"] == "calibrated"
        assert (
            exposure["vote"]["n_bad"] == truth.verdict.n_bad
            and exposure["vote"]["is_bad"] == truth.verdict.is_bad
        )
        assert exposure["stored"]["run_id"] == run_id and exposure["stored"]["n_bad"] == truth.verdict.n_bad
        text = c.get(f"/exposure/{expnum}").text
        assert text.count('<img src="/thumb/') == len(CCDS)
        assert (
            f"Exposure {expnum}: {'BAD (' + truth.verdict.category + ')' if truth.verdict.is_bad else 'GOOD'}"
            in text
        )

        ccd = c.get(f"/api/ccd/{expnum}/n4?k=5").json()  # any case, as `vec similar` takes it
        assert ccd["ccdname"] == "N4" and len(ccd["verdict"]["neighbours"]) == 7  # k = 7 voters
        assert [h["ccd_id"] for h in ccd["similar"]["hits"]] == [h["ccd_id"] for h in similar.hits]
        api = c.get(f"/api/similar?ccd={expnum}/N4&k=5").json()
        assert [h["distance"] for h in api["hits"]] == [h["distance"] for h in similar.hits]
        assert all(h["expnum"] != expnum for h in api["hits"])  # own exposure left out, as the CLI does
        ccd_page = c.get(f"/ccd/{expnum}/N4").text
        assert ccd_page.count('src="/thumb/') == 1 + 7 + 12  # the large one, the voters, 12 look-alikes

        review = c.get("/api/review?n=5").json()
        assert len(review["entries"]) == 5 and review["entries"][0]["command"].startswith("vec labels add")
        assert "exposure " in c.get("/review?n=5").text
        points = c.get("/api/map").json()
        assert points["n"] == MAP_SAMPLE and points["method"] == "t-SNE"
        assert all(re.fullmatch(r"\d+/[NS]\d+", p["ccd"]) for p in points["points"])
        assert len(c.get("/static/plotly.min.js").content) > 10**6  # served from the plotly package
    assert catalog_marks(store) == before  # pages never write the catalog


def test_where_filter_reaches_the_catalog_only_as_parameters(served):
    sql, params = compile_filter("filter IN ('g', 'r') AND exptime >= 60 AND ccdname NOT LIKE 'S%'")
    assert sql == '"filter" IN (?, ?) AND "exptime" >= ? AND "ccdname" NOT LIKE ?'
    assert params == ["g", "r", 60, "S%"]
    sql, params = compile_filter("release = 'x'' OR ''1''=''1'")
    assert sql == '"release" = ?' and params == ["x' OR '1'='1"]
    for text in [
        "filter = 'r'; DROP TABLE ccds",
        "1 = 1",
        "filter = 'r' OR 1 = 1",
        "path = '/x'",
        "filter =",
    ]:
        with pytest.raises(BadInputError):
            compile_filter(text)
    assert compile_filter("naxis1 = 128") == ('"naxis1" = ?', [128])
    with pytest.raises(BadInputError, match="catalog has no column 'naxis1'"):  # a store from before sizes
        compile_filter("filter = 'r' AND naxis1 = 128", available={"filter", "exptime"})
    store, _ = served
    expnum = bad_run_exposure(store)
    with client(store) as c:
        hits = c.get("/api/similar", params={"ccd": f"{expnum}/N4", "k": 8, "where": "filter = 'r'"}).json()[
            "hits"
        ]
        assert hits and {h["filter"] for h in hits} == {"r"}
        refused = c.get("/api/similar", params={"ccd": f"{expnum}/N4", "where": "1=1; DROP TABLE ccds"})
        assert refused.status_code == 400 and "filter" in refused.json()["error"]
        page = c.get(f"/ccd/{expnum}/N4", params={"where": "filter = 'zz'"})
        assert page.status_code == 200 and "no look-alike passes the filter" in page.text
    with Store.open(store) as s:
        assert s.scalar("SELECT count(*) FROM ccds") == 24 * len(CCDS)


def test_bad_input_gives_a_page_or_json_that_says_what_is_wrong(served):
    store, _ = served
    expnum = bad_run_exposure(store)
    with client(store) as c:
        missing = c.get("/exposure/123")
        assert missing.status_code == 404 and "exposure 123 is not in this store" in missing.text
        assert '<p class="error-message"' in missing.text
        no_ccd = c.get(f"/ccd/{expnum}/N31")
        assert (
            no_ccd.status_code == 404
            and "has no CCD 'N31'" in html.unescape(no_ccd.text)
            and "N4" in no_ccd.text
        )
        assert c.get(f"/ccd/{expnum}/..%2Fetc").status_code == 404
        for k in ("abc", "0", "201", "-3"):
            bad = c.get(f"/api/similar?ccd={expnum}/N4&k={k}")
            assert bad.status_code == 400 and "k must be" in bad.json()["error"], k
        assert "give the query CCD" in c.get("/api/similar").json()["error"]
        unknown = c.get("/api/similar?ccd=123/N4")
        assert unknown.status_code == 404 and "no embedded CCD" in unknown.json()["error"]
        assert c.get("/?verdict=nonsense").status_code == 400
        assert c.get("/?page=x").status_code == 400
        assert c.get(f"/thumb/{expnum}/N4.png?size=huge").status_code == 400
        nowhere = c.get("/no/such/page")
        assert nowhere.status_code == 404 and "no page at /no/such/page" in nowhere.text


def test_thumbnails_are_drawn_once_and_kept_in_the_store(store_copy):
    with Store.open(store_copy) as s:
        expnum, path = (
            s.query("SELECT expnum, any_value(path) AS p FROM ccds GROUP BY expnum LIMIT 1")
            .to_pylist()[0]
            .values()
        )
    with client(store_copy) as c:
        first = c.get(f"/thumb/{expnum}/N4.png?size=small")
        assert first.status_code == 200 and first.headers["x-vec-thumbnail"] == "rendered"
        again = c.get(f"/thumb/{expnum}/N4.png?size=small")
        assert again.headers["x-vec-thumbnail"] == "cache" and again.content == first.content
        large = c.get(f"/thumb/{expnum}/N4.png?size=large")
        assert large.headers["x-vec-thumbnail"] == "cache"  # both sizes from the one read
        small_img, large_img = (
            Image.open(store_copy / CACHE_DIR / "thumbnails" / str(expnum) / f"N4-{s}.png")
            for s in ("small", "large")
        )
        assert (
            small_img.width > small_img.height and large_img.height > large_img.width
        )  # small lies landscape
        assert np.asarray(large_img).std() > 5
        away = Path(path).rename(Path(path).with_suffix(".moved"))  # a file gone: still a page, "no image"
        try:
            gone = c.get(f"/thumb/{expnum}/N5.png?size=small")
        finally:
            away.rename(path)
        assert gone.status_code == 200 and gone.headers["x-vec-thumbnail"] == "no-image"
        assert not (store_copy / CACHE_DIR / "thumbnails" / str(expnum) / "N5-small.png").exists()


def test_the_only_write_is_a_label_through_labels_add(store_copy):
    expnum = bad_run_exposure(store_copy)
    with client(store_copy) as c:
        form = {
            "target": f"{expnum}/N4",
            "category": "Ghost_Scatter",
            "analyst": "bob",
            "note": "pupil ghost",
            "next": f"/ccd/{expnum}/N4",
        }
        response = c.post("/label", data=form, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith(
            f"/ccd/{expnum}/N4?said="
        )
        assert response.cookies.get("vec_analyst") == "bob"
        shown = c.get(response.headers["location"]).text
        assert f"added bob: {expnum}/N4 Ghost_Scatter" in shown and 'data-analyst="bob"' in shown
        api = c.post("/api/labels", json={"target": str(expnum), "category": "good", "analyst": "carol"})
        assert api.status_code == 200 and api.json()["added"] == f"added carol: {expnum} good"
        elsewhere = c.post(
            "/label", data={**form, "analyst": "mallory"}, headers={"Origin": "http://evil.example"}
        )
        assert elsewhere.status_code == 403 and "this server's own pages" in html.unescape(elsewhere.text)
        cross = c.post(
            "/api/labels",
            json={"target": str(expnum), "category": "PSF", "analyst": "eve"},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        nameless = c.post("/label", data={**form, "analyst": ""})
        assert nameless.status_code == 400 and "analyst" in nameless.text
        wrong = c.post("/api/labels", json={"target": str(expnum), "category": "Blurry", "analyst": "bob"})
        assert wrong.status_code == 400 and "is not a category" in wrong.json()["error"]
        assert c.post("/label", data={**form, "target": "123/N4"}).status_code == 404
        away = c.post("/label", data={**form, "next": "//evil.example/x"}, follow_redirects=False)
        assert away.headers["location"].startswith("/?said=")
    with Store.open(store_copy) as s:
        rows = s.query(
            "SELECT analyst, expnum, ccdname, category, note FROM analyst_labels ORDER BY analyst"
        ).to_pylist()
    assert rows == [
        {
            "analyst": "bob",
            "expnum": expnum,
            "ccdname": "N4",
            "category": "Ghost_Scatter",
            "note": "pupil ghost",
        },
        {"analyst": "carol", "expnum": expnum, "ccdname": None, "category": "good", "note": None},
    ]


def test_requests_must_name_this_server(served):
    web = create_app(served[0], warm=False)  # bound to 127.0.0.1: only 127.0.0.1 / localhost are answered
    with TestClient(web, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/survey").status_code == 200
    with TestClient(web, base_url="http://attacker.example") as c:
        assert c.get("/api/survey").status_code == 400  # a DNS-rebinding page's Host


def test_serve_binds_loopback_by_default(served, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    result = runner.invoke(cli, ["--store", str(served[0]), "serve"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000 and "http://127.0.0.1:8000/" in result.output
    wide = runner.invoke(cli, ["--store", str(served[0]), "serve", "--host", "0.0.0.0", "--port", "9000"])
    assert seen["host"] == "0.0.0.0" and "warning" in wide.output
    missing = runner.invoke(cli, ["--store", str(served[0].parent / "nope"), "serve"])
    assert missing.exit_code == 1 and "is not a vec store" in missing.output


# ---------------------------------------------------------------------------------------------- browser
class LiveServer:
    """uvicorn in a thread on a free port of 127.0.0.1."""

    def __init__(self, store: Path):
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(store, map_sample=MAP_SAMPLE), host="127.0.0.1", port=0, log_level="warning"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _not_blank(png: Path) -> None:
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 10, f"{png} looks blank"


@pytest.mark.browser
@pytest.mark.skipif(
    chromium_path() is None, reason="headless Chromium not found; apt-get install -y chromium"
)
def test_a_person_clicks_through_and_records_a_label(store_copy, tmp_path):
    from tests.cdp import Browser

    expnum = bad_run_exposure(store_copy)
    with Store.open(store_copy) as s:
        truth = classify_exposures(s, Model.current(s), [expnum], s.config.classify)[0]
        unlabelled = s.scalar(
            "SELECT count(DISTINCT expnum) FROM ccds WHERE expnum NOT IN (SELECT expnum FROM labels)"
        )
    shots = {}
    with LiveServer(store_copy) as base, Browser(1280, 1000) as b:
        b.goto(base + "/")
        assert b.wait_for("document.getElementById('map').getAttribute('data-points')") == str(MAP_SAMPLE)
        assert b.evaluate("document.querySelectorAll('#map .scatterlayer .point').length") == MAP_SAMPLE
        assert b.evaluate("document.querySelectorAll('#exposures tr[data-expnum]').length") == 24
        assert "24 exposures" in b.evaluate("document.querySelector('h1').textContent")
        shots["survey"] = b.screenshot(tmp_path / "serve-survey.png", full_page=True)

        # a point of the map opens its CCD (plotly's own click handling, on a real mouse click)
        b.click_at(*b.centre_of("#map .scatterlayer .point"))
        b.wait_for("window.location.pathname.startsWith('/ccd/')")
        b.wait_for("document.readyState === 'complete'")
        assert b.evaluate("document.querySelector('h1').textContent").startswith("CCD ")

        b.goto(base + "/")
        b.click(f'#exposures a[href="/exposure/{expnum}"]')
        assert b.url() == f"{base}/exposure/{expnum}"
        assert b.evaluate("document.body.getAttribute('data-loaded-images')") == str(len(CCDS))
        verdict = b.evaluate("document.getElementById('verdict').textContent")
        word = f"BAD ({truth.verdict.category})" if truth.verdict.is_bad else "GOOD"
        assert (
            verdict
            == f"Exposure {expnum}: {word}, {truth.verdict.n_bad} of {truth.verdict.n_ccds} CCDs flagged"
        )
        assert b.evaluate("document.querySelectorAll('#plane a.ccd').length") == len(CCDS)
        shots["exposure"] = b.screenshot(tmp_path / "serve-exposure.png")

        b.click('#plane a[data-ccd="N4"]')
        assert b.url() == f"{base}/ccd/{expnum}/N4"
        assert b.evaluate("document.body.getAttribute('data-loaded-images')") == str(1 + 7 + 12)
        assert b.evaluate("document.querySelectorAll('#gallery a.card').length") == 12
        assert re.match(
            r"(GOOD|BAD: \w+) · p_bad \d\.\d\d", b.evaluate("document.getElementById('verdict').textContent")
        )
        shots["ccd"] = b.screenshot(tmp_path / "serve-ccd.png")

        b.type_into("#analyst", "alice")
        b.type_into("#note", "seen in the browser")
        b.click("#label-PSF")
        assert b.evaluate("document.getElementById('said').textContent") == f"added alice: {expnum}/N4 PSF"
        assert b.evaluate("document.querySelector('#analyst-labels tr[data-analyst=\"alice\"]') !== null")
        assert b.evaluate("document.getElementById('analyst').value") == "alice"  # kept for the next one

        b.goto(base + "/review")
        assert b.evaluate("document.querySelectorAll('.entry').length") == min(20, unlabelled)
        assert int(b.evaluate("document.body.getAttribute('data-loaded-images')")) >= min(20, unlabelled) * 3
        shots["review"] = b.screenshot(tmp_path / "serve-review.png")
    with Store.open(store_copy) as s:
        rows = s.query("SELECT analyst, expnum, ccdname, category, note FROM analyst_labels").to_pylist()
    assert rows == [
        {
            "analyst": "alice",
            "expnum": expnum,
            "ccdname": "N4",
            "category": "PSF",
            "note": "seen in the browser",
        }
    ]
    for png in shots.values():
        _not_blank(png)
    keep = os.environ.get("VEC_SERVE_SCREENSHOTS")
    if keep:
        for png in shots.values():
            shutil.copy(png, Path(keep) / png.name)

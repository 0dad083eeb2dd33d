"""The report pages in a real browser (headless Chromium): they render, and every image decodes.

Each page counts, on load, the ``<img>`` elements that decoded (``complete && naturalWidth > 0``) into
``<body data-loaded-images>``; the tests read it from the DOM after scripts ran. Install Chromium with
``apt-get install -y chromium`` to run them; without it they are skipped.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from query.reports.evaluation import confusion_matrix_png, embedding_3d, evaluation_html, hdbscan_summary
from query.reports.focal_plane import focal_plane_html
from query.reports.gallery import similar_gallery_html
from query.reports.thumbnails import thumbnail_png
from tests.browser import chromium_path, render
from vecstore.decam import ALL_CCDNAMES

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None,
        reason="headless Chromium not found (chromium, chromium-browser or google-chrome); "
        "install it with: apt-get install -y chromium",
    ),
]


def body_attribute(dom: str, name: str) -> str | None:
    body = re.search(r"<body\b[^>]*>", dom)
    assert body, "no <body> in the dumped DOM"
    value = re.search(rf'\b{name}="([^"]*)"', body.group(0))
    return value.group(1) if value else None


def assert_not_blank(screenshot) -> None:
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.std() > 10, f"screenshot {screenshot} looks blank (std {pixels.std():.1f})"


def ccd_picture(seed: int, shape=(256, 128)) -> bytes:
    """A small CCD-like image: sky noise, a few stars, a gradient (so thumbnails differ)."""
    rng = np.random.default_rng(seed)
    image = 1000.0 + 10.0 * rng.standard_normal(shape) + np.linspace(0, 30, shape[0])[:, None]
    for row, col in rng.integers(10, min(shape) - 10, size=(5, 2)):
        image[row - 2 : row + 3, col - 2 : col + 3] += 3000.0
    return thumbnail_png(image, max_size=128)


def test_gallery_renders_query_and_8_neighbours(tmp_path):
    query = {"caption": "1222425/N4  r", "png": ccd_picture(0)}
    neighbours = [
        {
            "png": ccd_picture(i),
            "caption": f"12224{i:02d}/N4  r  L1={3 + i}.21  label=Ghost_Scatter",
            "distance": 3.21 + i,
            "label": "Ghost_Scatter" if i % 2 else "good",
        }
        for i in range(1, 9)
    ]
    page = similar_gallery_html(query, neighbours, tmp_path / "gallery.html", "Similar to 1222425/N4")
    dom = render(page, tmp_path / "gallery.png", 1100, 800)
    assert_not_blank(tmp_path / "gallery.png")
    assert body_attribute(dom, "data-loaded-images") == "9"


def test_focal_plane_renders_62_thumbnails(tmp_path):
    ccds = [
        {
            "ccdname": name,
            "label": "Ghost_Scatter" if i % 7 == 0 else "good",
            "prob": 0.8,
            "is_bad": i % 7 == 0,
        }
        for i, name in enumerate(ALL_CCDNAMES)
    ]
    thumbnails = {name: ccd_picture(i) for i, name in enumerate(ALL_CCDNAMES)}
    verdict = {"expnum": 1222425, "is_bad": True, "category": "Ghost_Scatter", "n_bad": 9, "n_ccds": 62}
    page = focal_plane_html(ccds, tmp_path / "focal.html", "Exposure 1222425", thumbnails, verdict)
    dom = render(page, tmp_path / "focal.png", 1000, 900)
    assert_not_blank(tmp_path / "focal.png")
    assert body_attribute(dom, "data-loaded-images") == "62"


def test_evaluation_page_renders_plotly_3d_and_confusion_matrix(tmp_path):
    rng = np.random.default_rng(5)
    labels = ["Ghost_Scatter", "PSF", "good"]
    point_labels = [labels[i % 3] for i in range(120)]
    vectors = np.array([[10.0 * labels.index(lab)] * 8 for lab in point_labels]) + rng.standard_normal(
        (120, 8)
    )
    confusion = tmp_path / "cm.png"
    confusion_matrix_png(point_labels, point_labels[::-1], labels, confusion, "test set")
    page = evaluation_html(
        tmp_path / "eval.html",
        title="Evaluation",
        sections=[("report", "precision recall f1")],
        confusion_png=confusion.read_bytes(),
        points=embedding_3d(vectors, method="pca"),
        point_labels=point_labels,
        point_hover=[f"{i}/N4" for i in range(120)],
        clusters=hdbscan_summary(vectors, point_labels),
    )
    dom = render(page, tmp_path / "eval.png", 1200, 1600)
    assert_not_blank(tmp_path / "eval.png")
    assert body_attribute(dom, "data-loaded-images") == "1"
    assert 'class="main-svg"' in dom or "class='main-svg'" in dom  # plotly laid out its figure
    assert body_attribute(dom, "data-plot-traces") == "3"
    assert body_attribute(dom, "data-webgl") == "1", "no WebGL in this Chromium: the 3-D scatter cannot draw"
    assert int(body_attribute(dom, "data-plot-canvases")) >= 1

"""Report pictures without a browser: thumbnails, focal plane, gallery, evaluation page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from ingest.labels.rules import CATEGORIES
from query.reports.evaluation import (
    confusion_matrix_png,
    embedding_3d,
    evaluation_html,
    hdbscan_summary,
    tsne_perplexity,
)
from query.reports.focal_plane import (
    CATEGORY_COLOURS,
    GOOD_COLOUR,
    MISSING_COLOUR,
    focal_plane_html,
    focal_plane_png,
)
from query.reports.gallery import similar_gallery_html
from query.reports.thumbnails import MID_GREY, asinh_stretch, png_data_uri, png_dimensions, thumbnail_png
from vecstore.decam import ALL_CCDNAMES, CCD_SHAPE
from vecstore.errors import BadInputError

EVIL = "<script>alert(1)</script>"
ESCAPED_EVIL = "&lt;script&gt;alert(1)&lt;/script&gt;"


def decode_png(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def sky_with_star(shape=(400, 200), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = 1000.0 + 10.0 * rng.standard_normal(shape)
    rows, cols = np.indices(shape)
    image += 5e4 * np.exp(-((rows - shape[0] / 3) ** 2 + (cols - shape[1] / 2) ** 2) / 50.0)
    return image


# --- thumbnails -------------------------------------------------------------------------------------------


def test_asinh_stretch_is_uint8_of_same_shape_with_dark_sky_and_bright_star():
    image = sky_with_star()
    picture = asinh_stretch(image)
    assert picture.dtype == np.uint8 and picture.shape == image.shape
    assert picture[133, 100] == 255  # star centre
    assert 10 < np.median(picture) < 128  # sky: dark grey, noise visible, not clipped to black


def test_asinh_stretch_is_monotone_in_pixel_value():
    rng = np.random.default_rng(1)
    values = np.sort(np.concatenate([rng.normal(100, 5, 5000), rng.uniform(-50, 1e5, 5000)]))
    picture = asinh_stretch(values.reshape(100, 100))
    assert np.all(np.diff(picture.ravel().astype(int)) >= 0)
    assert picture.min() == 0 and picture.max() == 255


@pytest.mark.parametrize("fill", [0.0, 7.5, np.nan])
def test_constant_or_empty_image_is_mid_grey(fill):
    picture = asinh_stretch(np.full((50, 30), fill))
    assert np.all(picture == MID_GREY)
    assert png_dimensions(thumbnail_png(np.full((50, 30), fill))) == (30, 50)


def test_nan_and_inf_pixels_show_as_sky():
    image = sky_with_star()
    clean = asinh_stretch(image)
    image[10:20, 10:20] = np.nan
    image[30, 30] = np.inf
    picture = asinh_stretch(image)
    sky_level = np.median(clean)
    assert abs(int(np.median(picture[10:20, 10:20])) - sky_level) <= 3
    assert abs(int(picture[30, 30]) - sky_level) <= 3


def test_thumbnail_keeps_aspect_and_longer_side_is_max_size():
    png = thumbnail_png(sky_with_star((400, 200)), max_size=64)
    pixels = decode_png(png)
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 32)
    assert png_dimensions(png) == (32, 64)  # (width, height)
    wide = decode_png(thumbnail_png(sky_with_star((90, 300)), max_size=100))
    assert wide.shape == (30, 100)


def test_small_image_is_not_enlarged():
    assert decode_png(thumbnail_png(sky_with_star((40, 20)), max_size=256)).shape == (40, 20)


def test_full_decam_ccd_thumbnail_in_fits_byte_order_with_a_bad_column():
    # how fast: bench/qa_bench.py ("thumbnail_png 256"); timings are not asserted in tests
    rng = np.random.default_rng(2)
    ccd = (1000.0 + 10.0 * rng.standard_normal(CCD_SHAPE, dtype=np.float32)).astype(">f4")  # FITS byte order
    ccd[:, 1000:1010] = np.nan  # a bad column
    assert decode_png(thumbnail_png(ccd, max_size=256)).shape == (256, 128)


def test_png_data_uri_round_trips():
    png = thumbnail_png(sky_with_star((40, 20)))
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    import base64

    assert base64.b64decode(uri.split(",", 1)[1]) == png


# --- focal plane ------------------------------------------------------------------------------------------


def classified_ccds(bad: dict[str, str], missing: tuple[str, ...] = ()) -> list[dict]:
    """All CCDs but ``missing``, good unless named in ``bad`` (ccdname -> category)."""
    return [
        {
            "ccdname": name,
            "label": bad.get(name, "good"),
            "prob": 0.9 if name in bad else 0.7,
            "is_bad": name in bad,
        }
        for name in ALL_CCDNAMES
        if name not in missing
    ]


def fill_colour_at(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB at the left part of a CCD box, clear of the centred text and of the border."""
    left, top, right, bottom = box
    row = (top + bottom) // 2
    column = left + max(3, (right - left) // 10)
    return pixels[row, column, :3].astype(float) / 255.0


def test_focal_plane_png_colours_bad_good_and_missing_ccds(tmp_path):
    out = tmp_path / "sub" / "focal.png"
    boxes = focal_plane_png(
        classified_ccds({"N4": "Ghost_Scatter", "S22": "Saturated"}, missing=("N30",)),
        out,
        "Exposure 1222425",
    )
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert set(boxes) == set(ALL_CCDNAMES)
    expected = {
        "N4": CATEGORY_COLOURS["Ghost_Scatter"],
        "S22": CATEGORY_COLOURS["Saturated"],
        "S4": GOOD_COLOUR,
        "N30": MISSING_COLOUR,
    }
    for name, colour in expected.items():
        assert np.allclose(fill_colour_at(pixels, boxes[name]), to_rgb(colour), atol=0.02), name
    assert not np.allclose(fill_colour_at(pixels, boxes["N4"]), fill_colour_at(pixels, boxes["S4"]), atol=0.1)


def test_focal_plane_geometry_north_up_and_boxes_twice_as_wide_as_tall(tmp_path):
    boxes = focal_plane_png(classified_ccds({}), tmp_path / "f.png", "t")
    left, top, right, bottom = boxes["N4"]
    assert 1.8 < (right - left) / (bottom - top) < 2.3
    assert boxes["N29"][1] < boxes["N4"][1] < boxes["S4"][1] < boxes["S29"][1]  # north rows higher up


def test_palette_covers_every_category_with_distinct_colours():
    assert set(CATEGORY_COLOURS) == set(CATEGORIES)
    colours = [*CATEGORY_COLOURS.values(), GOOD_COLOUR, MISSING_COLOUR]
    assert len(set(colours)) == len(colours)


def test_focal_plane_refuses_unknown_and_duplicate_ccds(tmp_path):
    with pytest.raises(BadInputError, match="X99"):
        focal_plane_png(
            [{"ccdname": "X99", "label": "good", "prob": 1.0, "is_bad": False}], tmp_path / "f.png", "t"
        )
    twice = classified_ccds({})[:1] * 2
    with pytest.raises(BadInputError, match="twice"):
        focal_plane_html(twice, tmp_path / "f.html", "t")


def test_focal_plane_html_has_one_img_per_thumbnail_and_escapes_text(tmp_path):
    thumbnails = {
        name: thumbnail_png(sky_with_star((64, 32), seed=i), 64) for i, name in enumerate(ALL_CCDNAMES)
    }
    ccds = classified_ccds({"N4": "Ghost_Scatter"}, missing=("N30",))
    verdict = {"expnum": 1222425, "is_bad": True, "category": "Ghost_Scatter", "n_bad": 1, "n_ccds": 61}
    out = focal_plane_html(ccds, tmp_path / "focal.html", f"Exposure {EVIL}", thumbnails, verdict)
    text = out.read_text()
    assert text.count("<img") == 62
    assert EVIL not in text and ESCAPED_EVIL in text
    assert "Exposure 1222425: BAD (Ghost_Scatter), 1 of 61 CCDs bad" in text
    assert "http://" not in text and "https://" not in text  # self-contained
    assert text.count('class="ccd"') == 62


def test_focal_plane_html_without_thumbnails_has_no_images(tmp_path):
    text = focal_plane_html(classified_ccds({}), tmp_path / "f.html", "t").read_text()
    assert "<img" not in text and text.count('class="ccd"') == 62


# --- gallery ----------------------------------------------------------------------------------------------


def test_gallery_has_query_then_neighbours_in_order_and_escapes_captions(tmp_path):
    png = thumbnail_png(sky_with_star((64, 32)))
    query = {"caption": f"1222425/N4 {EVIL}", "png": png}
    neighbours = [
        {
            "png": png,
            "caption": f"12224{i}/N4  r  L1={3 + i}.21  label=Ghost_Scatter",
            "distance": 3.21 + i,
            "label": "Ghost_Scatter" if i % 2 else "good",
        }
        for i in range(8)
    ]
    text = similar_gallery_html(query, neighbours, tmp_path / "g.html", "Similar to 1222425/N4").read_text()
    assert text.count("<img") == 9
    assert EVIL not in text and ESCAPED_EVIL in text
    positions = [text.index(f"12224{i}/N4") for i in range(8)]
    assert text.index("card query") < positions[0] and positions == sorted(positions)


# --- evaluation -------------------------------------------------------------------------------------------


def blobs(n_per_blob=40, dims=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * dims, [30.0] * dims, [-30.0] + [30.0] * (dims - 1)])
    vectors = np.vstack([c + rng.standard_normal((n_per_blob, dims)) for c in centres])
    labels = ["Ghost_Scatter"] * n_per_blob + ["good"] * n_per_blob + ["PSF"] * n_per_blob
    return vectors, labels


def test_confusion_matrix_png_with_12_classes(tmp_path):
    labels = [*CATEGORIES, "good"]
    rng = np.random.default_rng(3)
    y_true = [labels[i] for i in rng.integers(0, 12, 400)]
    y_pred = [t if rng.random() < 0.7 else labels[rng.integers(0, 12)] for t in y_true]
    out = tmp_path / "cm.png"
    counts = confusion_matrix_png(y_true, y_pred, labels, out, "kNN test set")
    assert counts.shape == (12, 12) and counts.sum() == 400
    assert counts.trace() == sum(t == p for t, p in zip(y_true, y_pred, strict=True))
    pixels = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert pixels.shape[0] > 600 and pixels.shape[1] > 600  # room for 12 labelled rows
    assert pixels.std() > 20


def test_confusion_matrix_refuses_labels_outside_the_list(tmp_path):
    with pytest.raises(BadInputError, match="Wonky"):
        confusion_matrix_png(["good", "Wonky"], ["good", "good"], ["good", "PSF"], tmp_path / "cm.png", "t")


@pytest.mark.parametrize("n", [1, 3, 10, 300])
def test_embedding_3d_shapes(n):
    vectors = np.random.default_rng(4).standard_normal((n, 64))
    points = embedding_3d(vectors, method="tsne", seed=0, threads=1)
    assert points.shape == (n, 3) and np.isfinite(points).all()
    assert embedding_3d(vectors, method="pca").shape == (n, 3)


def test_embedding_3d_tsne_keeps_blobs_apart_and_is_reproducible():
    vectors, labels = blobs(n_per_blob=10)
    first = embedding_3d(vectors, seed=1, threads=1)
    assert np.allclose(first, embedding_3d(vectors, seed=1, threads=1))
    groups = np.array(labels)
    names = sorted(set(labels))
    centroids = np.array([first[groups == name].mean(axis=0) for name in names])
    nearest = np.linalg.norm(first[:, None, :] - centroids[None, :, :], axis=2).argmin(axis=1)
    assert [names[i] for i in nearest] == labels  # every point lies closest to its own blob's centre


def test_tsne_perplexity_adapts_to_small_n():
    assert tsne_perplexity(10) == 3.0 and tsne_perplexity(10_000) == 30.0
    assert all(tsne_perplexity(n) < n for n in range(5, 200))


def test_embedding_3d_refuses_unknown_method():
    with pytest.raises(BadInputError, match="umap"):
        embedding_3d(np.zeros((10, 4)), method="umap")


def test_hdbscan_finds_three_pure_blobs():
    vectors, labels = blobs()
    clusters = hdbscan_summary(vectors, labels, min_cluster_size=10)
    real = [c for c in clusters if c["cluster"] != -1]
    assert len(real) == 3
    assert all(c["purity"] == 1.0 and c["size"] == 40 for c in real)
    assert {c["majority_label"] for c in real} == {"Ghost_Scatter", "good", "PSF"}
    assert all(c["label_counts"] == {c["majority_label"]: 40} for c in real)


def test_hdbscan_with_too_few_points_is_all_noise():
    clusters = hdbscan_summary(np.zeros((3, 4)), ["a", "b", "a"], min_cluster_size=10)
    assert clusters == [
        {"cluster": -1, "size": 3, "majority_label": "a", "purity": 2 / 3, "label_counts": {"a": 2, "b": 1}}
    ]


def write_evaluation_page(tmp_path, n_per_blob=20):
    vectors, labels = blobs(n_per_blob=n_per_blob)
    confusion = tmp_path / "cm.png"
    confusion_matrix_png(labels, labels, ["Ghost_Scatter", "PSF", "good"], confusion, "t")
    return evaluation_html(
        tmp_path / "eval.html",
        title=f"Evaluation {EVIL}",
        sections=[("kNN classification report", f"precision recall\n{EVIL}")],
        confusion_png=confusion.read_bytes(),
        points=embedding_3d(vectors, method="pca"),
        point_labels=labels,
        point_hover=[f"{i}/N4 {lab}" for i, lab in enumerate(labels)],
        clusters=hdbscan_summary(vectors, labels),
    )


def test_evaluation_html_is_self_contained_and_escaped(tmp_path):
    text = write_evaluation_page(tmp_path).read_text()
    assert text.count("<img") == 1
    assert "<script src=" not in text and 'src="http' not in text  # plotly.js inlined, nothing fetched
    assert len(text) > 1_000_000  # ... which is a few MB
    assert EVIL not in text and text.count(ESCAPED_EVIL) == 3  # <title>, <h1>, section
    assert text.count("<tr>") == 4  # header + 3 clusters
    assert "kNN classification report" in text and "embedding-3d" in text


def test_evaluation_html_refuses_mismatched_points(tmp_path):
    with pytest.raises(BadInputError, match="differ"):
        evaluation_html(
            tmp_path / "e.html",
            title="t",
            sections=[],
            confusion_png=None,
            points=np.zeros((3, 3)),
            point_labels=["a", "b"],
            point_hover=["a", "b", "c"],
            clusters=[],
        )

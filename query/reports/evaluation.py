"""Pictures of how well the classifier does: confusion matrix, a 3-D map of the embeddings, clusters.

:func:`evaluation_html` puts them on one self-contained page: the classification reports as text, the
confusion matrix as an embedded PNG, an interactive 3-D scatter of the CCD embeddings coloured by category
(in the spirit of the 3-D t-SNE plot on the paper authors' project page) and a table of the HDBSCAN
clusters found in embedding space with how pure each is. plotly.js is inlined (about 4.5 MB) because the
page must open without network access.
"""

from __future__ import annotations

import html
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from sklearn.cluster import HDBSCAN  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from query.reports.focal_plane import GOOD, category_colour  # noqa: E402
from query.reports.thumbnails import html_page, png_data_uri, write_text  # noqa: E402
from vecstore.errors import BadInputError  # noqa: E402
from vecstore.vocabulary import CATEGORIES  # noqa: E402

NOISE = -1  # HDBSCAN's cluster id for points in no cluster

# t-SNE: dimensions kept by the PCA that precedes it (the usual speed-up; the neighbourhood structure of
# DINOv2 vectors survives it), the perplexity used when there are enough points, and the fewest points it
# is attempted on (below that a "neighbourhood" is meaningless and PCA is returned instead).
_TSNE_PCA_DIMS = 50
_TSNE_PERPLEXITY = 30.0
_TSNE_MIN_POINTS = 5


# --- confusion matrix -------------------------------------------------------------------------------------


def confusion_counts(y_true: list[str], y_pred: list[str], labels: list[str]) -> np.ndarray:
    """counts[i, j] = CCDs of true label ``labels[i]`` predicted as ``labels[j]``.

    A label outside ``labels`` is refused rather than dropped, so no CCD silently leaves the matrix.
    """
    if len(y_true) != len(y_pred):
        raise BadInputError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(v) for v in [*y_true, *y_pred] if v not in index})
    if unknown:
        raise BadInputError(f"labels {unknown} are not among the confusion-matrix labels {list(labels)}")
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for truth, prediction in zip(y_true, y_pred, strict=True):
        counts[index[truth], index[prediction]] += 1
    return counts


def row_fractions(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its total (recall per true class on the diagonal); empty rows stay 0."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0)


def confusion_matrix_png(
    y_true: list[str], y_pred: list[str], labels: list[str], out: Path, title: str
) -> np.ndarray:
    """Confusion matrix PNG: cells coloured by row fraction, annotated with counts; returns the counts.

    Colour by row fraction because the classes are very unbalanced (thousands of good CCDs, tens of some
    categories): raw counts would leave every small class white.
    """
    counts = confusion_counts(y_true, y_pred, labels)
    fractions = row_fractions(counts)
    side = 2.5 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=110)
    try:
        image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
        _annotate_counts(ax, counts, fractions)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks(
            range(len(labels)),
            [f"{lab} ({n})" for lab, n in zip(labels, counts.sum(axis=1), strict=True)],
            fontsize=8,
        )
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (CCDs)")
        ax.set_title(title, fontsize=11)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, facecolor="white")
    finally:
        plt.close(fig)
    return counts


def _annotate_counts(ax, counts: np.ndarray, fractions: np.ndarray) -> None:
    # Zero cells stay blank: with 12 classes a wall of zeros hides the few off-diagonal counts that matter.
    font_size = 8 if len(counts) <= 14 else 6
    for (i, j), count in np.ndenumerate(counts):
        if count:
            colour = "white" if fractions[i, j] > 0.55 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=font_size, color=colour)


# --- 3-D embedding ----------------------------------------------------------------------------------------


def _as_matrix(vectors) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2:
        raise BadInputError(f"expected an (n, d) array of vectors, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise BadInputError("the vectors contain NaN or inf")
    return matrix


def _pad_columns(points: np.ndarray, n_columns: int) -> np.ndarray:
    """Zero columns up to ``n_columns`` (PCA of fewer than 3 points or dimensions has fewer components)."""
    if points.shape[1] >= n_columns:
        return points
    return np.hstack([points, np.zeros((points.shape[0], n_columns - points.shape[1]))])


def _pca(matrix: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    n_keep = min(n_components, matrix.shape[0], matrix.shape[1])
    if matrix.shape[0] < 2 or n_keep == 0:  # one point has no variance to decompose
        return np.zeros((matrix.shape[0], n_components))
    reduced = PCA(n_components=n_keep, random_state=seed).fit_transform(matrix)
    return _pad_columns(reduced, n_components)


def tsne_perplexity(n_points: int) -> float:
    """30 when there are enough points, else (n - 1) / 3: t-SNE needs perplexity < n, and about 3
    perplexities' worth of neighbours for a stable calibration."""
    return float(min(_TSNE_PERPLEXITY, max(1.0, (n_points - 1) / 3.0)))


def tsne_learning_rate(n_points: int) -> float:
    """scikit-learn's "auto" rule, n / early_exaggeration / 4, without its floor of 50.

    With the floor, 3-D Barnes-Hut t-SNE of under ~1000 points overshoots: clusters that 2-D t-SNE
    separates cleanly come out torn apart and mixed (measured on well separated blobs of 12-300 points).
    """
    return max(n_points / 48.0, 2.0)


def embedding_3d(vectors, method: str = "tsne", seed: int = 0, threads: int | None = None) -> np.ndarray:
    """(n, 3) coordinates for a 3-D picture of (n, d) vectors: ``"tsne"`` (default) or ``"pca"`` (fast).

    t-SNE runs on the first 50 principal components with a perplexity and learning rate that shrink for
    small n (:func:`tsne_perplexity`, :func:`tsne_learning_rate`); under 5 points it returns the PCA.
    Deterministic for given vectors and seed. Cost: 3-D Barnes-Hut t-SNE takes seconds for hundreds of
    points and minutes for tens of thousands, so subsample or use ``"pca"`` for big sets.
    ``threads`` caps the OpenMP/BLAS threads; 1 is much faster than the default on a busy small machine,
    where t-SNE's threads wait on each other.
    """
    if method not in ("tsne", "pca"):
        raise BadInputError(f"unknown embedding method {method!r} (expected 'tsne' or 'pca')")
    matrix = _as_matrix(vectors)
    limit = threadpool_limits(threads) if threads is not None else nullcontext()
    with limit:
        if method == "pca" or matrix.shape[0] < _TSNE_MIN_POINTS:
            return _pca(matrix, 3, seed)
        reduced = _pca(matrix, _TSNE_PCA_DIMS, seed) if matrix.shape[1] > _TSNE_PCA_DIMS else matrix
        tsne = TSNE(
            n_components=3,
            perplexity=tsne_perplexity(matrix.shape[0]),
            learning_rate=tsne_learning_rate(matrix.shape[0]),
            init="pca",
            random_state=seed,
        )
        return tsne.fit_transform(reduced)


# --- clusters ---------------------------------------------------------------------------------------------


def hdbscan_summary(vectors, labels: list[str], min_cluster_size: int = 10) -> list[dict]:
    """HDBSCAN clusters of the vectors, each with its label make-up; noise is cluster -1 (listed last).

    Each dict: ``cluster`` (id), ``size``, ``majority_label``, ``purity`` (majority share), ``label_counts``
    ({label: n}, most common first). Clusters are ordered by id (HDBSCAN's, arbitrary but stable).
    Euclidean distance; for thousands of high-dimensional vectors pass a PCA reduction for speed.
    """
    matrix = _as_matrix(vectors)
    if len(labels) != matrix.shape[0]:
        raise BadInputError(f"{matrix.shape[0]} vectors but {len(labels)} labels")
    if min_cluster_size < 2:
        raise BadInputError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if matrix.shape[0] < min_cluster_size:
        assignments = np.full(matrix.shape[0], NOISE)  # too few points for even one cluster
    else:
        assignments = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(matrix)
    cluster_ids = sorted(set(assignments.tolist()) - {NOISE})
    if NOISE in assignments:
        cluster_ids.append(NOISE)
    return [
        _cluster_row(cid, [lab for lab, a in zip(labels, assignments, strict=True) if a == cid])
        for cid in cluster_ids
    ]


def _cluster_row(cluster_id: int, member_labels: list[str]) -> dict:
    counts = Counter(member_labels).most_common()
    majority, majority_count = counts[0]
    return {
        "cluster": int(cluster_id),
        "size": len(member_labels),
        "majority_label": majority,
        "purity": majority_count / len(member_labels),
        "label_counts": dict(counts),
    }


# --- the page ---------------------------------------------------------------------------------------------

_EVAL_CSS = """
img.confusion { max-width: 100%; border: 1px solid #ddd; background: #fff; }
table.clusters { border-collapse: collapse; font-size: 12px; background: #fff; }
table.clusters th, table.clusters td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
table.clusters td.num { text-align: right; font-variant-numeric: tabular-nums; }
#embedding-3d { border: 1px solid #ddd; background: #fff; }
"""

# After plotly has drawn: record what it drew, for a browser test reading the DOM (WebGL may be missing
# on a headless machine, in which case plotly shows a notice instead of a canvas).
_PLOT_RENDERED_SCRIPT = (
    "var gd = document.getElementById('{plot_id}');"
    "document.body.setAttribute('data-plot-canvases', String(gd.querySelectorAll('canvas').length));"
    "document.body.setAttribute('data-plot-traces', String(gd.data.length));"
    "var probe = document.createElement('canvas');"
    "document.body.setAttribute('data-webgl', probe.getContext('webgl') ? '1' : '0');"
)


def _label_order(point_labels: list[str]) -> list[str]:
    """Categories in the paper's order, then good, then anything else alphabetically: a stable legend."""
    present = set(point_labels)
    known = [c for c in CATEGORIES if c in present]
    rest = sorted(present - set(CATEGORIES) - {GOOD})
    return known + ([GOOD] if GOOD in present else []) + rest


def embedding_figure(points: np.ndarray, point_labels: list[str], point_hover: list[str]) -> go.Figure:
    """Interactive 3-D scatter, one trace per label so the legend toggles categories."""
    figure = go.Figure()
    labels = np.asarray(point_labels, dtype=object)
    hover = np.asarray(point_hover, dtype=object)
    for label in _label_order(point_labels):
        chosen = labels == label
        figure.add_trace(
            go.Scatter3d(
                x=points[chosen, 0],
                y=points[chosen, 1],
                z=points[chosen, 2],
                mode="markers",
                name=f"{label} ({int(chosen.sum())})",
                marker={
                    "size": 2.5 if label == GOOD else 3.5,
                    "color": category_colour(label),
                    "opacity": 0.85,
                },
                hovertext=hover[chosen].tolist(),
                hoverinfo="text",
            )
        )
    figure.update_layout(
        height=720,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
        legend={"itemsizing": "constant", "font": {"size": 11}},
        scene={"aspectmode": "cube", "xaxis_title": "", "yaxis_title": "", "zaxis_title": ""},
    )
    return figure


def _check_points(points, point_labels: list[str], point_hover: list[str]) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 3)  # an empty list has no second axis to check
    if array.ndim != 2 or array.shape[1] != 3:
        raise BadInputError(f"points must be an (n, 3) array, got shape {array.shape}")
    if not len(point_labels) == len(point_hover) == array.shape[0]:
        raise BadInputError(
            f"{array.shape[0]} points, {len(point_labels)} labels and {len(point_hover)} hover texts differ"
        )
    return array


def _cluster_table_html(clusters: list[dict]) -> str:
    if not clusters:
        return "<p>No clusters.</p>"
    rows = []
    for c in clusters:
        name = "noise" if c["cluster"] == NOISE else str(c["cluster"])
        make_up = ", ".join(f"{label}: {n}" for label, n in c["label_counts"].items())
        rows.append(
            f'<tr><td class="num">{html.escape(name)}</td><td class="num">{c["size"]}</td>'
            f'<td>{html.escape(str(c["majority_label"]))}</td><td class="num">{c["purity"]:.2f}</td>'
            f"<td>{html.escape(make_up)}</td></tr>"
        )
    header = "<tr><th>cluster</th><th>CCDs</th><th>majority label</th><th>purity</th><th>labels</th></tr>"
    return f'<table class="clusters">{header}{"".join(rows)}</table>'


def evaluation_html(
    out: Path,
    *,
    title: str,
    sections: list[tuple[str, str]],
    confusion_png: bytes | None,
    points,
    point_labels: list[str],
    point_hover: list[str],
    clusters: list[dict],
    images: tuple[tuple[str, bytes], ...] = (),
) -> Path:
    """Write the evaluation page; returns ``out``. Text is escaped; plotly.js is inlined (no network)."""
    array = _check_points(points, point_labels, point_hover)
    figure = embedding_figure(array, list(point_labels), list(point_hover))
    plot = figure.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id="embedding-3d",
        config={"displaylogo": False, "responsive": True},
        post_script=_PLOT_RENDERED_SCRIPT,
    )
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for heading, text in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>\n<pre>{html.escape(text)}</pre>")
    if confusion_png is not None:
        parts.append(
            f'<h2>Confusion matrix</h2>\n<img class="confusion" src="{png_data_uri(confusion_png)}" '
            f'alt="confusion matrix">'
        )
    for heading, png in images:
        parts.append(
            f"<h2>{html.escape(heading)}</h2>\n"
            f'<img class="confusion" src="{png_data_uri(png)}" alt="{html.escape(heading)}">'
        )
    parts.append(f"<h2>Embeddings in 3-D ({array.shape[0]} CCDs)</h2>\n{plot}")
    parts.append(f"<h2>HDBSCAN clusters</h2>\n{_cluster_table_html(clusters)}")
    return write_text(out, html_page(title, "\n".join(parts), css=_EVAL_CSS))


def calibration_png(cv: dict, out: Path, title: str) -> Path:
    """The calibrated rule's cross-validation: the objective over (t, f) as a map with the chosen cell, and
    precision / recall / accuracy against t at the chosen f."""
    t, f = np.array(cv["thresholds"]), np.array(cv["fractions"])
    score = np.array(cv["score_grid"])
    j = int(np.argmin(np.abs(f - cv["fraction"])))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    try:
        image = left.imshow(
            np.clip(score, 0, None).T,
            origin="lower",
            aspect="auto",
            cmap="viridis",
            extent=(t[0], t[-1], f[0], f[-1]),
        )
        left.plot([cv["threshold"]], [cv["fraction"]], "r*", markersize=14, label="chosen (plateau centre)")
        left.set_xlabel("t: CCD flagged at p_bad >= t")
        left.set_ylabel("f: share of flagged CCDs")
        left.legend(loc="upper right", fontsize=8)
        fig.colorbar(image, ax=left, label="objective")
        for name in ("precision", "recall"):
            right.plot(t, np.array(cv[f"{name}_grid"])[:, j], marker=".", label=f"bad {name}")
        right.plot(t, score[:, j], marker=".", label="objective")
        right.axvline(cv["threshold"], color="r", linestyle=":")
        right.set_xlabel("t")
        right.set_ylim(-0.02, 1.02)
        right.set_title(f"at f = {f[j]:.2f}", fontsize=10)
        right.legend(fontsize=8)
        fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, facecolor="white")
    finally:
        plt.close(fig)
    return out

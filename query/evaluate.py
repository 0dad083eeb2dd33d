"""``vec evaluate``: how well the current model does on its held-out test split.

CCD level: scikit-learn's classification report on the test CCDs, without and with the probability cut.
Exposure level: every test exposure is classified exactly as ``vec classify`` would (its CCDs drawn as
in production, the vote applied) and compared with its label: bad-versus-good precision and recall and
a per-category report. Pictures: the confusion matrix, a 3-D t-SNE of the post-processed vectors coloured
by category (as on the paper's project page) and an HDBSCAN cluster summary, in one HTML report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, precision_recall_fscore_support

from query.classify import classify_exposures, classify_vectors
from query.labels import resolve_ccd_categories
from query.vote import ccd_verdicts
from vecstore.config import Config
from vecstore.errors import TrainingError
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, GOOD


@dataclass
class Evaluation:
    version: str
    ccd_report: dict  # classification_report(output_dict=True), argmax label
    ccd_report_cut: dict  # with the probability cut (the label classify reports)
    exposure_report: dict
    exposure_binary: dict  # bad-vs-good precision, recall, f1, support
    texts: list[tuple[str, str]] = field(default_factory=list)
    html: Path | None = None
    confusion_png: Path | None = None


def _labels_in(*label_lists: list[str]) -> list[str]:
    present = set().union(*map(set, label_lists))
    return [c for c in (GOOD, *CATEGORIES) if c in present]


def _test_split(store: Store, version: str) -> tuple[np.ndarray, list[str]]:
    table = store.query(
        "SELECT ccd_id, category FROM splits WHERE version = ? AND split = 'test' ORDER BY ccd_id", [version]
    ).to_pydict()
    if not table["ccd_id"]:
        raise TrainingError(f"model {version} has an empty test split: label more exposures and train again")
    return np.array(table["ccd_id"], dtype=np.int64), table["category"]


def cut_sweep(
    truth: list[str], probs: np.ndarray, classes: tuple[str, ...], cuts=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
) -> str:
    """Bad-vs-good precision and recall of the test CCDs at several cuts, to choose one with data."""
    lines = [
        "probability cut -> test CCDs called bad: precision, recall (bad vs good), macro F1 over classes",
        f"{'cut':>5}{'precision':>11}{'recall':>8}{'macro F1':>10}",
    ]
    is_bad = np.array([t != GOOD for t in truth])
    for cut in cuts:
        labels = [v.label for v in ccd_verdicts(probs, classes, cut)]
        called = np.array([label != GOOD for label in labels])
        precision = float((called & is_bad).sum() / max(called.sum(), 1))
        recall = float((called & is_bad).sum() / max(is_bad.sum(), 1))
        macro = classification_report(truth, labels, output_dict=True, zero_division=0)["macro avg"][
            "f1-score"
        ]
        lines.append(f"{cut:>5.2f}{precision:>11.2f}{recall:>8.2f}{macro:>10.2f}")
    return "\n".join(lines)


def ccd_level(
    store: Store, model: Model, config: Config
) -> tuple[dict, dict, list[str], list[str], list[str], str]:
    ids, truth = _test_split(store, model.version)
    _, vectors = store.load_embeddings(ids)
    verdicts, probs, _ = classify_vectors(store, model, vectors, config.classify)
    argmax = [model.classes[i] for i in probs.argmax(axis=1)]
    with_cut = [v.label for v in verdicts]
    labels = _labels_in(truth, argmax, with_cut)
    report = classification_report(truth, argmax, labels=labels, output_dict=True, zero_division=0)
    report_cut = classification_report(truth, with_cut, labels=labels, output_dict=True, zero_division=0)
    return report, report_cut, truth, with_cut, labels, cut_sweep(truth, probs, model.classes)


def exposure_truth(store: Store, expnums: list[int]) -> dict[int, str]:
    """An exposure's label: its most frequent CCD category, or good when none of its CCDs is labelled."""
    bad = resolve_ccd_categories(store)
    expnum_of = dict(zip(*store.query("SELECT ccd_id, expnum FROM ccds").to_pydict().values(), strict=True))
    per_exposure: dict[int, Counter] = {e: Counter() for e in expnums}
    for ccd_id, category in bad.items():
        if expnum_of.get(ccd_id) in per_exposure:
            per_exposure[expnum_of[ccd_id]][category] += 1
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return {
        e: (min(c, key=lambda k: (-c[k], order.get(k, 99))) if c else GOOD) for e, c in per_exposure.items()
    }


def exposure_level(store: Store, model: Model, config: Config) -> tuple[dict, dict, list[str], list[str]]:
    ids, _ = _test_split(store, model.version)
    expnums = sorted(
        {
            int(e)
            for e in store.query(
                f"SELECT DISTINCT expnum FROM ccds WHERE ccd_id IN ({', '.join(map(str, ids.tolist()))})"
            )
            .column("expnum")
            .to_pylist()
        }
    )
    truth_by = exposure_truth(store, expnums)
    results = classify_exposures(store, model, expnums, config.classify)
    truth = [truth_by[r.expnum] for r in results]
    predicted = [r.verdict.category for r in results]
    labels = _labels_in(truth, predicted)
    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    p, r, f, _ = precision_recall_fscore_support(
        [t != GOOD for t in truth], [q != GOOD for q in predicted], average="binary", zero_division=0
    )
    binary = {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "support_bad": sum(t != GOOD for t in truth),
        "support_good": sum(t == GOOD for t in truth),
    }
    return report, binary, truth, predicted


def format_report(report: dict, title: str) -> str:
    lines = [title, f"{'class':<22}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for label, row in report.items():
        if isinstance(row, dict) and label not in ("macro avg", "weighted avg"):
            lines.append(
                f"{label:<22}{row['precision']:>10.2f}{row['recall']:>8.2f}{row['f1-score']:>8.2f}"
                f"{int(row['support']):>9}"
            )
    for label in ("macro avg", "weighted avg"):
        if label in report:
            row = report[label]
            lines.append(
                f"{label:<22}{row['precision']:>10.2f}{row['recall']:>8.2f}{row['f1-score']:>8.2f}"
                f"{int(row['support']):>9}"
            )
    return "\n".join(lines)


def _embedding_points(store: Store, model: Model, max_points: int, seed: int):
    table = store.query(
        "SELECT ccd_id, split, category FROM splits WHERE version = ? ORDER BY ccd_id", [model.version]
    ).to_pydict()
    ids = np.array(table["ccd_id"], dtype=np.int64)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ids), size=min(max_points, len(ids)), replace=False))
    _, vectors = store.load_embeddings(ids[pick])
    reduced = model.postprocessor.transform(vectors)
    labels = [table["category"][i] for i in pick]
    hover = [f"{ids[i]} {table['split'][i]} {table['category'][i]}" for i in pick]
    return reduced, labels, hover


def evaluate(
    store: Store, config: Config, out_dir: Path | None = None, *, max_points: int = 1500, method: str = "tsne"
) -> Evaluation:
    """Evaluate the current model and write ``out_dir/report.html`` and ``confusion_matrix.png``
    (default ``out_dir``: ``<store>/reports/<model version>``)."""
    from query.reports.evaluation import confusion_matrix_png, embedding_3d, evaluation_html, hdbscan_summary

    model = Model.current(store)
    out_dir = Path(out_dir) if out_dir is not None else store.path / "reports" / model.version
    if model.rule == "calibrated":
        return _evaluate_calibrated(store, model, config, out_dir, max_points=max_points, method=method)
    report, report_cut, truth, with_cut, labels, sweep = ccd_level(store, model, config)
    exp_report, binary, _, _ = exposure_level(store, model, config)
    texts = [
        ("CCDs (top class, no cut)", format_report(report, f"test CCDs of model {model.version}, argmax")),
        ("CCDs (probability cut)", format_report(report_cut, f"with prob >= {config.classify.prob_cut}")),
        ("Choosing the cut", sweep),
        (
            "Exposures (vote)",
            format_report(
                exp_report,
                f"test exposures, vote >= {config.classify.min_bad_ccds} "
                f"bad of {config.classify.ccds_per_exposure} CCDs",
            )
            + f"\nbad vs good: precision {binary['precision']:.2f} recall {binary['recall']:.2f} "
            f"f1 {binary['f1']:.2f} ({binary['support_bad']} bad, {binary['support_good']} good exposures)",
        ),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "confusion_matrix.png"
    confusion_matrix_png(truth, with_cut, labels, png, f"model {model.version}: test CCDs, prob cut")
    points, point_labels, hover = _embedding_points(store, model, max_points, config.train.seed)
    clusters = hdbscan_summary(points, point_labels, min_cluster_size=max(5, len(points) // 100))
    coords = embedding_3d(points, method=method, seed=config.train.seed, threads=1)
    html = evaluation_html(
        out_dir / "report.html",
        title=f"vec evaluation, model {model.version}",
        sections=texts,
        confusion_png=png.read_bytes(),
        points=coords,
        point_labels=point_labels,
        point_hover=hover,
        clusters=clusters,
    )
    return Evaluation(model.version, report, report_cut, exp_report, binary, texts, html, png)


def cross_validation_text(settings: dict) -> str:
    """The calibrated model's cross-validated quality, and the curve at the chosen fraction."""
    cv = settings["cv"]
    j = cv["fractions"].index(min(cv["fractions"], key=lambda f: abs(f - cv["fraction"])))
    lines = [
        f"{cv['folds']}-fold cross-validation grouped by exposure: {cv['bad_exposures']} bad and "
        f"{cv['good_exposures']} good labelled exposures, objective {settings['objective']}",
        f"chosen: t = {cv['threshold']:g}, f = {cv['fraction']:g} -> accuracy {cv['accuracy']:.3f}, "
        f"bad precision {cv['precision']:.3f}, recall {cv['recall']:.3f}",
        "",
        f"at f = {cv['fractions'][j]:g}:",
        f"{'t':>6}{'precision':>11}{'recall':>8}{'objective':>11}",
    ]
    for i, t in enumerate(cv["thresholds"]):
        row = (cv["precision_grid"][i][j], cv["recall_grid"][i][j], cv["score_grid"][i][j])
        lines.append(f"{t:>6.2f}{row[0]:>11.3f}{row[1]:>8.3f}{row[2]:>11.3f}")
    return "\n".join(lines + single_ccd_lines(cv))


def single_ccd_lines(cv: dict) -> list[str]:
    """The single-CCD rule: its CCD-level classes, the t_l chosen, and the best (t, f) score at each t_l."""
    axis = cv.get("local_thresholds") or [None]
    if axis == [None]:
        return ["", "single-CCD rule: off (no labelled category names single CCDs)"]
    chosen = cv.get("local_threshold")
    classes = "+".join(cv.get("local_classes") or []) or "-"
    lines = [
        "",
        f"single-CCD rule ({classes}): "
        + (f"t_l = {chosen:g}" if chosen is not None else "off (no t_l scored better than none)"),
        f"{'t_l':>6}{'best objective':>16}",
    ]
    for t_l, best in zip(axis, cv.get("local_scores", []), strict=False):
        lines.append(f"{'off' if t_l is None else f'{t_l:.2f}':>6}{best:>16.3f}")
    return lines


def _evaluate_calibrated(store, model: Model, config: Config, out_dir: Path, *, max_points: int, method: str):
    """A calibrated model holds every labelled exposure: its quality is its cross-validation."""
    from query.reports.evaluation import calibration_png, embedding_3d, evaluation_html, hdbscan_summary

    text = cross_validation_text(model.settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = calibration_png(model.settings["cv"], out_dir / "calibration.png", f"model {model.version}")
    points, point_labels, hover = _embedding_points(store, model, max_points, config.train.seed)
    clusters = hdbscan_summary(points, point_labels, min_cluster_size=max(5, len(points) // 100))
    coords = embedding_3d(points, method=method, seed=config.train.seed, threads=1)
    html = evaluation_html(
        out_dir / "report.html",
        title=f"vec evaluation, model {model.version} (calibrated rule)",
        sections=[("Cross-validation", text)],
        confusion_png=None,
        points=coords,
        point_labels=point_labels,
        point_hover=hover,
        clusters=clusters,
        images=(("Choosing (t, f)", png.read_bytes()),),
    )
    cv = model.settings["cv"]
    binary = {"precision": cv["precision"], "recall": cv["recall"], "accuracy": cv["accuracy"]}
    return Evaluation(model.version, {}, {}, {}, binary, [("Cross-validation", text)], html, png)

"""``vec demo``: vec's main job end to end on simulated DECam exposures, in minutes, with nothing downloaded.

simulate -> ingest -> import the truth labels of a training subset (through the real importers, from the
simulator's bad_expid- and DELVE-style lists) -> train -> evaluate on the test split -> classify the held-out
(unlabelled) exposures -> score them against the simulator's truth per category, for CCDs and exposures
-> export the bad list, write the HTML report and a focal-plane page.

This is the one library module that drives every package (ingest and query); the CLI calls it.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report

from ingest.categories import CATEGORIES
from ingest.decam import ALL_CCDNAMES, focal_plane_positions
from ingest.engine import IngestOptions, ingest
from ingest.label_import import import_labels
from ingest.simulate import simulate_survey
from query.classify import classify_all, classify_exposures
from query.evaluate import evaluate, format_report
from query.export import bad_exposures, badexp_text
from query.labels import GOOD
from query.train import train
from vecstore.config import Config
from vecstore.errors import VecError
from vecstore.models import Model
from vecstore.store import Store, remove_store


@dataclass(frozen=True)
class DemoOptions:
    exposures: int = 200
    ccd_shape: tuple[int, int] = (1024, 512)
    ccds_per_exposure: int = 8
    embedder: str | None = None
    weights: str | None = None
    workers: int = 2
    seed: int = 0
    fresh: bool = False
    labelled_fraction: float = 0.6  # exposures whose truth labels are imported; the rest are classified
    bad_fraction: float = 0.6


@dataclass
class DemoResult:
    embedder: str
    ccd_report: dict
    exposure_report: dict
    report_html: Path | None
    bad_list: Path
    focal_plane: Path | None
    texts: list[str] = field(default_factory=list)


def central_ccds(n: int) -> list[str]:
    """The ``n`` CCDs nearest the focal-plane centre (neighbours, so ghosts can span several)."""
    positions = focal_plane_positions()
    alive = [c for c in ALL_CCDNAMES if c != "N30"]
    return sorted(alive, key=lambda c: (np.hypot(*positions[c]), c))[: max(1, min(n, len(alive)))]


def choose_embedder(options: DemoOptions) -> tuple[str, str]:
    if options.embedder:
        return options.embedder, f"embedder {options.embedder} (asked for)"
    if options.weights:
        return "dinov2+qa", "embedder dinov2+qa (DINOv2 weights given, plus image-quality statistics)"
    return "qa", (
        "embedder qa: no DINOv2 weights were given (--weights dinov2_vitb14_reg4_pretrain.pth), so the "
        "demo uses the weight-free image-quality embedder"
    )


def _split_exposures(expnums: list[int], fraction: float, seed: int) -> tuple[set[int], set[int]]:
    order = np.random.default_rng([seed, 7]).permutation(sorted(expnums)).tolist()
    n_labelled = int(round(fraction * len(order)))
    return set(order[:n_labelled]), set(order[n_labelled:])


def write_training_labels(sim, labelled: set[int], out_dir: Path) -> list[tuple[Path, str]]:
    """Copies of the simulator's truth lists holding only the labelled exposures' lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    delve_out = out_dir / "delve"
    delve_out.mkdir(exist_ok=True)
    _filter_lines(sim.truth.bad_expid, out_dir / sim.truth.bad_expid.name, labelled, column=0)
    for path in sorted(sim.truth.delve_dir.glob("*.txt")):
        _filter_lines(path, delve_out / path.name, labelled, column=1)
    return [(out_dir / sim.truth.bad_expid.name, "decals-badexp"), (delve_out, "delve")]


def _filter_lines(source: Path, target: Path, keep: set[int], column: int) -> None:
    lines = []
    for line in source.read_text().splitlines():
        fields = line.split()
        if (
            line.startswith("#")
            or not fields
            or (len(fields) > column and fields[column].isdigit() and int(fields[column]) in keep)
        ):
            lines.append(line)
    target.write_text("\n".join(lines) + "\n")


def _truth(sim) -> tuple[dict[tuple[int, str], str], dict[int, str]]:
    per_ccd = {}
    with sim.truth.truth_csv.open() as handle:
        for row in csv.DictReader(handle):
            per_ccd[(int(row["expnum"]), row["ccdname"])] = row["category"]
    per_exposure = {e.expnum: e.label for e in sim.exposures}
    return per_ccd, per_exposure


def score_held_out(store: Store, sim, held_out: set[int], run_id: int) -> tuple[dict, dict, list[str], dict]:
    """Per-category precision/recall of the classify run on held-out exposures, for CCDs and exposures.

    CCDs are scored twice: by their top class (what the neighbours say) and with the probability cut (what
    vec reports: the cut trades recall for precision, as in the paper).
    """
    per_ccd, per_exposure = _truth(sim)
    ccd_rows = [
        r
        for r in store.query(
            "SELECT expnum, ccdname, label, probs FROM ccd_predictions WHERE run_id = ?", [run_id]
        ).to_pylist()
        if r["expnum"] in held_out
    ]
    exp_rows = [
        r
        for r in store.query(
            "SELECT expnum, category FROM exposure_predictions WHERE run_id = ?", [run_id]
        ).to_pylist()
        if r["expnum"] in held_out
    ]
    ccd_true = [per_ccd[(r["expnum"], r["ccdname"])] for r in ccd_rows]
    ccd_top = [_top_class(r["probs"]) for r in ccd_rows]
    ccd_pred = [r["label"] for r in ccd_rows]
    exp_true = [per_exposure[r["expnum"]] for r in exp_rows]
    exp_pred = [r["category"] for r in exp_rows]
    present = set(ccd_true) | set(ccd_top) | set(ccd_pred) | set(exp_true) | set(exp_pred)
    labels = [c for c in (GOOD, *CATEGORIES) if c in present]
    top_report = classification_report(ccd_true, ccd_top, labels=labels, output_dict=True, zero_division=0)
    ccd_report = classification_report(ccd_true, ccd_pred, labels=labels, output_dict=True, zero_division=0)
    exp_report = classification_report(exp_true, exp_pred, labels=labels, output_dict=True, zero_division=0)
    texts = [
        format_report(top_report, f"held-out CCDs ({len(ccd_true)}): top class, no cut, vs simulator truth"),
        format_report(ccd_report, f"held-out CCDs ({len(ccd_true)}): with the probability cut (vec's label)"),
        format_report(exp_report, f"held-out exposures ({len(exp_true)}): the vote vs simulator truth"),
    ]
    return ccd_report, exp_report, texts, top_report


def _top_class(probs_json: str) -> str:
    probs = json.loads(probs_json)
    return max(probs, key=lambda c: (probs[c], c == GOOD))


def _data_dir(store_path: Path) -> Path:
    return store_path.parent / f"{store_path.name}-sim"


def run_demo(
    store_path: Path, options: DemoOptions, config: Config, echo: Callable[[str], None] = print
) -> DemoResult:
    store_path = Path(store_path)
    data = _data_dir(store_path)
    if options.fresh:
        if store_path.exists():
            remove_store(store_path)
        shutil.rmtree(data, ignore_errors=True)
    elif (store_path / "catalog.duckdb").exists():
        raise VecError(
            f"{store_path} already holds a demo store; pass --fresh to start again, or another --store"
        )
    name, why = choose_embedder(options)
    echo(f"[1/7] {why}")
    ccdnames = central_ccds(options.ccds_per_exposure)
    echo(
        f"[2/7] simulating {options.exposures} exposures x {len(ccdnames)} CCDs of "
        f"{options.ccd_shape[0]}x{options.ccd_shape[1]} pixels into {data}"
    )
    sim = simulate_survey(
        data,
        options.exposures,
        ccd_shape=options.ccd_shape,
        ccdnames=ccdnames,
        seed=options.seed,
        bad_fraction=options.bad_fraction,
    )
    with Store.create(store_path, config=config) as store:
        echo("[3/7] ingesting (reading FITS, embedding every CCD)")
        summary = ingest(
            store,
            [data],
            IngestOptions(
                release="sim",
                embedder=name,
                weights=options.weights,
                workers=options.workers,
                batch_size=16,
                seed=options.seed,
            ),
        )
        echo(
            f"      {summary.ingested} CCDs in {summary.seconds:.1f} s ({summary.rate:.1f} CCDs/s), "
            f"{summary.failed} failed"
        )
        labelled, held_out = _split_exposures(
            [e.expnum for e in sim.exposures], options.labelled_fraction, options.seed
        )
        echo(f"[4/7] importing the truth labels of {len(labelled)} exposures; {len(held_out)} are held out")
        for path, source in write_training_labels(sim, labelled, data / "labels-train"):
            result = import_labels(store, path, source)
            echo(f"      {path.name}: {result.n_added} labels")
        trained = train(store, config)
        echo(
            f"[5/7] trained model {trained.version}: {len(trained.training.train_ids)} training CCDs, "
            f"{len(trained.training.test_ids)} test CCDs"
        )
        evaluation = evaluate(store, config, store_path / "reports" / trained.version, method="tsne")
        echo("[6/7] classifying the held-out exposures")
        run = classify_all(store, Model.current(store), config.classify)
        ccd_report, exp_report, texts, _ = score_held_out(store, sim, held_out, run.run_id)
        bad_list = data / "vec-bad_expid.txt"
        bad_list.write_text(badexp_text(bad_exposures(store, run.run_id)))
        focal = _focal_plane_page(store, run.run_id, store_path / "reports" / "focal-plane.html")
    echo("[7/7] results")
    for text in texts:
        echo(text + "\n")
    echo(f"report (test split, 3-D t-SNE, clusters): {evaluation.html}")
    echo(f"bad exposures found, in decam-bad_expid.txt format: {bad_list}")
    if focal:
        echo(f"focal-plane page of a flagged exposure: {focal}")
    return DemoResult(name, ccd_report, exp_report, evaluation.html, bad_list, focal, texts)


def _focal_plane_page(store: Store, run_id: int, out: Path) -> Path | None:
    from query.pictures import focal_plane_picture

    flagged = (
        store.query(
            "SELECT expnum FROM exposure_predictions WHERE run_id = ? AND is_bad ORDER BY mean_prob DESC "
            "LIMIT 1",
            [run_id],
        )
        .column("expnum")
        .to_pylist()
    )
    if not flagged:
        return None
    result = classify_exposures(store, Model.current(store), flagged, Config().classify)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    return focal_plane_picture(store, result, out)

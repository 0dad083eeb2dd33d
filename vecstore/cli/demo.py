"""``vec demo``: vec's main job end to end on simulated DECam exposures, in minutes, with nothing downloaded.

simulate -> ingest -> import the truth labels of a training subset (through the real importers, from the
simulator's bad_expid- and DELVE-style lists) and mark that subset's good exposures as known good ->
train both rules (the paper's, then the calibrated default) -> evaluate -> classify the held-out
(unlabelled) exposures with each -> score them against the simulator's truth per category, for CCDs and
exposures -> export the bad list, write the HTML report and a focal-plane page.

The held-out exposures are never references: good references come only from the inspected-good list, as
a survey's quality team would provide it (``vec train --good-from``).

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

from ingest.engine.driver import IngestOptions
from ingest.engine.local import ingest
from ingest.labels.importer import import_labels
from ingest.simulate.survey import simulate_survey
from query.classify import classify_all, classify_exposures
from query.evaluate import evaluate, format_report
from query.export import bad_exposures, badexp_text
from query.train import describe_training, train
from vecstore.config import Config
from vecstore.decam import ALL_CCDNAMES, focal_plane_positions
from vecstore.errors import BadInputError
from vecstore.models import Model
from vecstore.store import Store, remove_store
from vecstore.vocabulary import CATEGORIES, GOOD

RULES_SHOWN = ("paper", "calibrated")  # trained in this order: the calibrated model ends up CURRENT


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


@dataclass(frozen=True)
class Found:
    """Held-out exposures: how many truly bad ones a rule flagged, and how many good ones it flagged."""

    rule: str
    found: int
    bad: int
    false_alarms: int
    good: int

    def line(self) -> str:
        return (
            f"{self.rule} rule: found {self.found} of {self.bad} bad exposures "
            f"({self.false_alarms} false alarm{'' if self.false_alarms == 1 else 's'} among {self.good} good)"
        )


@dataclass
class DemoResult:
    embedder: str
    ccd_report: dict
    exposure_report: dict
    report_html: Path | None
    bad_list: Path
    focal_plane: Path | None
    texts: list[str] = field(default_factory=list)
    found: dict[str, Found] = field(default_factory=dict)
    exposure_reports: dict[str, dict] = field(default_factory=dict)
    held_out: set[int] = field(default_factory=set)
    good_list: Path | None = None
    truth: dict[int, str] = field(default_factory=dict)  # expnum -> simulator's label
    runs: dict[str, int] = field(default_factory=dict)  # rule -> classify run id


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


def write_known_good(sim, labelled: set[int], out: Path) -> Path:
    """The labelled exposures the simulator made good: what an inspector would list as known good."""
    good = sorted(e.expnum for e in sim.exposures if e.expnum in labelled and not e.category)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# exposures inspected and found good (from the simulator's truth)\n"
        + "".join(f"{e}\n" for e in good)
    )
    return out


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


@dataclass(frozen=True)
class HeldOutScores:
    """One classify run scored on the held-out exposures against the simulator's truth."""

    run_id: int
    ccd: dict  # classification_report of the rule's CCD labels
    exposure: dict  # classification_report of the exposure verdicts
    texts: list[str]
    top: dict  # classification_report of the CCDs' top class
    found: tuple[int, int, int, int]  # see found_counts


def score_held_out(store: Store, sim, held_out: set[int], run_id: int) -> HeldOutScores:
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
        format_report(top_report, f"held-out CCDs ({len(ccd_true)}): top class vs simulator truth"),
        format_report(ccd_report, f"held-out CCDs ({len(ccd_true)}): the rule's CCD label"),
        format_report(exp_report, f"held-out exposures ({len(exp_true)}): the vote vs simulator truth"),
    ]
    return HeldOutScores(run_id, ccd_report, exp_report, texts, top_report, found_counts(exp_true, exp_pred))


def found_counts(truth: list[str], predicted: list[str]) -> tuple[int, int, int, int]:
    """(bad found, bad, good flagged, good) over exposures: a flag of the wrong category still counts as
    found (the exposure is caught; the category report says whether it was named right)."""
    bad = [t != GOOD for t in truth]
    called = [p != GOOD for p in predicted]
    found = sum(b and c for b, c in zip(bad, called, strict=True))
    alarms = sum(c and not b for b, c in zip(bad, called, strict=True))
    return found, sum(bad), alarms, len(bad) - sum(bad)


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
        raise BadInputError(
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
            IngestOptions.from_config(  # the [ingest] section (batch size...), with the demo's choices
                config.ingest,
                release="sim",
                embedder=name,
                weights=options.weights,
                workers=options.workers,
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
        good_list = write_known_good(sim, labelled, data / "labels-train" / "known-good.txt")
        echo(f"      {good_list.name}: the labelled exposures inspected as good (vec train --good-from)")
        scored = {}
        for rule in RULES_SHOWN:
            trained = train(store, config, rule=rule, good_from=str(good_list))
            echo(f"[5/7] {describe_training(trained)}".replace("\n", "\n      "))
            run = classify_all(store, Model.for_rule(store, rule), config.classify)
            scored[rule] = score_held_out(store, sim, held_out, run.run_id)
        evaluation = evaluate(store, config, store_path / "reports" / trained.version, method="tsne")
        echo("[6/7] classified the held-out exposures with both rules")
        run_id = scored["calibrated"].run_id
        bad_list = data / "vec-bad_expid.txt"
        bad_list.write_text(badexp_text(bad_exposures(store, run_id)))
        focal = _focal_plane_page(store, run_id, store_path / "reports" / "focal-plane.html")
        example = _example_ids(store, run_id)
    echo("[7/7] results")
    found = {rule: Found(rule, *scored[rule].found) for rule in RULES_SHOWN}
    for rule in RULES_SHOWN:
        echo(f"--- {rule} rule ---")
        for text in scored[rule].texts:
            echo(text + "\n")
    echo(f"report (cross-validation, 3-D t-SNE, clusters): {evaluation.html}")
    echo(f"bad exposures found, in decam-bad_expid.txt format: {bad_list}")
    if focal:
        echo(f"focal-plane page of a flagged exposure: {focal}")
    echo("")
    for rule in RULES_SHOWN:
        echo(found[rule].line())
    echo(next_steps(store_path, *example))
    calibrated = scored["calibrated"]
    return DemoResult(
        name,
        calibrated.ccd,
        calibrated.exposure,
        evaluation.html,
        bad_list,
        focal,
        [t for rule in RULES_SHOWN for t in scored[rule].texts],
        found,
        {rule: scored[rule].exposure for rule in RULES_SHOWN},
        held_out,
        good_list,
        {e.expnum: e.label for e in sim.exposures},
        {rule: scored[rule].run_id for rule in RULES_SHOWN},
    )


def _example_ids(store: Store, run_id: int) -> tuple[int | None, str | None]:
    """A flagged exposure of the run and one of its CCDs, for the next-steps block."""
    row = store.query(
        "SELECT p.expnum, c.ccdname FROM exposure_predictions p JOIN ccd_predictions c "
        "ON c.run_id = p.run_id AND c.expnum = p.expnum WHERE p.run_id = ? AND p.is_bad AND c.is_bad "
        "ORDER BY p.mean_prob DESC, c.prob DESC LIMIT 1",
        [run_id],
    ).to_pylist()
    return (row[0]["expnum"], row[0]["ccdname"]) if row else (None, None)


def next_steps(store_path: Path, expnum: int | None, ccdname: str | None) -> str:
    """What to type next, with ids that exist in this store."""
    steps = [
        ("source .venv/bin/activate", "puts `vec` on PATH"),
        (f"export VEC_STORE={store_path}", f"or pass --store {store_path} to every command"),
    ]
    exposure = str(expnum) if expnum is not None else "EXPNUM"
    if expnum is not None:
        steps += [
            (f"vec classify {expnum}", "why it was flagged: each CCD and its neighbours"),
            (f"vec similar {expnum}/{ccdname} -k 10", "look-alikes of a flagged CCD"),
        ]
    steps += [
        (f"vec classify --rule paper {exposure}", "the same exposure by the paper's rule"),
        ('vec sql "SELECT category, count(*) FROM exposure_predictions WHERE is_bad GROUP BY ALL"', ""),
    ]
    width = max(len(command) for command, why in steps if why)
    lines = ["", "next steps:"]
    lines += [f"  {command:<{width}}  # {why}" if why else f"  {command}" for command, why in steps]
    return "\n".join(lines)


def _focal_plane_page(store: Store, run_id: int, out: Path) -> Path | None:
    from query.reports.pictures import focal_plane_picture

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

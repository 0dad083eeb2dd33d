"""CCD size benchmark: what a model trained on CCDs of one size makes of new files with CCDs of another.

The demo's protocol (``vec demo``, default: seed 0, 1024 x 512 CCDs) trains the calibrated rule; then
exposures simulated with another seed on another set of 8 CCDs are classified as new FILEs at three
sizes: half the references' rows and columns (a quarter of the area), the same, and twice (four times the
area). For each size it prints exposure accuracy with its 95% interval, bad precision and recall, the
false alarms among the good exposures, and how many files ``vec classify`` warned about (a CCD whose area
is not within 25% of a reference CCD's: :mod:`query.ccd_size`).

    python bench/ccd_size_bench.py [--quick]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.classify_bench import scores  # noqa: E402
from bench.common import Report, Table, log, parse_args  # noqa: E402
from ingest.simulate.survey import simulate_survey  # noqa: E402
from query.classify import classify_file  # noqa: E402
from vecstore.cli.demo import DemoOptions, central_ccds, run_demo  # noqa: E402
from vecstore.config import Config  # noqa: E402
from vecstore.models import Model  # noqa: E402
from vecstore.store import Store  # noqa: E402
from vecstore.vocabulary import GOOD  # noqa: E402

SCALES = (0.5, 1.0, 2.0)  # of the references' rows and columns


def demo_options(quick: bool) -> tuple[DemoOptions, int]:
    """The trained store's options and how many new exposures to simulate at each size."""
    if quick:
        return DemoOptions(exposures=32, ccd_shape=(256, 128), ccds_per_exposure=4, workers=0), 6
    return DemoOptions(), 60


def size_row(store: Store, model: Model, sim, config: Config) -> dict:
    """Scores of the new files of one size, their false alarms, and the files warned about."""
    truth, predicted, warned = [], [], 0
    for exposure in sim.exposures:
        result = classify_file(store, model, exposure.path, config.classify)[0]
        truth.append(exposure.label)
        predicted.append(result.verdict.category)
        warned += bool(result.warnings)
    out = scores(truth, predicted)
    out["good"] = sum(t == GOOD for t in truth)
    out["false_alarms"] = sum(t == GOOD and p != GOOD for t, p in zip(truth, predicted, strict=True))
    out["warned"] = warned
    return out


def run(options: DemoOptions, n_new: int, root: Path, config: Config) -> dict[str, dict]:
    log(f"demo protocol: seed {options.seed}, CCDs of {options.ccd_shape[0]}x{options.ccd_shape[1]}")
    run_demo(root / "store", dataclasses.replace(options, fresh=True), config, echo=lambda _: None)
    ccdnames = central_ccds(options.ccds_per_exposure * 2)[options.ccds_per_exposure :]
    rows = {}
    with Store.open(root / "store", writable=True, config=config) as store:
        model = Model.for_rule(store, "calibrated")
        for scale in SCALES:
            shape = (int(options.ccd_shape[0] * scale), int(options.ccd_shape[1] * scale))
            name = f"{shape[0]}x{shape[1]}"
            log(f"{n_new} new exposures of {name} CCDs, classified as new files")
            sim = simulate_survey(
                root / f"new-{name}",
                n_new,
                ccd_shape=shape,
                ccdnames=ccdnames,
                seed=options.seed + 100,
                bad_fraction=options.bad_fraction,
                first_expnum=990000,
            )
            rows[name] = {"area": scale * scale, **size_row(store, model, sim, config)}
    return rows


def size_table(options: DemoOptions, rows: dict[str, dict]) -> Table:
    reference = f"{options.ccd_shape[0]}x{options.ccd_shape[1]}"
    table = Table(
        f"new files of other CCD sizes, classified by a model trained on {reference} CCDs (calibrated rule)",
        [
            "new-file CCDs",
            "area / references'",
            "n",
            "accuracy",
            "95% interval",
            "bad precision",
            "bad recall",
            "false alarms",
            "files warned",
        ],
    )
    for name, s in rows.items():
        table.add(
            name,
            f"{s['area']:g}",
            s["n"],
            f"{s['accuracy']:.2f}",
            "{:.2f}-{:.2f}".format(*s["accuracy_95"]),
            f"{s['precision']:.2f}",
            f"{s['recall']:.2f}",
            f"{s['false_alarms']} of {s['good']}",
            f"{s['warned']} of {s['n']}",
        )
    table.notes.append(
        "files warned: vec classify warned that a CCD's area is not within 25% of a reference CCD's"
    )
    return table


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    options, n_new = demo_options(args.quick)
    report = Report("ccd_size_bench", args, {"reference_shape": list(options.ccd_shape), "new": n_new})
    with tempfile.TemporaryDirectory(prefix="vec-ccd-size-bench-") as tmp:
        rows = run(options, n_new, Path(tmp), Config())
    report.raw["rows"] = rows
    report.tables.append(size_table(options, rows))
    report.finish()


if __name__ == "__main__":
    main()

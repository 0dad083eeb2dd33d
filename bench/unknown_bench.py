"""Unknown-artifact benchmark: is a kind of artifact never labelled flagged "unknown"?

The demo's protocol (simulate, ingest with ``qa``, label 60 % of the exposures, known-good list) once;
then, for each artifact category in turn, a copy of the store loses every label of that category, a
calibrated model is trained without it, and the category's exposures are classified. A CCD is flagged
unknown when its k-th neighbour is farther than the 0.99 quantile of held-out labelled CCDs' k-th
neighbour distances (cross-validation). The table compares the share of the held-out category's CCDs that
are flagged unknown with the share of the held-out good exposures' CCDs flagged (the false-alarm rate),
and says how many of the category's exposures were still called bad (the calibrated rule's p_bad does not
need the category to be known).

    python bench/unknown_bench.py [--quick]
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Report, Table, log, parse_args  # noqa: E402
from query.classify import classify_exposures  # noqa: E402
from query.train import train  # noqa: E402
from vecstore.cli.demo import DemoOptions, run_demo  # noqa: E402
from vecstore.config import Config  # noqa: E402
from vecstore.models import Model  # noqa: E402
from vecstore.store import Store  # noqa: E402
from vecstore.vocabulary import CATEGORIES, GOOD  # noqa: E402


def held_out_category(root: Path, demo, category: str, config: Config) -> dict:
    """Train without ``category``'s labels on a copy of the demo store; classify its exposures."""
    copy = root / f"without-{category}"
    shutil.copytree(root / "store", copy)
    with Store.open(copy, writable=True, config=config) as store:
        with store.transaction() as con:
            con.execute("DELETE FROM labels WHERE category = ?", [category])
        train(store, config, rule="calibrated", good_from=str(demo.good_list))
        model = Model.current(store)
        targets = sorted(e for e, label in demo.truth.items() if label == category)
        good = sorted(e for e in demo.held_out if demo.truth[e] == GOOD)
        results = {
            e: r
            for e, r in zip(
                targets + good, classify_exposures(store, model, targets + good, config.classify), strict=True
            )
        }
    shutil.rmtree(copy)
    share = lambda expnums: _unknown_share([results[e] for e in expnums])  # noqa: E731
    return {
        "category": category,
        "exposures": len(targets),
        "unknown_ccds": share(targets),
        "good_unknown_ccds": share(good),
        "exposures_with_unknown": sum(any(c.unknown for c in results[e].ccds) for e in targets),
        "called_bad": sum(results[e].verdict.is_bad for e in targets),
        "good_exposures": len(good),
    }


def _unknown_share(results) -> float:
    ccds = [c for r in results for c in r.ccds]
    return sum(c.unknown for c in ccds) / max(len(ccds), 1)


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    options = (
        DemoOptions(exposures=44, ccd_shape=(256, 128), ccds_per_exposure=4, workers=0)
        if args.quick
        else DemoOptions()
    )
    categories = CATEGORIES[:3] if args.quick else CATEGORIES
    config = Config()
    report = Report("unknown_bench", args, {"demo": dataclasses.asdict(options)})
    rows = []
    with tempfile.TemporaryDirectory(prefix="vec-unknown-bench-") as tmp:
        root = Path(tmp)
        log("demo protocol")
        demo = run_demo(root / "store", options, config, echo=lambda _: None)
        for category in categories:
            log(f"without {category}")
            rows.append(held_out_category(root, demo, category, config))
    table = Table(
        "one category held out of training entirely: its CCDs flagged unknown vs good CCDs flagged",
        [
            "held-out category",
            "exposures",
            "its CCDs unknown",
            "good CCDs unknown",
            "exposures with an unknown CCD",
            "still called bad",
        ],
    )
    for r in rows:
        table.add(
            r["category"],
            r["exposures"],
            f"{r['unknown_ccds']:.1%}",
            f"{r['good_unknown_ccds']:.1%}",
            f"{r['exposures_with_unknown']} of {r['exposures']}",
            f"{r['called_bad']} of {r['exposures']}",
        )
    table.notes += [
        "good CCDs: the held-out good exposures' CCDs classified by the same model (the false-alarm rate)",
        "unknown = k-th neighbour farther than the 0.99 quantile of held-out labelled CCDs "
        "(train.unknown_quantile)",
    ]
    report.raw["rows"] = rows
    report.tables.append(table)
    report.finish()


if __name__ == "__main__":
    main()

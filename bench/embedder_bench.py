"""Per-category precision and recall of embedders on the simulator's held-out exposures, in one run.

The weight-free ``qa`` embedder against a random-weight ViT (``test_vit``, the architecture without
training: what a ViT gives before it has learned anything) and their hybrid. Same simulated survey, same
labelled subset, same training settings and vote; only the vectors differ.

    python bench/embedder_bench.py [--quick] [--exposures 120] [--ccds 16] [--shape 512x256]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ingest.engine.driver import IngestOptions
from ingest.engine.local import ingest
from ingest.labels.importer import import_labels
from ingest.labels.rules import CATEGORIES
from ingest.simulate.survey import simulate_survey
from query.classify import classify_all
from query.train import train
from vecstore.cli.demo import _split_exposures, central_ccds, score_held_out, write_training_labels
from vecstore.config import Config
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import GOOD

EMBEDDERS = ("qa", "test_vit", "test_vit+qa")


def run_one(name: str, sim, data: Path, root: Path, labelled: set[int], held_out: set[int]) -> dict:
    started = time.perf_counter()
    with Store.create(root / name) as store:
        ingest(store, [data], IngestOptions(release="sim", embedder=name, workers=2, batch_size=16))
        for path, source in write_training_labels(sim, labelled, root / f"labels-{name}"):
            import_labels(store, path, source)
        train(store, Config())
        run = classify_all(store, Model.current(store), Config().classify)
        scores = score_held_out(store, sim, held_out, run.run_id)
    return {
        "ccd_top": scores.top,
        "ccd": scores.ccd,
        "exposure": scores.exposure,
        "seconds": time.perf_counter() - started,
    }


def table(results: dict[str, dict], level: str) -> str:
    names = list(results)
    head = f"{'category':<22}" + "".join(f"{n + ' P':>14}{n + ' R':>14}" for n in names)
    what = {
        "ccd_top": "CCDs, top class (no cut)",
        "ccd": "CCDs, the calibrated rule's label",
        "exposure": "exposures, vote",
    }
    lines = [f"{what[level]}: precision (P) and recall (R) on held-out data", head, "-" * len(head)]
    for category in (GOOD, *CATEGORIES):
        cells = []
        for n in names:
            row = results[n][level].get(category)
            cells.append(f"{row['precision']:>14.2f}{row['recall']:>14.2f}" if row else f"{'-':>14}{'-':>14}")
        support = next(
            (results[n][level][category]["support"] for n in names if category in results[n][level]), 0
        )
        lines.append(f"{category:<22}" + "".join(cells) + f"   (n={int(support)})")
    averages = [results[n][level]["macro avg"] for n in names]
    macro = "".join(f"{a['precision']:>14.2f}{a['recall']:>14.2f}" for a in averages)
    lines.append(f"{'macro avg':<22}{macro}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--exposures", type=int, default=120)
    parser.add_argument("--ccds", type=int, default=16)
    parser.add_argument("--shape", default="512x256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    n, ccds, shape = (
        (24, 6, (128, 64))
        if args.quick
        else (args.exposures, args.ccds, tuple(int(v) for v in args.shape.split("x")))
    )
    root = Path(tempfile.mkdtemp(prefix="vec-embedder-compare-"))
    try:
        sim = simulate_survey(
            root / "sim", n, ccd_shape=shape, ccdnames=central_ccds(ccds), seed=args.seed, bad_fraction=0.45
        )
        labelled, held_out = _split_exposures([e.expnum for e in sim.exposures], 0.6, args.seed)
        results = {name: run_one(name, sim, root / "sim", root, labelled, held_out) for name in EMBEDDERS}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"simulated survey: {n} exposures x {ccds} CCDs of {shape[0]}x{shape[1]} px, seed {args.seed}; "
        f"{len(labelled)} labelled, {len(held_out)} held out"
    )
    print(table(results, "ccd_top"))
    print()
    print(table(results, "ccd"))
    print()
    print(table(results, "exposure"))
    print(
        "seconds per embedder (ingest + train + classify): "
        + ", ".join(f"{k} {v['seconds']:.0f}" for k, v in results.items())
    )
    out = args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / f"embedder_bench{'.quick' if args.quick else ''}.json").write_text(
        json.dumps(
            {
                k: {"ccd": v["ccd"], "exposure": v["exposure"], "seconds": v["seconds"]}
                for k, v in results.items()
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

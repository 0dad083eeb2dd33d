"""What the two-space vote costs at classification time: one space's k-NN search against two.

The demo protocol builds its store and trains the default (``auto``: the robust+quantile vote); the
calibrated rule is then retrained on the same labels with ``postprocess.method = "robust"`` (one space).
Both models classify every CCD of the store through ``classify_vectors`` (post-processing, exact L1
k-NN over the reference CCDs with the exposure left out, the vote, the rule), interleaved so both share
the machine's load; the table gives the best and median of the repeats and their ratio.

    python bench/vote_cost_bench.py [--quick]      # about 4 minutes; --quick: seconds
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Report, Table, best, elapsed, interleaved, log, median, parse_args, ratio  # noqa: E402
from query.classify import classify_vectors  # noqa: E402
from query.train import train  # noqa: E402
from vecstore.cli.demo import DemoOptions, run_demo  # noqa: E402
from vecstore.config import Config, PostprocessConfig  # noqa: E402
from vecstore.models import Model  # noqa: E402
from vecstore.store import Store  # noqa: E402
from vecstore.vocabulary import expnum_of  # noqa: E402


def options(quick: bool) -> DemoOptions:
    if quick:
        return DemoOptions(exposures=32, ccd_shape=(256, 128), ccds_per_exposure=4, workers=0, fresh=True)
    return DemoOptions(fresh=True)


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    config = Config()
    demo_options = options(args.quick)
    report = Report("vote_cost_bench", args, {"demo": dataclasses.asdict(demo_options)})
    with tempfile.TemporaryDirectory(prefix="vec-vote-cost-bench-") as tmp:
        path = Path(tmp) / "store"
        log("demo protocol (trains the default: the two-space vote)")
        demo = run_demo(path, demo_options, config, echo=lambda _: None)
        with Store.open(path, writable=True, config=config) as store:
            vote = Model.for_rule(store, "calibrated")
            log("the calibrated rule again, robust scaling alone")
            robust = dataclasses.replace(config, postprocess=PostprocessConfig(method="robust"))
            single = Model(
                store, train(store, robust, rule="calibrated", good_from=str(demo.good_list)).version
            )
            ids, vectors = store.load_embeddings()
            expnums = expnum_of(ids)
            models = {"robust alone (one space)": single, "robust+quantile vote (default)": vote}
            runs = {
                name: (
                    lambda m=model: elapsed(
                        lambda: classify_vectors(store, m, vectors, config.classify, expnums)
                    )
                )
                for name, model in models.items()
            }
            seconds = interleaved(runs, 3 if args.quick else 7)
            n_refs = len(vote.reference_labels()[0])
    report.raw = {"seconds": seconds, "ccds": len(ids), "references": n_refs}
    table = Table(
        f"classifying {len(ids):,} CCDs against {n_refs:,} reference CCDs (k = {config.classify.k})",
        ["model", "best ms", "median ms", "CCDs/s (best)", "vs one space"],
    )
    baseline = best(next(iter(seconds.values())))
    for name, values in seconds.items():
        table.add(
            name,
            f"{best(values) * 1e3:.1f}",
            f"{median(values) * 1e3:.1f}",
            f"{len(ids) / best(values):,.0f}",
            ratio(best(values), baseline),
        )
    report.tables.append(table)
    report.finish()


if __name__ == "__main__":
    main()

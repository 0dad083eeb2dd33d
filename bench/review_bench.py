"""Review benchmark: does labelling what ``vec review`` puts first buy accuracy faster than a random order?

On a simulated survey (the demo's simulator and the weight-free ``qa`` embedder), a test set of exposures is
held out and never labelled. Both arms start from the same few labelled exposures per class (bad ones as a
decam-bad_expid list, good ones as the ``--good-from`` list of inspected exposures), train the calibrated
rule, and score exposure accuracy (bad vs good) on the test set. Each round labels N more exposures from the
simulator's truth, the review arm taking ``review_queue``'s top N, the random arm a seeded random N of the
same unlabelled pool, and retrains. It prints accuracy against labels spent for both orders and writes a
PNG of the two curves to the results directory.

    python bench/review_bench.py [--quick]
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Report, Table, log, parse_args  # noqa: E402
from ingest.engine.driver import IngestOptions  # noqa: E402
from ingest.engine.local import ingest  # noqa: E402
from ingest.labels.importer import import_labels  # noqa: E402
from ingest.simulate.survey import simulate_survey  # noqa: E402
from query.classify import classify_exposures  # noqa: E402
from query.review import review_queue  # noqa: E402
from query.train import train  # noqa: E402
from vecstore.cli.demo import central_ccds  # noqa: E402
from vecstore.config import Config, TrainConfig  # noqa: E402
from vecstore.errors import VecError  # noqa: E402
from vecstore.models import Model  # noqa: E402
from vecstore.store import Store  # noqa: E402
from vecstore.vocabulary import GOOD  # noqa: E402

ARMS = ("review", "random")


@dataclasses.dataclass(frozen=True)
class Setup:
    exposures: int
    ccds: int
    shape: tuple[int, int]
    start_per_class: int
    start_good: int
    rounds: int
    per_round: int
    test_fraction: float = 0.3
    seed: int = 0


def setup(quick: bool) -> Setup:
    if quick:
        return Setup(exposures=60, ccds=4, shape=(128, 64), start_per_class=2, start_good=6, rounds=2,
                     per_round=4)  # fmt: skip
    return Setup(exposures=240, ccds=8, shape=(512, 256), start_per_class=2, start_good=8, rounds=6,
                 per_round=10)  # fmt: skip


class Arm:
    """One arm's labels: bad exposures in a decam-bad_expid list, good ones in a --good-from file."""

    def __init__(self, name: str, store_path: Path, truth: dict[int, str]):
        self.name, self.path, self.truth = name, store_path, truth
        self.labelled: set[int] = set()
        self.good_file = store_path.parent / f"{name}-good.txt"

    def label(self, store: Store, expnums: list[int]) -> None:
        new = [e for e in expnums if e not in self.labelled]
        self.labelled |= set(new)
        bad = [e for e in new if self.truth[e] != GOOD]
        if bad:
            listing = self.path.parent / f"{self.name}-labels-{len(self.labelled)}.txt"
            listing.write_text("".join(f"{e}\t3\tvec:{self.truth[e]} reviewed\n" for e in bad))
            import_labels(store, listing, "decals-badexp")
        good = sorted(e for e in self.labelled if self.truth[e] == GOOD)
        self.good_file.write_text("".join(f"{e}\n" for e in good))


def accuracy(store: Store, model: Model, config: Config, test: list[int], truth: dict[int, str]) -> float:
    results = classify_exposures(store, model, test, config.classify)
    return float(np.mean([r.verdict.is_bad == (truth[r.expnum] != GOOD) for r in results]))


def run_arm(arm: Arm, config: Config, s: Setup, start: list[int], pool: list[int], test: list[int]) -> list:
    rng = np.random.default_rng([s.seed, 3])
    curve = []
    with Store.open(arm.path, writable=True, config=config) as store:
        arm.label(store, start)
        for round_ in range(s.rounds + 1):
            train(store, config, rule="calibrated", good_from=str(arm.good_file))
            model = Model.current(store)
            acc = accuracy(store, model, config, test, arm.truth)
            n_bad = sum(arm.truth[e] != GOOD for e in arm.labelled)
            curve.append(
                {"round": round_, "labels": len(arm.labelled), "bad_labelled": n_bad, "accuracy": acc}
            )
            log(f"{arm.name} round {round_}: {len(arm.labelled)} labelled, test accuracy {acc:.3f}")
            if round_ == s.rounds:
                break
            left = [e for e in pool if e not in arm.labelled]
            if arm.name == "review":
                queue = review_queue(
                    store, model, config.classify, s.per_round, exclude=set(test) | arm.labelled
                )
                chosen = [e.expnum for e in queue.entries]
            else:
                chosen = rng.choice(left, size=min(s.per_round, len(left)), replace=False).tolist()
            arm.label(store, chosen)
    return curve


def plot(curves: dict[str, list], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, curve in curves.items():
        ax.plot(
            [c["labels"] for c in curve], [c["accuracy"] for c in curve], marker="o", label=f"{name} order"
        )
    ax.set_xlabel("labelled exposures")
    ax.set_ylabel("test exposure accuracy")
    ax.set_title("vec review order vs random order")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    s = setup(args.quick)
    config = Config(train=TrainConfig(folds=3))  # few labelled exposures at the start: 3 grouped folds
    report = Report("review_bench", args, dataclasses.asdict(s))
    with tempfile.TemporaryDirectory(prefix="vec-review-bench-") as tmp:
        root = Path(tmp)
        log(f"simulating {s.exposures} exposures x {s.ccds} CCDs of {s.shape}")
        sim = simulate_survey(root / "data", s.exposures, ccd_shape=s.shape, ccdnames=central_ccds(s.ccds),
                              seed=s.seed, bad_fraction=0.6)  # fmt: skip
        truth = {e.expnum: e.label for e in sim.exposures}
        base = root / "base"
        with Store.create(base, config=config) as store:
            ingest(store, [root / "data"], IngestOptions.from_config(
                config.ingest, release="sim", embedder="qa", workers=0, seed=s.seed))  # fmt: skip
        rng = np.random.default_rng([s.seed, 5])
        order = rng.permutation(sorted(truth)).tolist()
        n_test = int(round(s.test_fraction * len(order)))
        test, pool = sorted(order[:n_test]), order[n_test:]
        start = [e for e in pool if truth[e] == GOOD][: s.start_good]
        for category in sorted({c for c in truth.values() if c != GOOD}):
            start += [e for e in pool if truth[e] == category][: s.start_per_class]
        curves = {}
        for name in ARMS:
            path = root / name / "store"
            shutil.copytree(base, path)
            try:
                curves[name] = run_arm(Arm(name, path, truth), config, s, start, pool, test)
            except VecError as exc:  # e.g. too few labels to train: say so in the table
                log(f"{name}: stopped: {exc}")
                curves.setdefault(name, [])
    table = Table(
        f"exposure accuracy on {n_test} held-out exposures against labels spent ({s.per_round} per round)",
        ["round", "labels", *(f"{a} accuracy" for a in ARMS), *(f"{a} bad labelled" for a in ARMS)],
    )
    for i in range(s.rounds + 1):
        rows = [curves[a][i] if i < len(curves[a]) else None for a in ARMS]
        table.add(
            i,
            rows[0]["labels"] if rows[0] else "-",
            *(f"{r['accuracy']:.3f}" if r else "-" for r in rows),
            *(r["bad_labelled"] if r else "-" for r in rows),
        )
    table.notes.append(
        f"start: {s.start_per_class} exposures per bad category + {s.start_good} good, same in both arms"
    )
    table.notes.append(
        "review arm: `vec review`'s top N each round; random arm: a seeded random N of the same pool"
    )
    png = plot(curves, args.results_dir / ("review_bench.quick.png" if args.quick else "review_bench.png"))
    if png:
        table.notes.append(f"plot: {png}")
    report.raw["curves"] = curves
    report.tables.append(table)
    report.finish()


if __name__ == "__main__":
    main()

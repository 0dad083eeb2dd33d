"""Review benchmark: does labelling what ``vec review`` puts first buy accuracy faster than a random order?

The demo's survey (``vec demo``'s simulator: 200 exposures x 8 CCDs of 1024x512, the weight-free ``qa``
embedder) is ingested once. Each replicate (a seed) holds out 30 % of the exposures as a test set that is
never labelled, and starts from the same few labelled exposures per class (one per bad category and four
good: labels spent while they are few is where an order can matter). Every round labels N more exposures
from the simulator's truth, exactly as the demo imports it (decam-bad_expid lines for exposure-level
problems, DELVE per-CCD lists for CCD-level ones; good ones as the ``--good-from`` list of inspected
exposures), retrains the calibrated rule and scores exposure accuracy (bad vs good) on the test set. The
review arm labels ``review_queue``'s top N; the random arm a seeded random N of the same unlabelled pool,
averaged over several random orders. Both arms start from the same labels, train with the same config and
draw from the same pool (checked as it runs). It prints the mean accuracy against labels spent, each
replicate's mean over the rounds after the start, and writes a PNG of the curves.

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
from vecstore.cli.demo import central_ccds, write_training_labels  # noqa: E402
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
    seeds: tuple[int, ...]  # replicates: each its own test set and start
    random_orders: int  # random orders per replicate, averaged
    test_fraction: float = 0.3
    survey_seed: int = 0
    bad_fraction: float = 0.6


def setup(quick: bool) -> Setup:
    if quick:
        return Setup(exposures=60, ccds=4, shape=(128, 64), start_per_class=1, start_good=4, rounds=2,
                     per_round=4, seeds=(0,), random_orders=1)  # fmt: skip
    return Setup(exposures=200, ccds=8, shape=(1024, 512), start_per_class=1, start_good=4, rounds=6,
                 per_round=5, seeds=(0, 1, 2, 3, 4, 5), random_orders=3)  # fmt: skip


class Arm:
    """One arm's labels: the simulator's truth lines of its bad exposures, its good ones in a --good-from
    file."""

    def __init__(self, name: str, store_path: Path, truth: dict[int, str], sim):
        self.name, self.path, self.truth, self.sim = name, store_path, truth, sim
        self.labelled: set[int] = set()
        self.good_file = store_path.parent / f"{name}-good.txt"
        self.batches = 0

    def label(self, store: Store, expnums: list[int]) -> None:
        new = {e for e in expnums if e not in self.labelled}
        self.labelled |= new
        self.batches += 1
        bad = {e for e in new if self.truth[e] != GOOD}
        if bad:
            out = self.path.parent / f"{self.name}-labels-{self.batches}"
            for path, source in write_training_labels(self.sim, bad, out):
                import_labels(store, path, source)
        good = sorted(e for e in self.labelled if self.truth[e] == GOOD)
        self.good_file.write_text("".join(f"{e}\n" for e in good))


def accuracy(store: Store, model: Model, config: Config, test: list[int], truth: dict[int, str]) -> float:
    results = classify_exposures(store, model, test, config.classify)
    return float(np.mean([r.verdict.is_bad == (truth[r.expnum] != GOOD) for r in results]))


@dataclasses.dataclass(frozen=True)
class Split:
    test: list[int]
    pool: list[int]
    start: list[int]


def split(truth: dict[int, str], s: Setup, seed: int) -> Split:
    """A seeded test set, the pool the arms label from, and the start: the first exposures of each class
    in the pool's seeded order."""
    order = np.random.default_rng([seed, 5]).permutation(sorted(truth)).tolist()
    n_test = int(round(s.test_fraction * len(order)))
    test, pool = sorted(order[:n_test]), order[n_test:]
    start = [e for e in pool if truth[e] == GOOD][: s.start_good]
    for category in sorted({c for c in truth.values() if c != GOOD}):
        start += [e for e in pool if truth[e] == category][: s.start_per_class]
    return Split(test, pool, start)


def run_arm(arm: Arm, config: Config, s: Setup, part: Split, order_seed: int | None) -> list[dict]:
    """Rounds of label, retrain, score. ``order_seed`` None: the review order; else that random order."""
    rng = np.random.default_rng([s.survey_seed, 3, order_seed or 0])
    test = set(part.test)
    curve = []
    with Store.open(arm.path, writable=True, config=config) as store:
        arm.label(store, part.start)
        for round_ in range(s.rounds + 1):
            train(store, config, rule="calibrated", good_from=str(arm.good_file))
            model = Model.current(store)
            acc = accuracy(store, model, config, part.test, arm.truth)
            n_bad = sum(arm.truth[e] != GOOD for e in arm.labelled)
            curve.append(
                {"round": round_, "labels": len(arm.labelled), "bad_labelled": n_bad, "accuracy": acc}
            )
            if round_ == s.rounds:
                break
            left = [e for e in part.pool if e not in arm.labelled]
            if order_seed is None:
                queue = review_queue(store, model, config.classify, s.per_round, exclude=test | arm.labelled)
                chosen = [e.expnum for e in queue.entries]
            else:
                chosen = rng.choice(left, size=min(s.per_round, len(left)), replace=False).tolist()
            # the measurement itself: both arms draw N new exposures from the same pool, never the test set
            if not set(chosen) <= set(left) or len(set(chosen)) != min(s.per_round, len(left)):
                raise AssertionError(f"{arm.name} chose {chosen}, not {s.per_round} of the unlabelled pool")
            arm.label(store, chosen)
    if arm.labelled & test:
        raise AssertionError(f"{arm.name} labelled test exposures {sorted(arm.labelled & test)[:5]}")
    log(f"{arm.name}: accuracy " + " ".join(f"{c['accuracy']:.3f}" for c in curve))
    return curve


def run_replicate(base: Path, root: Path, config: Config, s: Setup, sim, truth, seed: int) -> dict:
    part = split(truth, s, seed)
    curves: dict[str, list[list[dict]]] = {a: [] for a in ARMS}
    orders = {"review": [None], "random": [seed * 100 + r for r in range(s.random_orders)]}
    for name in ARMS:
        for order in orders[name]:
            path = root / f"seed{seed}-{name}-{order}" / "store"
            shutil.copytree(base, path)
            try:
                curves[name].append(run_arm(Arm(name, path, truth, sim), config, s, part, order))
            except VecError as exc:  # e.g. too few labels to train: say so in the table
                log(f"seed {seed} {name}: stopped: {exc}")
            shutil.rmtree(path.parent, ignore_errors=True)
    return {"seed": seed, "n_test": len(part.test), "start": len(part.start), "curves": curves}


def mean_curve(curves: list[list[dict]], key: str, rounds: int) -> list[float | None]:
    out = []
    for i in range(rounds + 1):
        values = [c[i][key] for c in curves if i < len(c)]
        out.append(float(np.mean(values)) if values else None)
    return out


def plot(replicates: list[dict], s: Setup, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    labels = [s.start_good + 11 * s.start_per_class + i * s.per_round for i in range(s.rounds + 1)]
    for name, colour in zip(ARMS, ("tab:blue", "tab:orange"), strict=True):
        per_seed = [mean_curve(r["curves"][name], "accuracy", s.rounds) for r in replicates]
        per_seed = [c for c in per_seed if None not in c]
        if not per_seed:
            continue
        for c in per_seed:
            ax.plot(labels, c, color=colour, alpha=0.25, linewidth=1)
        what = "vec review order" if name == "review" else f"random order (mean of {s.random_orders})"
        ax.plot(labels, np.mean(per_seed, axis=0), color=colour, marker="o", linewidth=2, label=what)
    ax.set_xlabel("labelled exposures")
    ax.set_ylabel("test exposure accuracy")
    ax.set_title(f"review vs random, {len(replicates)} seeds (thin: each seed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
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
                              seed=s.survey_seed, bad_fraction=s.bad_fraction)  # fmt: skip
        truth = {e.expnum: e.label for e in sim.exposures}
        base = root / "base"
        with Store.create(base, config=config) as store:
            ingest(store, [root / "data"], IngestOptions.from_config(
                config.ingest, release="sim", embedder="qa", workers=0, seed=s.survey_seed))  # fmt: skip
        replicates = []
        for seed in s.seeds:
            log(f"seed {seed}")
            replicates.append(run_replicate(base, root, config, s, sim, truth, seed))
    report.tables += tables(replicates, s)
    png = plot(replicates, s, args.results_dir / f"review_bench{'.quick' if args.quick else ''}.png")
    if png:
        report.tables[0].notes.append(f"plot: {png}")
    report.raw["replicates"] = replicates
    report.finish()


def tables(replicates: list[dict], s: Setup) -> list[Table]:
    n_test = replicates[0]["n_test"]
    curve = Table(
        f"exposure accuracy on {n_test} held-out exposures against labels spent ({s.per_round} per round), "
        f"mean of {len(replicates)} seeds",
        ["round", "labels", *(f"{a} accuracy" for a in ARMS), *(f"{a} bad labelled" for a in ARMS)],
    )
    means = {
        (a, key): [mean_curve(r["curves"][a], key, s.rounds) for r in replicates]
        for a in ARMS
        for key in ("accuracy", "bad_labelled", "labels")
    }

    def across(a: str, key: str, i: int) -> float | None:
        values = [c[i] for c in means[(a, key)] if c[i] is not None]
        return float(np.mean(values)) if values else None

    for i in range(s.rounds + 1):
        labels = across("random", "labels", i) or across("review", "labels", i)
        acc = [across(a, "accuracy", i) for a in ARMS]
        bad = [across(a, "bad_labelled", i) for a in ARMS]
        curve.add(
            i,
            f"{labels:.0f}" if labels is not None else "-",
            *(f"{v:.3f}" if v is not None else "-" for v in acc),
            *(f"{v:.1f}" if v is not None else "-" for v in bad),
        )
    curve.notes.append(
        f"start: {s.start_per_class} exposure per bad category + {s.start_good} good, the same in both "
        f"arms; labels from the simulator's truth as the demo imports them"
    )
    curve.notes.append(
        f"review arm: `vec review`'s top N each round; random arm: a seeded random N of the same pool, "
        f"mean of {s.random_orders} orders per seed; both retrain the calibrated rule (3 folds)"
    )
    per_seed = Table(
        f"mean accuracy over rounds 1-{s.rounds} (after the start), per seed",
        ["seed", *(f"{a}" for a in ARMS), "review - random"],
    )
    diffs = []
    for r, review, random in zip(
        replicates, means[("review", "accuracy")], means[("random", "accuracy")], strict=True
    ):
        if None in review[1:] or None in random[1:]:
            per_seed.add(r["seed"], "-", "-", "-")
            continue
        a, b = float(np.mean(review[1:])), float(np.mean(random[1:]))
        diffs.append(a - b)
        per_seed.add(r["seed"], f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}")
    if diffs:
        per_seed.notes.append(
            f"review ahead on {sum(d > 0 for d in diffs)} of {len(diffs)} seeds; mean difference "
            f"{np.mean(diffs):+.3f}"
        )
    return [curve, per_seed]


if __name__ == "__main__":
    main()

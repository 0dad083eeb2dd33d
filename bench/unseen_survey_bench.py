"""The default classifier on surveys no choice in vec was made on: held-out exposures and new files.

Each survey (a seed, CCD shape, CCDs per exposure and bad fraction none of the other benchmarks use) goes
through the demo protocol; the deployed calibrated model (default settings) then classifies the demo's 80
held-out exposures and 100 new FILEs simulated with another seed on other CCDs. Only the default is run,
nothing retrained, so a survey costs one demo. Run the same script at an older commit to compare versions
(the README quotes such a pair: before and after ``log_exptime``).

    python bench/unseen_survey_bench.py [--quick]    # about 11 minutes on 2 cores; --quick: seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.classify_bench import Setting, demo_and_new_files, run_each  # noqa: E402
from bench.common import Table, parse_args  # noqa: E402
from bench.space_vote_bench import counts, deployed_scores, survey, with_bad_counts  # noqa: E402
from bench.space_vote_bench import surveys as quick_surveys  # noqa: E402
from ingest.embedders.qa import QA_VERSION  # noqa: E402
from vecstore.config import Config  # noqa: E402
from vecstore.store import Store  # noqa: E402

GOAL = {"accuracy": 0.95, "precision": 0.95, "recall": 0.90}
PARTS = ("held_out", "new_files")


def surveys(quick: bool) -> list[Setting]:
    if quick:
        return quick_surveys(quick=True)
    return [
        survey(97, (576, 288), 9797, ccds=12),
        survey(113, (704, 352), 11311),
        survey(127, (960, 480), 12727, ccds=10, bad=0.5),
    ]


def run_survey(setting: Setting, root: Path, config: Config) -> dict:
    store_path, demo, new_sim = demo_and_new_files(setting, root, config)
    with Store.open(store_path, writable=True, config=config) as store:
        return with_bad_counts(deployed_scores(store, demo, new_sim, config), demo, new_sim)


def meets_goal(s: dict) -> bool:
    return all(s[key] >= limit for key, limit in GOAL.items())


def unseen_table(results: dict[str, dict]) -> Table:
    table = Table(
        f"the default calibrated model on unseen surveys ({QA_VERSION})",
        [
            "survey",
            "exposures",
            "n",
            "accuracy / precision / recall",
            "right",
            "false alarms",
            "misses",
            "goal",
        ],
    )
    pooled = {"n": 0, "right": 0, "false_alarms": 0, "misses": 0, "goal": 0}
    for name, parts in results.items():
        for part in PARTS:
            s = parts[part]
            c = counts(s)
            met = meets_goal(s)
            table.add(
                name,
                part.replace("_", "-"),
                s["n"],
                f"{s['accuracy']:.3f} / {s['precision']:.3f} / {s['recall']:.3f}",
                c["right"],
                c["false_alarms"],
                c["misses"],
                "met" if met else "-",
            )
            pooled["n"] += s["n"]
            pooled["goal"] += met
            for key in ("right", "false_alarms", "misses"):
                pooled[key] += c[key]
    sets = len(results) * len(PARTS)
    table.add(
        "pooled",
        "-",
        pooled["n"],
        "-",
        pooled["right"],
        pooled["false_alarms"],
        pooled["misses"],
        f"{pooled['goal']} of {sets}",
    )
    table.notes.append("goal: accuracy >= 0.95, bad precision >= 0.95, bad recall >= 0.90 (exposure level)")
    return table


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv)
    report, results = run_each("unseen_survey_bench", args, surveys(args.quick), run_survey)
    report.tables.append(unseen_table(results))
    report.finish()


if __name__ == "__main__":
    main()

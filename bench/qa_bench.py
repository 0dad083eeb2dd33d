"""Per-CCD work benchmark: CCDs/s of ``qa_features`` on full-size simulated CCDs vs reading them, and of
the other per-CCD steps (``cpu224`` preprocessing, a 256-px thumbnail).

Simulated 4094 x 2046 CCDs (sky, stars, galaxies, the odd satellite streak; Rice-compressed like fpack),
one process. Baseline: ``read_ccd`` (open the file, decompress one HDU, checks); measured: ``qa_features``
on the pixels already in memory, as the ``qa`` embedder calls it (with the exposure time). The first table
shows what fraction of read + qa the features take; the second, the steps a ViT ingest and the HTML pages
spend per CCD. (These timings were once asserted by unit tests; timings live here, not in tests.)

    python bench/qa_bench.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    Report,
    Table,
    best,
    elapsed,
    interleaved,
    log,
    ms,
    parse_args,
    percent,
    rate,
    ratio,
    repeats_for,
    secs,
    timed,
)
from ingest.embedders.qa_features import qa_features  # noqa: E402
from ingest.preprocess import preprocess  # noqa: E402
from ingest.reader import CCDTask, list_ccd_hdus, read_ccd  # noqa: E402
from ingest.simulate.survey import simulate_survey  # noqa: E402
from query.reports.thumbnails import thumbnail_png  # noqa: E402


@dataclass(frozen=True)
class Inputs:
    n_exposures: int
    ccdnames: tuple[str, ...]
    ccd_shape: tuple[int, int]


FULL = Inputs(2, ("N4", "N10", "S4", "S10"), (4094, 2046))
QUICK = Inputs(1, ("N4", "S4"), (512, 256))


def simulated_tasks(directory: Path, inputs: Inputs) -> list[CCDTask]:
    result = simulate_survey(
        directory,
        inputs.n_exposures,
        ccd_shape=inputs.ccd_shape,
        ccdnames=inputs.ccdnames,
        bad_fraction=0.0,
        seed=5,
    )
    return [CCDTask(str(e.path), hdu) for e in result.exposures for hdu in list_ccd_hdus(e.path)]


def time_reads(tasks: list[CCDTask]) -> float:
    return sum(elapsed(lambda task=task: read_ccd(task)) for task in tasks)


def time_qa(images: list[tuple[np.ndarray, float | None]]) -> float:
    return sum(elapsed(lambda p=pixels, t=exptime: qa_features(p, exptime=t)) for pixels, exptime in images)


def time_each(images: list[tuple[np.ndarray, float | None]], step) -> float:
    return sum(elapsed(lambda p=pixels: step(p)) for pixels, _ in images)


OTHER_STEPS = {
    "preprocess cpu224": lambda pixels: preprocess(pixels, "cpu224"),
    "thumbnail_png 256": lambda pixels: thumbnail_png(pixels, max_size=256),
}


def steps_table(n: int, seconds: dict[str, list[float]], repeats: int) -> Table:
    read = best(seconds["read_ccd"])
    table = Table(
        f"Other per-CCD steps: {n} CCDs, best of {repeats}", ["step", "ms/CCD", "CCDs/s", "vs read"]
    )
    for name in OTHER_STEPS:
        step = best(seconds[name])
        table.add(name, ms(step / n), rate(n, step), ratio(step, read))
    table.notes += [
        "preprocess: the cpu224 preset (robust sky stretch, antialiased resize to 448 x 224, 3 channels), "
        "what a DataLoader worker does per CCD for dinov2; typically 15-30 ms for a full CCD on 2 cores",
        "thumbnail_png: the asinh-stretched 256-px PNG the focal-plane and gallery pages embed; "
        "typically under 0.3 s for a full CCD",
    ]
    return table


def qa_table(
    n: int, shape: tuple[int, int], seconds: dict[str, list[float]], repeats: int, simulate_s: float
):
    read, qa = best(seconds["read_ccd"]), best(seconds["qa_features"])
    rows, cols = shape
    table = Table(
        f"QA features: {n} simulated {rows}x{cols} CCDs, one process, best of {repeats}",
        ["step", "ms/CCD", "CCDs/s", "share of read+qa", "vs read"],
    )
    table.add("read_ccd (baseline)", ms(read / n), rate(n, read), percent(read / (read + qa)), "1.00x")
    table.add("qa_features", ms(qa / n), rate(n, qa), percent(qa / (read + qa)), ratio(qa, read))
    table.add("read + qa", ms((read + qa) / n), rate(n, read + qa), "100.0%", ratio(read + qa, read))
    table.notes += [
        "read_ccd: open the .fits.fz, decompress one HDU, headers -> metadata, non-finite checks",
        "qa_features(pixels, exptime) on pixels already in memory, as the qa embedder calls it; "
        "numpy/SEP with their default threading",
        f"pixels: simulate_survey(bad_fraction=0), Rice-compressed; {secs(simulate_s)} s to write, not timed",
    ]
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    inputs = QUICK if args.quick else FULL
    repeats = repeats_for(args, full=3, quick=1)
    n = inputs.n_exposures * len(inputs.ccdnames)
    report = Report(
        "qa_bench", args, {"ccds": n, "ccd_shape": inputs.ccd_shape, "repeats": repeats, "processes": 1}
    )
    with tempfile.TemporaryDirectory(prefix="vec-bench-qa-") as tmp:
        log(f"simulating {n} CCDs of {inputs.ccd_shape}")
        tasks, simulate_seconds = timed(lambda: simulated_tasks(Path(tmp), inputs))
        images = [(pixels, meta.exptime) for meta, pixels in (read_ccd(t) for t in tasks)]
        runs = {"read_ccd": lambda: time_reads(tasks), "qa_features": lambda: time_qa(images)}
        runs |= {name: lambda step=step: time_each(images, step) for name, step in OTHER_STEPS.items()}
        seconds = interleaved(runs, repeats)
    report.raw["seconds"] = seconds
    report.tables.append(qa_table(n, inputs.ccd_shape, seconds, repeats, simulate_seconds))
    report.tables.append(steps_table(n, seconds, repeats))
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest benchmark: CCDs/s of the model alone, of the full ``ingest()`` pipeline and of a paper-style loop.

For each model (``test_vit`` at preset ``tiny112``; the ViT-B/14 ``dinov2_vitb14_reg`` architecture with
random timm-layout weights at ``cpu224``), on simulated Rice-compressed full-size 4094 x 2046 CCDs:

(a) model forward alone on preprocessed batches (``TorchEmbedder.embed``, batch 8);
(b) the full ``ingest()``: DataLoader workers read FITS and preprocess, the main process runs the forward
    and commits each batch (same preset and batch size);
(c) a paper-style loop: batch 1, fp32, the FITS file reopened for every image (fitsio open, read one HDU,
    preprocess, forward one image).

    python bench/ingest_bench.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fitsio  # noqa: E402
import torch  # noqa: E402

from bench.common import (  # noqa: E402
    Report,
    Table,
    best,
    elapsed,
    interleaved,
    log,
    parse_args,
    rate,
    ratio,
    repeats_for,
    secs,
    timed,
)
from ingest.embedders import TorchEmbedder, create_embedder  # noqa: E402
from ingest.embedders.vit import build_dinov2_vit  # noqa: E402
from ingest.engine.driver import IngestOptions  # noqa: E402
from ingest.engine.local import ingest  # noqa: E402
from ingest.reader import CCDTask, list_ccd_hdus, read_ccd  # noqa: E402
from ingest.simulate.survey import simulate_survey  # noqa: E402
from vecstore.store import Store  # noqa: E402

BATCH_SIZE = 8
WORKERS = 2  # the config default (ingest.workers)
CCDNAMES = ("N4", "N5", "N10", "N11", "S4", "S5", "S10", "S11")


@dataclass(frozen=True)
class Inputs:
    n_exposures: int
    ccdnames: tuple[str, ...]
    ccd_shape: tuple[int, int]
    models: tuple[str, ...]


FULL = Inputs(2, CCDNAMES, (4094, 2046), ("test_vit", "dinov2_vitb14_reg"))
QUICK = Inputs(2, CCDNAMES[:4], (256, 128), ("test_vit",))
PRESETS = {"test_vit": "tiny112", "dinov2_vitb14_reg": "cpu224"}


# ----------------------------------------------------------------------------------------- inputs
def simulated_files(directory: Path, inputs: Inputs) -> list[Path]:
    """Good exposures (sky, stars, galaxies, the odd satellite streak), Rice-compressed like fpack."""
    result = simulate_survey(
        directory,
        inputs.n_exposures,
        ccd_shape=inputs.ccd_shape,
        ccdnames=inputs.ccdnames,
        bad_fraction=0.0,
        seed=11,
    )
    return [exposure.path for exposure in result.exposures]


def ccd_tasks(files: list[Path]) -> list[CCDTask]:
    return [CCDTask(str(path), hdu) for path in files for hdu in list_ccd_hdus(path)]


def random_vitb14_weights(directory: Path) -> Path:
    """A timm-layout state dict of the ViT-B/14 architecture with timm's random initialisation."""
    path = directory / "vitb14-random-timm.pth"
    torch.manual_seed(0)
    torch.save(build_dinov2_vit().state_dict(), path)
    return path


def build_embedder(name: str, weights_dir: Path) -> TorchEmbedder:
    weights = random_vitb14_weights(weights_dir) if name == "dinov2_vitb14_reg" else None
    return create_embedder(name, weights=weights, preset=PRESETS[name])


# ----------------------------------------------------------------------------------------- the three runs
def preprocessed_batches(embedder: TorchEmbedder, tasks: list[CCDTask]) -> tuple[list[torch.Tensor], float]:
    """(batches of preprocessed CCDs, seconds the serial read + preprocess took)."""
    images: list[torch.Tensor] = []

    def read_and_preprocess() -> None:
        for task in tasks:
            images.append(embedder.preprocess(read_ccd(task)[1]))

    seconds = elapsed(read_and_preprocess)
    batches = [torch.stack(images[i : i + BATCH_SIZE]) for i in range(0, len(images), BATCH_SIZE)]
    return batches, seconds


def time_forward(embedder: TorchEmbedder, batches: list[torch.Tensor]) -> float:
    return sum(elapsed(lambda batch=batch: embedder.embed(batch)) for batch in batches)


def time_ingest(embedder: TorchEmbedder, files: list[Path], store_root: Path, n_ccds: int) -> float:
    """Wall time of ``ingest()`` into a new store, the embedder already built (its load is not timed)."""
    store_dir = Path(tempfile.mkdtemp(dir=store_root, prefix="ingest-")) / "store"
    options = IngestOptions(
        release="bench",
        embedder=embedder.config.name,
        preset=embedder.preset.name,
        batch_size=BATCH_SIZE,
        workers=WORKERS,
    )
    with Store.create(store_dir) as store:
        summary, seconds = timed(lambda: ingest(store, [str(f) for f in files], options, embedder=embedder))
    if summary.ingested != n_ccds or summary.failed:
        raise RuntimeError(f"ingest embedded {summary.ingested} of {n_ccds} CCDs, {summary.failed} failed")
    return seconds


def time_paper_loop(embedder: TorchEmbedder, tasks: list[CCDTask]) -> float:
    """Batch 1, fp32: reopen the file for every image, read one HDU, preprocess, forward one image."""

    def run() -> None:
        for task in tasks:
            with fitsio.FITS(task.path) as fits:
                pixels = fits[task.hdu].read()
            embedder.embed(embedder.preprocess(pixels).unsqueeze(0))

    return elapsed(run)


# ----------------------------------------------------------------------------------------- one model
def bench_model(name: str, files: list[Path], root: Path, repeats: int, table: Table, report: Report) -> None:
    tasks = ccd_tasks(files)
    log(f"{name}: building the embedder")
    embedder = build_embedder(name, root)
    log(f"{name}: preprocessing {len(tasks)} CCDs for (a)")
    batches, prep_seconds = preprocessed_batches(embedder, tasks)
    runs = {
        "(c) paper loop": lambda: time_paper_loop(embedder, tasks),
        "(a) forward": lambda: time_forward(embedder, batches),
        "(b) ingest": lambda: time_ingest(embedder, files, root, len(tasks)),
    }
    seconds = interleaved(runs, repeats)
    report.raw[name] = {"seconds": seconds, "serial_read_preprocess_seconds": prep_seconds}
    forward, full, paper = (best(seconds[k]) for k in ("(a) forward", "(b) ingest", "(c) paper loop"))
    n = len(tasks)
    speedups = [p / b for p, b in zip(seconds["(c) paper loop"], seconds["(b) ingest"], strict=True)]
    table.notes.append(f"{name}: (b)/(c) in each repeat: {', '.join(f'{s:.2f}x' for s in speedups)}")
    table.add(
        name, embedder.preset.key, rate(n, forward), rate(n, full), rate(n, paper),
        ratio(paper, full), ratio(full, forward), rate(n, prep_seconds),
    )  # fmt: skip
    report.raw[name]["ccds"] = n


def empty_table(inputs: Inputs, repeats: int) -> Table:
    rows, cols = inputs.ccd_shape
    return Table(
        f"Ingest CCDs/s: {inputs.n_exposures * len(inputs.ccdnames)} simulated {rows}x{cols} Rice-compressed "
        f"CCDs ({inputs.n_exposures} exposures x {len(inputs.ccdnames)}), batch {BATCH_SIZE}, {WORKERS} "
        f"DataLoader workers, best of {repeats}",
        ["embedder", "preset", "(a) forward", "(b) ingest()", "(c) paper loop", "(b)/(c) speed-up",
         "(a)/(b) speed", "read+prep serial"],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    inputs = QUICK if args.quick else FULL
    repeats = repeats_for(args, full=3, quick=1)
    n_ccds = inputs.n_exposures * len(inputs.ccdnames)
    report = Report(
        "ingest_bench",
        args,
        {
            "exposures": inputs.n_exposures,
            "ccds": n_ccds,
            "ccd_shape": inputs.ccd_shape,
            "models": {m: PRESETS[m] for m in inputs.models},
            "batch_size": BATCH_SIZE,
            "workers": WORKERS,
            "torch_threads": torch.get_num_threads(),
            "repeats": repeats,
        },
    )
    table = empty_table(inputs, repeats)
    with tempfile.TemporaryDirectory(prefix="vec-bench-ingest-") as tmp:
        root = Path(tmp)
        log(f"simulating {n_ccds} CCDs of {inputs.ccd_shape}")
        files: list[Path] = []
        simulate_seconds = elapsed(lambda: files.extend(simulated_files(root / "raw", inputs)))
        for name in inputs.models:
            bench_model(name, files, root, repeats, table, report)
    table.notes += [
        "(a) TorchEmbedder.embed on preprocessed (N, 3, H, W) batches, fp32, torch threads = "
        f"{torch.get_num_threads()} (read + preprocess not timed)",
        "(b) ingest(): wall time of the call into a new store, embedder passed in (model load not timed)",
        "(c) fitsio.FITS(path)[hdu].read() + preprocess + embed one image, file reopened per CCD",
        "(b)/(c) = CCDs/s of ingest() over the paper loop's; (a)/(b) = forward-only rate over ingest()'s",
        "read+prep serial = read_ccd + preprocess in one process, no model (what the workers do), for scale",
        "dinov2_vitb14_reg: ViT-B/14 architecture with random timm-layout weights (speed only)",
        f"inputs: simulate_survey(bad_fraction=0) in {secs(simulate_seconds)} s, not timed",
    ]
    report.raw["files"] = [str(f.name) for f in files]
    report.tables.append(table)
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())

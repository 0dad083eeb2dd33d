"""Commands that put data in: ingest, simulate, and the demo that drives everything."""

from __future__ import annotations

from pathlib import Path

import typer

from vecstore.cli.app import EXIT_PARTIAL, ProgressBar, app, invocation
from vecstore.cli.options import (
    ccd_shape_option,
    choice_option,
    embedder_option,
    exposures_option,
    given,
    seed_option,
    weights_option,
    workers_option,
)
from vecstore.errors import BadInputError, VecError

# `vec demo` numbers its exposures from 900000 (the simulator's default); `vec simulate` starts above them,
# so a file simulated to try `vec classify FILE` on the demo store is a new exposure there. With the same
# number, the stored CCDs of that number would be left out as its own exposure (no self-votes).
SIMULATE_FIRST_EXPNUM = 950000


@app.command()
def ingest(
    ctx: typer.Context,
    sources: list[Path] = typer.Argument(
        ...,
        help="Directories of CP images (*.fits.fz, *.fits), survey-ccds FITS tables, or text lists of files.",
    ),
    release: str = typer.Option(..., "--release", help="Release tag stored with every CCD, e.g. dr10."),
    embedder: str | None = embedder_option("config: ingest.embedder"),
    preset: str | None = typer.Option(None, "--preset", help="Preprocess preset (default: the embedder's)."),
    weights: Path | None = weights_option(),
    devices: str | None = typer.Option(None, "--devices", help="cpu | cpu:N | cuda | cuda:0,1,..."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="CCDs per forward pass and commit."
    ),
    workers: int | None = workers_option(None),
    ccds_per_exposure: int | None = typer.Option(
        None,
        "--ccds-per-exposure",
        min=0,
        help="Embed this many CCDs per exposure (seeded draw; the paper: 20; 0 = all).",
    ),
    all_ccds: bool = typer.Option(
        False, "--all-ccds", help="Embed every CCD (overrides --ccds-per-exposure)."
    ),
    seed: int | None = seed_option(None, " of the per-exposure CCD draw"),
    on_bad_ccd: str | None = choice_option(
        None, "--on-bad-ccd", "skip", "error", help="skip records a failure row, error stops."
    ),
    image_root: Path | None = typer.Option(None, "--image-root", help="Root of image_filename in tables."),
    engine: str = choice_option("local", "--engine", "local", "ray"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster: auto | HOST:PORT (--engine ray)."
    ),
    ray_cpus: int | None = typer.Option(
        None,
        "--ray-cpus",
        min=1,
        help="CPUs of the local Ray instance started when --engine ray has no --address.",
    ),
    similar_index: bool | None = typer.Option(
        None,
        "--similar-index/--no-similar-index",
        help="At the end, build (or bring up to date) the label-free space `vec similar` searches before "
        "any model is trained. Default: only when the store has no trained model.",
        show_default=False,
    ),
) -> None:
    """Embed every CCD of the sources that the store does not have yet (resumable), with a progress bar.

    Every option left out comes from the [ingest] section of the config.
    Exit 0: all done; 3: done, but some CCDs failed (rows of the failures table); 1: nothing ingested.
    """
    from ingest.engine.driver import IngestOptions, check_sources_exist

    check_sources_exist(sources)  # before the store is created
    run = invocation(ctx)
    every_ccd = {"ccds_per_exposure": 0} if all_ccds else {}
    options = IngestOptions.from_config(run.config.ingest, **{**given(ctx, IngestOptions), **every_ccd})
    with run.create() as store, ProgressBar("ingest", "CCD") as bar:
        if engine == "ray":
            from ingest.engine.ray import ingest_ray

            summary = ingest_ray(
                store, sources, options, address=address, num_cpus=ray_cpus, progress=bar.update
            )
        else:
            from ingest.engine.local import ingest as run_ingest

            summary = run_ingest(store, sources, options, progress=bar.update)
        typer.echo(summary.describe())
        if summary.ingested + summary.skipped:
            _similar_index(store, run.config, similar_index)
    _report_failures(summary)


def _similar_index(store, config, wanted: bool | None) -> None:
    """The label-free corpus space, built or caught up now so that the first `vec similar` is quick:
    by default only when the store has no trained model (a model's own corpus space is searched then)."""
    import time

    from vecstore.corpus_space import LabelFreeSpace, label_free_space, space_dir
    from vecstore.models import SETTINGS, current_version

    if wanted is False or (wanted is None and current_version(store) is not None):
        return
    n = int(store.scalar("SELECT count(*) FROM ccds"))
    saved = (space_dir(store) / SETTINGS).exists()
    if saved and not LabelFreeSpace(store, space_dir(store)).is_stale(config):
        doing = f"adding new CCDs to the label-free space's index ({n:,} CCDs in the store)"
    else:
        doing = f"fitting the label-free space and indexing {n:,} CCDs"
    typer.echo(f"similar index: {doing} for `vec similar` (skip with --no-similar-index)")
    start = time.perf_counter()
    try:
        space = label_free_space(store, config)  # built, or fitted again when stale
        space.corpus_index()  # adds (and saves) CCDs committed since it was built
    except VecError as exc:  # e.g. too few CCDs to fit on: the ingest itself is done
        typer.echo(f"similar index: not built ({exc}); `vec similar` tries again on first use", err=True)
        return
    typer.echo(f"similar index: ready in {time.perf_counter() - start:.1f} s ({space.dir})")


def _report_failures(summary) -> None:
    """The first failures, and the exit code: EXIT_PARTIAL if some CCDs failed, EXIT_ERROR if every CCD
    failed (none ingested now or before)."""
    if not summary.failed:
        return
    for path, hdu, reason in summary.failures[:20]:
        typer.echo(f"  failed: {path} [{hdu}]: {reason}", err=True)
    see = f'vec sql "SELECT * FROM failures WHERE run_id = {summary.run_id}"'
    if summary.ingested + summary.skipped == 0:
        raise BadInputError(f"nothing ingested: all inputs failed ({summary.failed:,} failures); see: {see}")
    typer.echo(f"  {summary.failed:,} failed (exit code {EXIT_PARTIAL}); all of them: {see}", err=True)
    raise typer.Exit(EXIT_PARTIAL)


@app.command()
def simulate(
    out: Path = typer.Argument(..., help="Directory for the simulated exposures and truth lists."),
    exposures: int = exposures_option(20, "Number of exposures."),
    ccd_shape: str = ccd_shape_option("4094x2046", "DECam: 4094x2046"),
    ccds: str | None = typer.Option(None, "--ccds", help="Comma-separated CCD names (default: all alive)."),
    bad_fraction: float = typer.Option(
        0.4, "--bad-fraction", min=0.0, max=1.0, help="Share of exposures with an artifact."
    ),
    seed: int = seed_option(),
    first_expnum: int = typer.Option(
        SIMULATE_FIRST_EXPNUM,
        "--first-expnum",
        min=1,
        max=2**31 - 1,
        help="EXPNUM of the first exposure. The default leaves room below it for the demo store's "
        "(900000 on), so files simulated with it are new exposures to the demo's model, not its own.",
    ),
) -> None:
    """Write simulated DECam CP exposures (fpacked MEF) with known artifacts and their truth lists."""
    from ingest.simulate.survey import simulate_survey

    with ProgressBar("simulate", "exp") as bar:
        result = simulate_survey(
            out,
            exposures,
            ccd_shape=ccd_shape,
            bad_fraction=bad_fraction,
            seed=seed,
            ccdnames=ccds.split(",") if ccds else None,
            first_expnum=first_expnum,
            progress=bar.update,
        )
    typer.echo(result.describe())


@app.command()
def demo(
    ctx: typer.Context,
    exposures: int = exposures_option(200, "Simulated exposures."),
    ccd_shape: str = ccd_shape_option("1024x512", "full DECam: 4094x2046"),
    ccds_per_exposure: int = typer.Option(
        8, "--ccds-per-exposure", min=1, max=61, help="CCDs per exposure (up to 61)."
    ),
    ccds: int | None = typer.Option(None, "--ccds", min=1, max=61, hidden=True),  # the old name
    embedder: str | None = embedder_option("default: dinov2+qa with --weights, else qa"),
    weights: Path | None = weights_option(": DINOv2 for dinov2+qa"),
    workers: int = workers_option(2),
    seed: int = seed_option(),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the demo store and data first."),
) -> None:
    """vec's main job end to end on simulated DECam data: simulate, ingest, label, train, classify, report."""
    from vecstore.cli.demo import DemoOptions, run_demo

    run = invocation(ctx)
    options = DemoOptions(**{**given(ctx, DemoOptions), "ccds_per_exposure": ccds or ccds_per_exposure})
    run_demo(run.store, options, run.config, echo=typer.echo)

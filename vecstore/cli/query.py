"""Commands that read the store: train, evaluate, classify, similar, export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from vecstore.cli.app import ProgressBar, app, echo_json, invocation
from vecstore.cli.options import (
    RULES_HELP,
    accepted_by,
    choice_option,
    given,
    json_flag,
    k_option,
    output_option,
    probability_cut,
    rule_option,
    run_option,
    weights_option,
)
from vecstore.config import ClassifyConfig


@app.command()
def train(
    ctx: typer.Context,
    rule: str | None = rule_option(f"{RULES_HELP} [config: classify.rule]."),
    good_from: str | None = typer.Option(
        None,
        "--good-from",
        help="Exposures known to be good: a file of expnums, release:TAG, or a WHERE on the exposures table "
        "[config: train.good_from; default: unlabelled, uncut exposures].",
    ),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="With --rule paper: search the paper's space (HalvingRandomSearchCV, grouped CV).",
    ),
    n_iter: int | None = typer.Option(
        None, "--n-iter", min=1, help="Candidates drawn by --tune [config: train.tune_iterations]."
    ),
) -> None:
    """A new model: the reference CCDs the k-NN votes with, their post-processor and the decision rule."""
    from query.train import describe_training
    from query.train import train as run_train

    run = invocation(ctx)
    with run.open(writable=True) as store:
        result = run_train(store, run.config, rule=rule, good_from=good_from, tune=tune, n_iter=n_iter)
    typer.echo(describe_training(result))
    for note in result.training.notes:
        typer.echo(f"  note: {note}", err=True)


@app.command()
def evaluate(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Report directory (default: <store>/reports/<version>)."),
    method: str = choice_option("tsne", "--method", "tsne", "pca", help="3-D embedding of the plot."),
) -> None:
    """Classification report on the test split (CCDs and exposures), confusion matrix, HTML report."""
    from query.evaluate import evaluate as run_evaluate

    run = invocation(ctx)
    with run.open() as store:
        result = run_evaluate(store, run.config, out, method=method)
    for _, text in result.texts:
        typer.echo(text + "\n")
    typer.echo(f"report: {result.html}")


@app.command()
def classify(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(
        None, help="Exposure numbers in the store, or FITS files of new exposures."
    ),
    all_exposures: bool = typer.Option(
        False, "--all", help="Classify every unlabelled exposure into tables."
    ),
    release: str | None = typer.Option(
        None, "--release", help="With --all: only this release; with --add: the release tag of the new CCDs."
    ),
    run_id: int | None = run_option("With --all: resume this run id."),
    all_ccds: bool = typer.Option(False, "--all-ccds", help="Use every CCD instead of the seeded draw."),
    rule: str | None = rule_option(
        "Use the newest model trained for this rule [default: the current model]."
    ),
    k: int | None = k_option("Neighbours per CCD [config: classify.k]."),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Calibrated rule: CCD flagged at p_bad >= this [trained]."
    ),
    fraction: float | None = typer.Option(
        None, "--fraction", min=0.0, max=1.0, help="Calibrated rule: share of flagged CCDs that makes it bad."
    ),
    local_threshold: float | None = typer.Option(
        None,
        "--local-threshold",
        min=0.0,
        help="Calibrated rule: one CCD whose CCD-level classes (Bad_CCD, Noise...) reach this p makes its "
        "exposure bad; above 1 turns that off [trained].",
    ),
    prob_cut: float | None = typer.Option(
        None,
        "--prob-cut",
        callback=probability_cut,
        help="Paper rule: CCD bad at this probability, in (0, 1] [config: classify.prob_cut].",
    ),
    min_bad_ccds: int | None = typer.Option(
        None, "--min-bad-ccds", min=1, help="Paper rule: bad CCDs that make a bad exposure [3]."
    ),
    knn_device: str | None = typer.Option(
        None,
        "--knn-device",
        callback=accepted_by(ClassifyConfig, "knn_device"),
        help="Where the exact L1 search runs: auto (a GPU for >= 1000 CCDs when torch sees one), cpu, "
        "cuda or cuda:N [config: classify.knn_device].",
    ),
    weights: Path | None = weights_option(", to embed a new FILE"),
    add: bool = typer.Option(False, "--add", help="Also ingest a FILE into the store."),
    as_json: bool = json_flag("JSON with every CCD and its voting neighbours"),
    plot: Path | None = typer.Option(None, "--plot", help="Focal-plane picture: OUT.png or OUT.html."),
) -> None:
    """Is this exposure bad, and why? k-NN per CCD, the probability cut, then a vote over the exposure.

    A CCD whose size no reference CCD has (a cutout against full CCDs) is classified with a warning: its
    embedding is not comparable. Options named like a knob of the [classify] config section override it
    for this call.
    """
    from query.classify import classify_all, classify_targets
    from query.reports.pictures import focal_plane_pictures, format_classifications
    from vecstore.models import Model

    run = invocation(ctx)
    cfg = dataclasses.replace(run.config.classify, **given(ctx, run.config.classify))
    if all_exposures:
        with run.open(writable=True) as store, ProgressBar("classify", "exp") as bar:
            model = Model.for_rule(store, rule)
            summary = classify_all(store, model, cfg, release=release, run_id=run_id, progress=bar.update)
        typer.echo(summary.describe())
        return
    add_release = (release or "classify-add") if add else None
    with run.open(writable=add) as store:
        model = Model.for_rule(store, rule)
        results = classify_targets(
            store, model, targets, cfg, weights=weights, all_ccds=all_ccds, add_release=add_release
        )
        pictures = focal_plane_pictures(store, results, plot) if plot is not None else []
    if as_json:
        echo_json([r.as_dict() for r in results])
    else:
        typer.echo(format_classifications(results, pictures))


@app.command()
def similar(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="EXPNUM/CCDNAME (e.g. 1222425/N4), a ccd_id, or FILE[:HDU]."),
    k: int | None = k_option("How many look-alikes [config: similar.k]."),
    where: str | None = typer.Option(
        None, "--where", help="SQL filter on the ccds table, e.g. \"filter = 'r'\"."
    ),
    include_own_exposure: bool = typer.Option(
        False, "--include-own-exposure", help="Also return CCDs of the query's own exposure."
    ),
    per_exposure: int = typer.Option(
        0, "--per-exposure", min=0, help="At most this many CCDs of one exposure (0 = no limit)."
    ),
    html: Path | None = typer.Option(None, "--html", help="Write a gallery of thumbnails."),
    weights: Path | None = weights_option(", to embed a new FILE"),
    as_json: bool = json_flag(),
) -> None:
    """Find the CCDs that look most like this one (L1 on the corpus index), for artifact hunting.

    Works right after an ingest: with no trained model it searches a label-free corpus space (built on
    first use under <store>/models/unlabelled/); once a model exists, the model's corpus index.
    """
    from query.reports.pictures import format_similar, similar_gallery
    from query.similar import find_similar

    run = invocation(ctx)
    with run.open() as store:
        found = find_similar(
            store,
            None,
            reference,
            k or run.config.similar.k,
            where,
            weights,
            include_own_exposure=include_own_exposure,
            per_exposure=per_exposure,
        )
        if html is not None:
            similar_gallery(found.query, found.hits, html, query_pixels=found.pixels)
    if as_json:
        echo_json(
            {"query": found.query, "space": found.space, "neighbours": found.hits, "warnings": found.warnings}
        )
    else:
        typer.echo(format_similar(found, html))
        typer.echo(found.describe_space())


@app.command()
def export(
    ctx: typer.Context,
    fmt: str = choice_option("badexp", "--format", "badexp", "csv", "fits", short="-f"),
    run_id: int | None = run_option("Classification run (default: the latest)."),
    min_prob: float = typer.Option(
        0.0, "--min-prob", min=0.0, max=1.0, help="Only exposures whose mean probability reaches this."
    ),
    output: Path | None = output_option("Write to a file (needed for fits)."),
) -> None:
    """Bad exposures of a `classify --all` run as decam-bad_expid.txt lines, CSV or a FITS table."""
    from query.export import bad_exposures
    from query.export import export as run_export

    with invocation(ctx).open() as store:
        table = bad_exposures(store, run_id, min_prob)
    text = run_export(table, fmt, output)
    if text is None:
        typer.echo(f"{table.num_rows:,} bad exposures written to {output}")
    else:
        typer.echo(text, nl=False)

"""``vec nightly``: ingest a night's files, classify them, append the bad ones to a running list."""

from __future__ import annotations

from pathlib import Path

import typer

from vecstore.cli.app import app, invocation
from vecstore.cli.options import weights_option


@app.command()
def nightly(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="The night's CP images: a directory, FITS file or file list."),
    release: str = typer.Option(..., "--release", help="Release tag stored with the new CCDs."),
    list_file: Path | None = typer.Option(
        None, "--list", help="Running bad_expid-style list [default: <store>/nightly/vec-bad_expid.txt]."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Directory of the summary page [default: <store>/nightly/run-<RUN>]."
    ),
    weights: str | None = weights_option(", as the store was built with"),
) -> None:
    """Ingest what is new in SOURCE, classify it with the current model, append the bad exposures to a
    running list (one line each, never repeated) and write a one-page HTML summary.

    A second run on the same night adds nothing and says "nothing new".
    """
    from query.nightly import run_nightly

    run = invocation(ctx)
    with run.open(writable=True) as store:
        result = run_nightly(
            store, source, release, run.config.classify, list_file=list_file, out=out, weights=weights
        )
    typer.echo(result.describe())

"""``vec labels``: import label lists, summarise them."""

from __future__ import annotations

from pathlib import Path

import typer

from vecstore.cli.app import EXIT_ERROR, invocation, labels_app


@labels_app.command("import")
def labels_import(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Label files or DELVE directories."),
    source: str | None = typer.Option(
        None, "--source", help="decals-badexp | delve | des-fits | ccd-cuts (detected when unambiguous)."
    ),
    categories: Path | None = typer.Option(
        None, "--categories", help="Rules file (default: the categories.toml vec ships)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="List every unreadable line, note and refused file, not one summary."
    ),
) -> None:
    """Import legacypipe bad_expid lists, DELVE/DES exclude lists or survey-ccds ccd_cuts as labels.

    Unreadable lines are counted and summarised; a file that is mostly unreadable is refused (exit 1),
    and the other paths are still imported.
    """
    from ingest.labels.common import LabelFormatError
    from ingest.labels.importer import import_each, warning_lines
    from ingest.labels.rules import CategoryRules

    rules = CategoryRules.load(categories)
    with invocation(ctx).open(writable=True) as store:
        results = import_each(store, paths, source, rules)
    for result in results:
        if isinstance(result, LabelFormatError):
            typer.echo(f"error: {result}", err=True)
            continue
        typer.echo(result.describe())
        for line in warning_lines(result, verbose):
            typer.echo(f"  {line}", err=True)
    if any(isinstance(result, LabelFormatError) for result in results):
        raise typer.Exit(EXIT_ERROR)  # one refused path does not stop the others; the exit code says so


@labels_app.command("summary")
def labels_summary(ctx: typer.Context) -> None:
    """CCDs per category and source (the paper's Table 2) and the reasons no rule maps."""
    from query.labels import format_summary, labels_summary

    with invocation(ctx).open() as store:
        typer.echo(format_summary(labels_summary(store)))

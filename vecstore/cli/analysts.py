"""``vec labels add | show | export``: labels by analyst, side by side, and their consensus."""

from __future__ import annotations

from pathlib import Path

import typer

from vecstore.cli.app import echo_json, invocation, labels_app
from vecstore.cli.options import json_flag, output_option


@labels_app.command("add")
def labels_add(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="EXPNUM or EXPNUM/CCDNAME (e.g. 1222425 or 1222425/N4)."),
    category: str = typer.Argument(
        ..., help="One of the 11 categories (any case, e.g. psf, Ghost_Scatter) or good."
    ),
    analyst: str = typer.Option(..., "--analyst", help="Who says so (letters, digits, . _ @ -)."),
    note: str = typer.Option("", "--note", help="Free text kept with the verdict."),
) -> None:
    """Record one analyst's verdict on an exposure or a CCD; their second verdict replaces the first.

    Several analysts' verdicts are kept side by side and combine by [labels] consensus (majority: a tie
    is left out of training). `vec labels show EXPNUM` lists them.
    """
    from query.analysts import add_label

    with invocation(ctx).open(writable=True) as store:
        result = add_label(store, target, category, analyst, note)
    typer.echo(result.describe())


@labels_app.command("show")
def labels_show(
    ctx: typer.Context,
    expnum: str = typer.Argument(..., help="Exposure number."),
    as_json: bool = json_flag(),
) -> None:
    """Every label of one exposure: imported lists and analysts (source, note, time), and the consensus."""
    from query.analysts import exposure_labels, format_exposure_labels

    with invocation(ctx).open() as store:
        labels = exposure_labels(store, expnum)
    if as_json:
        echo_json(labels.as_dict())
    else:
        typer.echo(format_exposure_labels(labels))


@labels_app.command("export")
def labels_export(
    ctx: typer.Context,
    analyst: str | None = typer.Option(
        None, "--analyst", help="Only this analyst's own verdicts [default: the consensus per target]."
    ),
    output: Path | None = output_option("Write the decam-bad_expid lines to a file."),
    good: Path | None = typer.Option(
        None, "--good", help="Also write the exposures judged good, one per line (for train --good-from)."
    ),
) -> None:
    """The analysts' bad verdicts as decam-bad_expid.txt lines (`vec labels import` reads them back).

    Good verdicts are not bad lines: --good FILE lists them. Ties are left out (a count goes to stderr).
    """
    from query.analysts import export_labels, good_list_text

    with invocation(ctx).open() as store:
        exported = export_labels(store, analyst)
    if good is not None:
        good.write_text(good_list_text(exported.good))
        typer.echo(f"{len(exported.good):,} good exposure(s) written to {good}", err=True)
    elif exported.good:
        typer.echo(f"{len(exported.good):,} good exposure(s) not written (--good FILE lists them)", err=True)
    if exported.n_ties:
        typer.echo(f"{exported.n_ties:,} tie(s) left out (`vec labels summary` lists them)", err=True)
    if output is None:
        typer.echo(exported.text, nl=False)
    else:
        output.write_text(exported.text)
        typer.echo(f"{exported.n_bad:,} bad label line(s) written to {output}")

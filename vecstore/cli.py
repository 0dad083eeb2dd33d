"""The ``vec`` command: a thin Typer layer over the vecstore, ingest and query libraries.

Each command parses its arguments, calls one library function and formats the result. Every error vec
raises on purpose (:class:`vecstore.errors.VecError`) is printed on one line and exits with code 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from vecstore.config import Config, load_config
from vecstore.errors import VecError


class _VecGroup(TyperGroup):
    """Turns a VecError anywhere below into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VecError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


app = typer.Typer(
    cls=_VecGroup,
    help="vec: an embedding store and search tool that finds bad exposures in astronomical imaging surveys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


class _Context:
    def __init__(self, store: Path, config_path: Path | None):
        self.store = store
        self.config_path = config_path

    @property
    def config(self) -> Config:
        return load_config(self.config_path)


@app.callback()
def _root(
    ctx: typer.Context,
    store: Path = typer.Option(
        None,
        "--store",
        "-s",
        help="Store directory. Default: $VEC_STORE, else ./vecstore.",
        show_default=False,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file overlaying configs/default.toml (unknown keys are errors).",
        envvar="VEC_CONFIG",
    ),
) -> None:
    store = store or Path(os.environ.get("VEC_STORE") or "vecstore")
    ctx.obj = _Context(store, config)


def _obj(ctx: typer.Context) -> _Context:
    return ctx.obj


@app.command()
def init(ctx: typer.Context) -> None:
    """Create an empty store (a directory with a DuckDB catalog)."""
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.create(obj.store, config=obj.config) as store:
        typer.echo(f"store ready at {store.path}")


@app.command()
def info(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    verify: bool = typer.Option(False, "--verify", help="Read every embedding part and check ids."),
) -> None:
    """Counts, provenance, model versions and disk use of the store."""
    from vecstore.info import format_info, store_info
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        result = store_info(store, verify=verify)
    typer.echo(json.dumps(result, indent=1, default=str) if as_json else format_info(result))


@app.command()
def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="SQL over the catalog tables (exposures, ccds, labels, ...)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json | parquet"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file (needed for parquet)."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change the store."),
) -> None:
    """Run SQL (DuckDB) over the store's catalog. Read-only unless --write."""
    from vecstore.sql import render, run_sql

    obj = _obj(ctx)
    table = run_sql(obj.store, query, write=write, timeout_s=obj.config.store.lock_timeout_s)
    if table is None:
        typer.echo("ok")
        return
    text = render(table, fmt, output)
    if text is not None:
        typer.echo(text)


labels_app = typer.Typer(
    cls=_VecGroup, help="Import label lists and summarise them.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(labels_app, name="labels")


@labels_app.command("import")
def labels_import(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Label files or DELVE directories."),
    source: str | None = typer.Option(
        None, "--source", help="decals-badexp | delve | des-fits | ccd-cuts (detected when unambiguous)."
    ),
    categories: Path | None = typer.Option(
        None, "--categories", help="Rules file (configs/categories.toml)."
    ),
) -> None:
    """Import legacypipe bad_expid lists, DELVE/DES exclude lists or survey-ccds ccd_cuts as labels."""
    from ingest.categories import CategoryRules
    from ingest.label_import import import_labels
    from vecstore.store import Store

    obj = _obj(ctx)
    rules = CategoryRules.load(categories)
    with Store.open(obj.store, writable=True, config=obj.config) as store:
        for path in paths:
            result = import_labels(store, path, source, rules)
            typer.echo(
                f"{path}: {result.n_records:,} labels ({result.source}), {result.n_added:,} new, "
                f"{result.n_ignored:,} ignored by rule, {sum(n for *_, n in result.unmapped):,} unmapped"
            )
            for warning in result.warnings[:20]:
                typer.echo(f"  warning: {warning}", err=True)
            if len(result.warnings) > 20:
                typer.echo(f"  ... and {len(result.warnings) - 20} more warnings", err=True)


@labels_app.command("summary")
def labels_summary(ctx: typer.Context) -> None:
    """CCDs per category and source (the paper's Table 2) and the reasons no rule maps."""
    from query.labels import format_summary, labels_summary
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        typer.echo(format_summary(labels_summary(store)))


def main() -> None:
    app(prog_name="vec")


if __name__ == "__main__":
    sys.exit(main())

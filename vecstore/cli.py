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


def main() -> None:
    app(prog_name="vec")


if __name__ == "__main__":
    sys.exit(main())

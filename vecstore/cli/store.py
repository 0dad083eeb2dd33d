"""Commands on the store itself: init, info, compact, sql, merge."""

from __future__ import annotations

from pathlib import Path

import typer

from vecstore.cli.app import ProgressBar, app, echo_json, invocation
from vecstore.cli.options import choice_option, json_flag, output_option


@app.command()
def init(ctx: typer.Context) -> None:
    """Create an empty store (a directory with a DuckDB catalog)."""
    with invocation(ctx).create() as store:
        typer.echo(f"store ready at {store.path}")


@app.command()
def info(
    ctx: typer.Context,
    as_json: bool = json_flag(),
    verify: bool = typer.Option(False, "--verify", help="Read every embedding part and check ids."),
) -> None:
    """Counts, provenance, model versions, embedding parts and disk use of the store."""
    from vecstore.compact import format_parts
    from vecstore.info import format_info, store_info

    with invocation(ctx).open() as store:
        result = {**store_info(store, verify=verify), "parts": store.parts_summary()}
    if as_json:
        echo_json(result)
    else:
        typer.echo(format_info(result) + "\n" + format_parts(result["parts"]))


@app.command()
def compact(
    ctx: typer.Context,
    target_rows: int = typer.Option(
        0, "--target-rows", help="Rows per merged part; 0 = [store] compact_target_rows of the config."
    ),
) -> None:
    """Merge small embedding parts into large ones; safe to interrupt, readers keep working meanwhile."""
    with invocation(ctx).open(writable=True) as store:
        typer.echo(store.compact(target_rows or None).describe())


@app.command()
def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="SQL over the catalog tables (exposures, ccds, labels, ...)."),
    fmt: str = choice_option("table", "--format", "table", "csv", "json", "parquet", short="-f"),
    output: Path | None = output_option("Write to a file (needed for parquet)."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change the store."),
) -> None:
    """Run SQL (DuckDB) over the store's catalog. Read-only unless --write."""
    from vecstore.sql import render, run_sql

    run = invocation(ctx)
    table = run_sql(run.store, query, write=write, timeout_s=run.config.store.lock_timeout_s)
    text = "ok" if table is None else render(table, fmt, output)
    if text is not None:
        typer.echo(text)


@app.command()
def merge(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="Store to merge into; created if missing."),
    sources: list[Path] = typer.Argument(..., help="Stores to fold into DEST (opened read-only)."),
    chunk_rows: int | None = typer.Option(
        None, "--chunk-rows", min=1, help="CCDs per commit into DEST [config: store.merge_chunk_rows]."
    ),
) -> None:
    """Fold stores built separately (e.g. one per node) into DEST; re-running adds only what is missing."""
    from vecstore.merge import merge_stores

    with ProgressBar("merge", "CCD") as bar:
        summary = merge_stores(
            dest, sources, config=invocation(ctx).config, chunk_rows=chunk_rows, progress=bar.update
        )
    typer.echo(summary.describe())
